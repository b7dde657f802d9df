"""The flow's health as an operator reads it: Redis, models, and each ticker's data."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis

from engine.errors import printable, redacted
from engine.workspace import Workspace
from flows.sinks import ALERTS, DEADLETTER_COUNTS, HEALTH, HEARTBEAT, MAXLEN
from flows.steps import Status

__all__ = ["report", "render", "serve", "Report"]


class Report(msgspec.Struct):
    """What ``sigma health`` prints: healthy is Redis reachable, a model served, and no ticker stale."""

    healthy: bool
    redis: str
    models: list[dict]
    heartbeat_age_s: float | None
    tickers: list[dict]
    dead_letters: dict[str, int]
    consumers: list[dict]
    """Each consumer group of the combined alert stream: how far behind it is, and what it holds unacknowledged."""
    problems: list[str]


def report(home: Path, url: str, *, stale_seconds: float = 120.0, maxlen: int = MAXLEN) -> Report:
    """Check Redis and read what the flow last wrote there; ``stale_seconds`` without data marks a ticker stale.

    A consumer group more than half of ``maxlen`` (the alert stream's trim length)
    behind is a problem before it is a loss: past ``maxlen`` the oldest alerts it has
    not read are trimmed away.
    """
    problems: list[str] = []
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        models = [{"trained_id": r.id, "model": r.model, "published_at": r.published_at, "killed": r.killed_at is not None}
                  for r in space.trained_models(published=True)]  # fmt: skip
    if not models:
        problems.append("no published model: `sigma publish TRAINED_ID`")
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
        connection = "ok"
        statuses = [msgspec.json.decode(value, type=Status) for value in client.hgetall(HEALTH).values()]
        counts = {printable(key.decode(errors="replace")): int(value) for key, value in client.hgetall(DEADLETTER_COUNTS).items()}
        beat = client.get(HEARTBEAT)
        groups = client.xinfo_groups(ALERTS) if client.exists(ALERTS) else []
    except redis.AuthenticationError as error:  # a ConnectionError too: told apart first
        connection, statuses, counts, beat, groups = f"authentication failed: {redacted(str(error))}", [], {}, None, []
        problems.append(f"Redis at {redacted(url)} refused the credentials: check the user and password in the URL")
    except (redis.ConnectionError, redis.TimeoutError) as error:
        connection, statuses, counts, beat, groups = f"unreachable: {redacted(str(error))}", [], {}, None, []
        problems.append(f"Redis at {redacted(url)} is unreachable")
    except redis.ResponseError as error:  # NOAUTH from a server that wants a password the URL lacks, among others
        kind = "authentication failed" if "AUTH" in str(error).upper() else "error"
        connection, statuses, counts, beat, groups = f"{kind}: {redacted(str(error))}", [], {}, None, []
        problems.append(f"Redis at {redacted(url)}: {kind}: {redacted(str(error))}")
    consumers = []
    for group in groups:
        name, lag = _text(group["name"]), group.get("lag")
        consumers.append({"group": name, "lag": lag, "pending": group["pending"]})
        if lag is not None and lag > maxlen // 2:
            problems.append(f"consumer group {name} is {lag:,} alerts behind; {ALERTS} keeps about {maxlen:,}: "
                            "past that its oldest unread alerts are trimmed away")  # fmt: skip
    now = time.time_ns()
    tickers = []
    for status in sorted(statuses, key=lambda s: s.ticker):
        age = (now - status.received_at) / 1e9
        if age > stale_seconds:
            problems.append(f"{printable(status.ticker)}: no bar for {age:,.0f} s")
        tickers.append({"ticker": printable(status.ticker), "last_data_age_s": round(age, 3), "last_bar_end": _iso(status.last_bar_end),
                        "last_tick": _iso(status.last_tick), "bars": status.bars, "gaps": status.gaps,
                        "refused": sum(status.refused.values())})  # fmt: skip
    heartbeat = None if beat is None else round((now - int(beat)) / 1e9, 3)
    return Report(not problems, connection, models, heartbeat, tickers, counts, consumers, problems)


def _text(value: bytes | str) -> str:
    return printable(value.decode(errors="replace") if isinstance(value, bytes) else value)


def render(health: Report) -> str:
    lines = [f"{'healthy' if health.healthy else 'UNHEALTHY'}; Redis {health.redis}; "
             f"flow heartbeat {'never' if health.heartbeat_age_s is None else f'{health.heartbeat_age_s:,.1f} s ago'}"]  # fmt: skip
    lines += [f"model {m['trained_id']}{' (killed)' if m['killed'] else ''}" for m in health.models]
    for t in health.tickers:
        lines.append(f"{t['ticker']:<8} data {t['last_data_age_s']:>10,.1f} s ago  last bar {t['last_bar_end']}  bars {t['bars']:,}  "
                     f"gaps {t['gaps']}  refused {t['refused']}")  # fmt: skip
    lines += [f"consumer group {c['group']}: {c['lag']} behind, {c['pending']} pending" for c in health.consumers]
    if health.dead_letters:
        lines.append("dead letters: " + ", ".join(f"{key} {count}" for key, count in sorted(health.dead_letters.items())))
    lines += [f"problem: {problem}" for problem in health.problems]
    return "\n".join(lines)


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="seconds") if ns > 0 else "-"


def serve(home: Path, url: str, port: int, stale_seconds: float, host: str = "127.0.0.1") -> None:
    """``GET /healthz`` on ``host``: the report as JSON, 200 when healthy and 503 when not.

    Localhost by default: the report names models and tickers and has no authentication,
    so another address is the operator's explicit choice."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            if self.path.rstrip("/") != "/healthz":
                self.send_error(404, "only /healthz is served")
                return
            health = report(home, url, stale_seconds=stale_seconds)
            body = json.dumps(msgspec.to_builtins(health)).encode()
            self.send_response(200 if health.healthy else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer((host, port), Handler).serve_forever()
