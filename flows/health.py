"""The flow's health as an operator reads it: Redis, models, and each ticker's data."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis

from engine.errors import printable, redacted
from engine.screening import REMARKS
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
    """Each consumer group of every alert stream (combined and per model): how far behind it is, what it holds
    unacknowledged, and what it lost: alerts trimmed before it read them, and pending ones trimmed before it acknowledged them."""
    problems: list[str]


def report(home: Path, url: str, *, stale_seconds: float = 120.0, maxlen: int = MAXLEN) -> Report:
    """Check Redis and read what the flow last wrote there; ``stale_seconds`` without data marks a ticker stale.

    Every alert stream's consumer groups are checked. A group more than half of
    ``maxlen`` (the streams' trim length) behind is a problem before it is a loss; a
    group whose unread alerts outnumber what the stream still holds has lost the
    difference (trimming takes the oldest first), and pending entries older than the
    stream's first one are gone for a consumer that has not acted on them. A lag Redis
    cannot count (after deletions) is shown as a problem, not read as healthy.
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
        consumers = [row for stream in _alert_streams(client) for row in _groups(client, stream, maxlen, problems)]
    except redis.AuthenticationError as error:  # a ConnectionError too: told apart first
        connection, statuses, counts, beat, consumers = f"authentication failed: {redacted(str(error))}", [], {}, None, []
        problems.append(f"Redis at {redacted(url)} refused the credentials: check the user and password in the URL")
    except (redis.ConnectionError, redis.TimeoutError) as error:
        connection, statuses, counts, beat, consumers = f"unreachable: {redacted(str(error))}", [], {}, None, []
        problems.append(f"Redis at {redacted(url)} is unreachable")
    except redis.ResponseError as error:  # NOAUTH from a server that wants a password the URL lacks, among others
        kind = "authentication failed" if "AUTH" in str(error).upper() else "error"
        connection, statuses, counts, beat, consumers = f"{kind}: {redacted(str(error))}", [], {}, None, []
        problems.append(f"Redis at {redacted(url)}: {kind}: {redacted(str(error))}")
    now = time.time_ns()
    tickers = []
    for status in sorted(statuses, key=lambda s: s.ticker):
        age = (now - status.received_at) / 1e9
        if age > stale_seconds:
            problems.append(f"{printable(status.ticker)}: no bar for {age:,.0f} s")
        tickers.append({"ticker": printable(status.ticker), "last_data_age_s": round(age, 3), "last_bar_end": _iso(status.last_bar_end),
                        "last_tick": _iso(status.last_tick), "bars": status.bars, "gaps": status.gaps,
                        "refused": sum(n for reason, n in status.refused.items() if reason not in REMARKS),
                        "remarks": {reason: n for reason, n in sorted(status.refused.items()) if reason in REMARKS}})  # fmt: skip
    heartbeat = None if beat is None else round((now - int(beat)) / 1e9, 3)
    return Report(not problems, connection, models, heartbeat, tickers, counts, consumers, problems)


def _alert_streams(client: redis.Redis) -> list[str]:
    """The combined alert stream and every model's, as Redis holds them."""
    found = {_text(key) for key in client.scan_iter(match=f"{ALERTS}:*", _type="STREAM", count=1000)}
    return ([ALERTS] if client.exists(ALERTS) else []) + sorted(found)


def _groups(client: redis.Redis, stream: str, maxlen: int, problems: list[str]) -> list[dict]:
    """Each consumer group of ``stream``: lag, pending, and the alerts it lost to trimming (with a problem for each loss)."""
    groups = client.xinfo_groups(stream)
    if not groups:
        return []
    info = client.xinfo_stream(stream)
    length, first = info["length"], info["first-entry"][0] if info["first-entry"] else None
    rows = []
    for group in groups:
        name, lag, pending = _text(group["name"]), group.get("lag"), group["pending"]
        where = f"{stream} group {name}"
        unread_lost = None if lag is None else max(0, lag - length)  # the unread are the newest `lag`; the stream keeps `length`
        pending_lost = 0
        if pending and first is not None:  # pending entries older than the first entry were trimmed before their acknowledgement
            pending_lost = len(client.xpending_range(stream, name, "-", f"({_text(first)}", 100_000))
        if lag is None:
            problems.append(f"{where}: Redis cannot count its lag (entries were deleted or the group was moved by hand): "
                            "check that it has read everything, or recreate it")  # fmt: skip
            if first is not None and _stream_id(group["last-delivered-id"]) < _stream_id(first):
                problems.append(f"{where}: alerts it had not read were trimmed away (how many is unknown)")
        elif unread_lost:
            problems.append(f"{where}: {unread_lost:,} alerts were trimmed before it read them: lost to this group")
        elif lag > maxlen // 2:
            problems.append(f"{where} is {lag:,} alerts behind; the stream keeps about {maxlen:,}: past that its oldest unread "
                            "alerts are trimmed away")  # fmt: skip
        if pending_lost:
            problems.append(f"{where}: {pending_lost:,} pending alerts were trimmed before they were acknowledged: a consumer "
                            "that has not acted on them cannot read them again")  # fmt: skip
        rows.append({"stream": stream, "group": name, "lag": lag, "pending": pending, "lost_unread": unread_lost,
                     "lost_pending": pending_lost})  # fmt: skip
    return rows


def _stream_id(value: bytes | str) -> tuple[int, int]:
    milliseconds, _, sequence = _text(value).partition("-")
    return int(milliseconds), int(sequence or 0)


def _text(value: bytes | str) -> str:
    return printable(value.decode(errors="replace") if isinstance(value, bytes) else value)


def render(health: Report) -> str:
    lines = [f"{'healthy' if health.healthy else 'UNHEALTHY'}; Redis {health.redis}; "
             f"flow heartbeat {'never' if health.heartbeat_age_s is None else f'{health.heartbeat_age_s:,.1f} s ago'}"]  # fmt: skip
    lines += [f"model {m['trained_id']}{' (killed)' if m['killed'] else ''}" for m in health.models]
    for t in health.tickers:
        lines.append(f"{t['ticker']:<8} data {t['last_data_age_s']:>10,.1f} s ago  last bar {t['last_bar_end']}  bars {t['bars']:,}  "
                     f"gaps {t['gaps']}  refused {t['refused']}"
                     + "".join(f"  {printable(reason)} {n:,}" for reason, n in t["remarks"].items()))  # fmt: skip
    lines += [_consumer_line(c) for c in health.consumers]
    if health.dead_letters:
        lines.append("dead letters: " + ", ".join(f"{key} {count}" for key, count in sorted(health.dead_letters.items())))
    lines += [f"problem: {problem}" for problem in health.problems]
    return "\n".join(lines)


def _consumer_line(group: dict) -> str:
    behind = "unknown" if group["lag"] is None else f"{group['lag']:,}"
    line = f"consumer group {group['group']} of {group['stream']}: {behind} behind, {group['pending']:,} pending"
    if group["lost_unread"]:
        line += f", {group['lost_unread']:,} lost unread"
    if group["lost_pending"]:
        line += f", {group['lost_pending']:,} lost pending"
    return line


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
