"""``sigma run`` (the live dataflow) and ``sigma alerts tail`` (a consumer-group reader of the alert streams)."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import redis

from cli._common import name, names_list
from engine.alerts import RULES
from engine.errors import ConfigError, redacted
from engine.schemas import Alert, decode_json
from engine.store import ADJUSTMENTS
from engine.workspace import Workspace, default_home

DEFAULT_REDIS = "redis://127.0.0.1:6379/0"


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser(
        "run",
        help="run the live dataflow: market data in, alerts of the published models out to Redis",
        description="Reads ticks or bars (a Redis stream through a consumer group, files, or JSON lines on stdin), "
        "builds bars, scores every published model and writes alerts to the Redis streams {sigma}:alerts and "
        "{sigma}:alerts:<model>. Refused data goes to {sigma}:deadletter with its reason. With --recovery the flow "
        "snapshots its state and resumes after a crash without losing or doubling an alert.",
    )
    run.add_argument("--redis-url", default=None, help=f"where alerts go (default: $REDIS_URL or {DEFAULT_REDIS})")
    run.add_argument("--source", choices=("redis", "files", "stdin"), default="redis")
    run.add_argument("--stream", action="append", help="market-data stream key (repeatable; default {sigma}:ticks)")
    run.add_argument("--file", action="append",
                     help="Parquet, CSV or JSON-lines file to replay (repeatable), in event-time order. Columns (JSON keys): "
                          "ticks: ticker, ts (nanoseconds since 1970 UTC), price and size and/or bid and ask, optional "
                          "bid_size, ask_size, trade_id, implied_volatility; bars (--kind bars): ticker, start, end "
                          "(nanoseconds), open, high, low, close, optional volume, trades, vwap. Other columns are ignored; "
                          "a row that does not fit is dead-lettered with its reason")  # fmt: skip
    run.add_argument("--kind", choices=("ticks", "bars"), default="ticks", help="what the files or stdin hold")
    run.add_argument("--clock", choices=("data", "wall"), default="data",
                     help="event time from the data (replays) or the wall clock (live feeds: closes bars of silent tickers)")
    run.add_argument("--group", default="sigma", help="consumer group: one per engine deployment sharing a feed")
    run.add_argument("--start", default="0", help="where a new consumer group starts: 0 (the whole stream) or $ (new data)")
    run.add_argument("--batch", type=int, default=500, help="messages read per source call")
    run.add_argument("--lateness-ms", type=int, default=1000, help="how long a bar waits for delayed ticks after its end")
    run.add_argument("--idle-ms", type=int, default=2000,
                     help="how much longer the clock waits before closing the bar of a ticker with no further tick")
    run.add_argument("--max-ahead-ms", type=int, default=None,
                     help="dead-letter a tick stamped further past the stream's time as `future` "
                          "(default: 5,000 on the wall clock, 10 days on the data clock)")
    run.add_argument("--adjustment", choices=ADJUSTMENTS, default="raw",
                     help="what the feed's prices are (default raw, as exchanges print them): a model whose history it does not "
                          "continue is refused")
    run.add_argument("--conflict", choices=RULES, default="highest-confidence",
                     help="how models signalling one ticker at one bar close are decided")
    run.add_argument("--order", type=names_list("--order"), help="model order for first-wins, comma-separated trained ids")
    run.add_argument("--model", action="append", type=name("--model"), help="serve only these trained ids (default: every published model)")
    run.add_argument("--workers", "-w", type=int, default=1, help="worker threads in this process")
    run.add_argument("--process-id", "-i", type=int, help="this process's index in a cluster")
    run.add_argument("--addresses", "-a", help="host:port of every process of the cluster, ';'-separated")
    run.add_argument("--recovery", type=Path, help="recovery store folder: snapshots state; a restart resumes from it")
    run.add_argument("--partitions", type=int, default=4, help="partitions of a new recovery store (at least the most workers)")
    run.add_argument("--snapshot-seconds", type=float, default=1.0, help="epoch length: how much a resume may replay")
    run.set_defaults(handler=_run)

    health = commands.add_parser(
        "health",
        help="Redis connectivity, models served, each ticker's last data, bar continuity and dead letters",
        description="Exit status 0 when healthy, 1 when not. With --serve PORT, answers GET /healthz with the same "
        "report as JSON (200 healthy, 503 not) until interrupted.",
    )
    health.add_argument("--redis-url", default=None)
    health.add_argument("--stale-seconds", type=float, default=120.0, help="a ticker without a bar for this long is stale")
    health.add_argument("--json", action="store_true")
    health.add_argument("--serve", type=int, metavar="PORT", help="serve GET /healthz on this port")
    health.add_argument("--host", default="127.0.0.1",
                        help="address --serve listens on (default 127.0.0.1; 0.0.0.0 exposes the unauthenticated report to the network)")
    health.set_defaults(handler=_health)

    alerts = commands.add_parser("alerts", help="read the alert streams")
    verbs = alerts.add_subparsers(dest="verb", required=True, metavar="VERB")
    tail = verbs.add_parser(
        "tail",
        help="print alerts as JSON lines",
        description="Without --group, prints the stream from the start (or only new alerts with --follow). With "
        "--group, reads as a member of a consumer group: first its own unacknowledged alerts, then alerts idle "
        "with a dead member (XAUTOCLAIM), then new ones, acknowledging each after printing it. An entry that "
        "cannot be decoded is moved to {sigma}:alerts:poison after --max-deliveries tries.",
    )
    tail.add_argument("--redis-url", default=None)
    tail.add_argument("--model", type=name("--model"), help="one model's stream (default: every model's)")
    tail.add_argument("--group", help="consumer group to read as")
    tail.add_argument("--consumer", default=f"tail-{os.getpid()}", help="this reader's name in the group")
    tail.add_argument("--count", type=int, help="stop after this many alerts")
    tail.add_argument("--follow", action="store_true", help="wait for new alerts instead of stopping at the end")
    tail.add_argument("--min-idle-ms", type=int, default=60_000, help="claim a dead member's alerts after this idle time")
    tail.add_argument("--max-deliveries", type=int, default=5)
    tail.set_defaults(handler=_tail)


def _redis_url(given: str | None) -> str:
    return given or os.environ.get("REDIS_URL", DEFAULT_REDIS)


def _run(args: argparse.Namespace) -> None:
    from bytewax.recovery import RecoveryConfig
    from bytewax.errors import BytewaxRuntimeError
    from bytewax.run import cli_main

    from flows.live import TICKS, Tally, flow
    from flows.recovery import prepare

    tally = Tally()
    dataflow = flow(
        default_home(),
        _redis_url(args.redis_url),
        source=args.source,
        streams=args.stream or [TICKS],
        files=args.file or [],
        kind=args.kind,
        clock=args.clock,
        group=args.group,
        start=args.start,
        batch=args.batch,
        lateness_ms=args.lateness_ms,
        idle_ms=args.idle_ms,
        max_ahead_ms=args.max_ahead_ms,
        conflict=args.conflict,
        adjustment=args.adjustment,
        order=args.order or [],
        models=args.model or [],
        recovery=args.recovery is not None,
        tally=tally,
    )
    # Reached before the flow starts: inside Bytewax an unreachable or refusing server is a panic of a hundred lines.
    redis.Redis.from_url(_redis_url(args.redis_url), socket_connect_timeout=5).ping()
    recovery = None
    if args.recovery is not None:
        if args.partitions < args.workers:
            raise ConfigError("--partitions", f"{args.partitions} partitions for {args.workers} workers", "use at least one per worker")
        prepare(args.recovery, args.partitions)
        recovery = RecoveryConfig(str(args.recovery), backup_interval=timedelta(0))
    addresses = args.addresses.split(";") if args.addresses else None
    with Workspace(default_home(), clock=lambda: datetime.now(UTC)) as space:
        served = args.model or [record.id for record in space.trained_models(published=True)]
    source = ", ".join(args.file or []) if args.source == "files" else "stdin" if args.source == "stdin" else \
        f"{', '.join(args.stream or [TICKS])} (group {args.group})"
    print(f"sigma run: {len(served)} model(s) ({', '.join(served)}) on {args.kind} from {source}, {args.clock} clock; alerts to "
          f"{redacted(_redis_url(args.redis_url))}" + (f"; recovery store {args.recovery}" if args.recovery else ""),
          file=sys.stderr, flush=True)  # fmt: skip
    try:
        cli_main(dataflow, workers_per_process=args.workers, process_id=args.process_id, addresses=addresses,
                 epoch_interval=timedelta(seconds=args.snapshot_seconds), recovery_config=recovery)  # fmt: skip
    except BytewaxRuntimeError as error:  # Ctrl-C in one worker's run comes back as this, not as KeyboardInterrupt
        if _interrupted(error):
            raise KeyboardInterrupt from None
        raise
    finally:  # also after Ctrl-C: what the run did before it stopped
        print(f"sigma run: {tally.summary()}" + ("; see {sigma}:deadletter" if tally.refused else ""), file=sys.stderr, flush=True)


def _interrupted(error: BaseException | None) -> bool:
    """Whether Ctrl-C stopped the run: Bytewax says "signal received" where it landed in its own loop, and keeps the
    KeyboardInterrupt as the cause where it landed in a step's Python code (a source reading its stream)."""
    while error is not None:
        if isinstance(error, KeyboardInterrupt) or "signal received" in str(error):
            return True
        error = error.__cause__
    return False


def _health(args: argparse.Namespace) -> int:
    from flows.health import render, report, serve

    url = _redis_url(args.redis_url)
    if args.serve is not None:
        print(f"serving http://{args.host}:{args.serve}/healthz (Ctrl-C stops)", flush=True)
        serve(default_home(), url, args.serve, args.stale_seconds, host=args.host)
        return 0
    health = report(default_home(), url, stale_seconds=args.stale_seconds)
    print(msgspec.json.format(msgspec.json.encode(health)).decode() if args.json else render(health))
    return 0 if health.healthy else 1


def _tail(args: argparse.Namespace) -> None:
    from flows.readers import AlertReader
    from flows.sinks import ALERTS, model_stream  # here: the flow's modules load Bytewax and ONNX Runtime

    client = redis.Redis.from_url(_redis_url(args.redis_url))
    stream = model_stream(args.model) if args.model else ALERTS
    reader = AlertReader(client, stream, args.group, args.consumer, follow=args.follow, min_idle_ms=args.min_idle_ms,
                         max_deliveries=args.max_deliveries) if args.group else _PlainReader(client, stream, args)
    printed = 0
    while args.count is None or printed < args.count:
        batch = reader.next(100 if args.count is None else min(100, args.count - printed))
        if batch is None:
            return
        for entry_id, alert in batch:
            sys.stdout.write(msgspec.json.encode(alert).decode() + "\n")
            sys.stdout.flush()
            reader.acknowledge(entry_id)  # after it is printed: a reader killed in between sees it again
            printed += 1


class _PlainReader:
    """XREAD from the start (or the end with --follow)."""

    def __init__(self, client: redis.Redis, stream: str, args: argparse.Namespace) -> None:
        self.client, self.stream, self.follow = client, stream, args.follow
        self.position = "$" if args.follow else "0"

    def next(self, count: int) -> list[tuple[bytes, Alert]] | None:
        reply = self.client.xread({self.stream: self.position}, count=count, block=1000 if self.follow else None)
        if not reply:
            return [] if self.follow else None
        alerts = []
        for entry_id, fields in reply[0][1]:
            self.position = entry_id
            try:
                alerts.append((entry_id, decode_json(fields[b"alert"], Alert)))
            except (KeyError, ValueError) as error:
                print(f"sigma: skipping entry {entry_id.decode()}: {error}", file=sys.stderr)
        return alerts

    def acknowledge(self, entry_id: bytes) -> None:
        pass  # a plain reader holds nothing pending
