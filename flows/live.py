"""The live dataflow: market data in, alerts out, keyed by ticker and by model.

::

    source ─► route (by ticker) ─► ticker step ─► score (batch) ─► policy step (by model) ─► conflict step (by ticker) ─► alert sink
                 │ unknown ticker      │ refused ticks and bars                                                          (Redis streams)
                 └─────────────────────┴──────────────► dead-letter sink
                                       │ ticker status after each bar close
                                       └──────────────► health sink

``flow(...)`` builds it; ``sigma run`` calls it, and so can Bytewax directly::

    python -m bytewax.run "flows.live:flow(home='.sigma', redis_url='redis://localhost:6379/0')" -w 2

The same flow replays files (``source='files'``), so a paper-trading replay runs
exactly the code that alerts live.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import bytewax.operators as op
from bytewax.dataflow import Dataflow

from engine.alerts import RULES
from engine.errors import ConfigError
from engine.schemas import encode_json
from engine.signals import Scored
from flows.registry import Registry
from flows.sinks import (
    AlertFileSink,
    AlertSink,
    DeadLetterFileSink,
    DeadLetterSink,
    HealthSink,
    LineFileSink,
)
from flows.sources import SUFFIXES, FileSource, RedisStreamSource, StdinSource
from flows.steps import (
    Closed,
    ConflictStep,
    PolicyStep,
    Quiet,
    Status,
    TickerStep,
    compile_helpers,
    dead_letter,
    score,
)

__all__ = ["flow", "Tally", "TICKS"]

TICKS = "{sigma}:ticks"
"""The default market-data stream."""


class Tally:
    """What a run of the flow did in this process, counted as it goes: what `sigma run` says when it ends."""

    __slots__ = ("ticks", "bars", "closes", "alerts", "refused")

    def __init__(self) -> None:
        self.ticks = self.bars = self.closes = self.alerts = 0
        self.refused: Counter[str] = Counter()

    def read(self, kind: str) -> None:
        if kind == "tick":
            self.ticks += 1
        elif kind == "bar":
            self.bars += 1

    def closed(self, step: str, status: object) -> None:
        self.closes += 1

    def alerted(self, step: str, alert: object) -> None:
        self.alerts += 1

    def dead_lettered(self, step: str, letter: object) -> None:
        self.refused[letter.reason] += 1

    def summary(self) -> str:
        refused = sum(self.refused.values())
        reasons = ", ".join(f"{reason} {count:,}" for reason, count in self.refused.most_common())
        return (f"read {self.ticks:,} ticks and {self.bars:,} bars; {self.closes:,} bar closes; {self.alerts:,} alerts emitted; "
                f"{refused:,} messages dead-lettered" + (f" ({reasons})" if refused else ""))


def _feature_row(item: Closed | Quiet) -> tuple | None:
    """``(model, ticker, bar end, values)`` of a scored close's feature row; None for a warming row or a quiet mark."""
    if type(item) is not Closed or item.features is None:
        return None
    bar = item.scored.bar
    return item.scored.model, bar.ticker, bar.end, item.features[0].tolist()


def flow(
    home: str | Path | None = None,
    redis_url: str | None = None,
    *,
    source: str = "redis",
    streams: tuple[str, ...] | list[str] = (TICKS,),
    files: tuple[str, ...] | list[str] = (),
    kind: str = "ticks",
    clock: str = "data",
    group: str = "sigma",
    start: str = "0",
    batch: int = 500,
    lateness_ms: int = 1000,
    idle_ms: int = 2000,
    max_ahead_ms: int | None = None,
    conflict: str = "highest-confidence",
    order: tuple[str, ...] | list[str] = (),
    models: tuple[str, ...] | list[str] = (),
    poll_seconds: float = 2.0,
    alert_file: str | Path | None = None,
    recovery: bool = False,
    paper: bool = False,
    adjustment: str = "raw",
    speed: float | None = None,
    scores_file: str | Path | None = None,
    features_file: str | Path | None = None,
    tally: Tally | None = None,
) -> Dataflow:
    """The dataflow that serves the published models of workspace ``home``, alerting to ``redis_url``.

    ``source`` is ``redis`` (``streams``, read through consumer ``group`` from id ``start``),
    ``files`` (Parquet, CSV or JSON lines of ``kind`` ticks or bars) or ``stdin`` (JSON lines).
    ``clock`` is ``data`` (event time from the data: replays) or ``wall`` (live feeds).
    ``lateness_ms`` is how long a bar waits for delayed ticks after its end; the clock
    closes the bar of a ticker that stays silent ``idle_ms`` longer (an active ticker
    closes its own with its next tick). A tick stamped more than ``max_ahead_ms`` past the
    source's time is dead-lettered as ``future`` and does not move it (None: 5 s on the
    wall clock, 10 days on the data clock; `flows.sources.MAX_AHEAD`).
    ``conflict`` decides between models signalling one ticker at one bar close; ``order``
    ranks models for ``first-wins``. ``models`` limits the flow to some trained ids.
    ``alert_file`` writes alerts (and refused messages beside them) to local JSON-lines
    files instead of Redis, for a machine without one.
    ``recovery`` must be True when Bytewax runs the flow with a recovery store (``-r``):
    a restart without a snapshot then reads the stream from ``start`` again, rather than
    from where the consumer group was left by a run that died before snapshotting.
    ``paper`` serves the ``models`` named whether or not they are published: a
    paper-trading replay (`replay.sim`) of a model that has not earned live yet.
    ``adjustment`` declares what the feed's prices are (raw, split or total_return): a
    model whose history the feed does not continue is refused (`flows.registry`).
    ``speed`` paces a file replay: event seconds per wall second (60: an hour of
    history in a minute); None replays as fast as the flow goes. ``scores_file`` also
    writes every scored bar close (`Scored`, JSON lines): what a replay's parity report
    holds against the backtest's probabilities. ``features_file`` writes the feature
    row of every bar close as ``[model, ticker, bar end, [values]]`` lines, for the same
    report's feature comparison. ``tally`` counts what the run reads, closes,
    emits and refuses (`Tally`).
    """
    home = Path(home or os.environ.get("SIGMA_HOME", ".sigma"))
    redis_url = redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if conflict not in RULES:
        raise ConfigError("conflict", f"unknown rule {conflict!r}", f"use one of: {', '.join(RULES)}")
    if clock not in ("data", "wall"):
        raise ConfigError("clock", f"unknown clock {clock!r}", "use data (replays) or wall (live feeds)")
    for name, value in (("lateness_ms", lateness_ms), ("idle_ms", idle_ms), ("max_ahead_ms", max_ahead_ms or 0)):
        if value < 0:
            raise ConfigError(name, f"{value} is negative", "use 0 or more milliseconds")
    if kind not in ("ticks", "bars"):
        raise ConfigError("kind", f"unknown input kind {kind!r}", "use ticks or bars")
    if paper and not models:
        raise ConfigError("models", "a paper replay names the trained models it trades", "pass them with models=[...]")
    registry = Registry(home, poll_seconds=poll_seconds, only=tuple(models), paper=paper, adjustment=adjustment)
    if not registry.models:
        raise ConfigError("models", f"no published model in {home}", "train one and `sigma publish TRAINED_ID`")
    compile_helpers()
    lateness, idle = lateness_ms * 1_000_000, idle_ms * 1_000_000
    ahead = None if max_ahead_ms is None else max_ahead_ms * 1_000_000
    order = tuple(order)

    if source == "redis":
        market = RedisStreamSource(redis_url, list(streams), group=group, start=start, batch=batch, clock=clock, lateness=lateness,  # type: ignore[arg-type]
                                   idle=idle, recovery=recovery, max_ahead=ahead)
    elif source == "files":
        if not files:
            raise ConfigError("files", "a file replay needs at least one file", "pass --file PATH")
        for path in map(Path, files):  # here, not where Bytewax builds the source: there it would be a panic, not a message
            if not path.is_file():
                raise ConfigError("files", f"{path} does not exist", "pass an existing .parquet, .csv or .jsonl file")
            if path.suffix not in SUFFIXES:
                raise ConfigError("files", f"{path.name}: unknown file type", f"use one of {', '.join(SUFFIXES)}")
        if speed is not None and not speed > 0:
            raise ConfigError("speed", f"{speed} is not a pace", "give event seconds per wall second above 0, or none for full speed")
        market = FileSource([Path(f) for f in files], kind, batch=batch, lateness=lateness, idle=idle, speed=speed, max_ahead=ahead)  # type: ignore[arg-type]
    elif source == "stdin":
        market = StdinSource(kind, clock, lateness, idle, max_ahead=ahead)  # type: ignore[arg-type]
    else:
        raise ConfigError("source", f"unknown source {source!r}", "use redis, files or stdin")

    def route(item: tuple) -> list[tuple[str, object]]:
        kind, payload, received = item
        if kind == "clock":
            return [(ticker, item) for ticker in registry.by_ticker]
        if tally is not None:
            tally.read(kind)
        if payload.ticker not in registry.by_ticker:
            letter = dead_letter("unknown_ticker", payload.ticker, encode_json(payload), "no published model trades it", received)
            return [("", letter)]
        return [(payload.ticker, item)]

    dataflow = Dataflow("sigma")
    items = op.input("market", dataflow, market)
    decoded = op.branch("decoded", items, lambda item: item[0] != "dead")
    refused = op.map("refused", decoded.falses, lambda item: item[1])
    routed = op.branch("known", op.flat_map("route", decoded.trues, route), lambda pair: pair[0] != "")
    unknown = op.map("unknown", routed.falses, lambda pair: pair[1])
    tickers = op.key_rm("ticker-out", op.stateful_batch("ticker", routed.trues, lambda resume: TickerStep(registry, lateness, resume)))
    closes = op.branch("closes", tickers, lambda item: isinstance(item, (Closed, Quiet)))
    scored = op.flat_map_batch("score", closes.trues, lambda batch: score(registry, batch))
    if features_file is not None:
        rows = op.filter_map("feature-rows", closes.trues, _feature_row)
        op.output("features", rows, LineFileSink(Path(features_file)))
    if scores_file is not None:
        op.output("scores", op.filter("scored-bars", scored, lambda item: type(item) is Scored), LineFileSink(Path(scores_file)))
    by_model = op.key_on("by-model", scored, lambda item: item.model)
    decided = op.key_rm("policy-out", op.stateful_batch("policy", by_model, lambda resume: PolicyStep(registry, resume)))
    by_ticker = op.key_on("by-ticker", decided, lambda item: item.ticker)
    alerts = op.key_rm("conflict-out", op.stateful_batch("conflict", by_ticker, lambda resume: ConflictStep(conflict, order, resume)))
    reports = op.branch("reports", closes.falses, lambda item: isinstance(item, Status))
    refusals = op.merge("refusals", refused, unknown, reports.falses)
    if tally is not None:
        op.inspect("count-refused", refusals, tally.dead_lettered)
        op.inspect("count-alerts", alerts, tally.alerted)
        op.inspect("count-closes", reports.trues, tally.closed)
    if alert_file is not None:
        alert_file = Path(alert_file)
        op.output("alerts", alerts, AlertFileSink(alert_file))
        op.output("dead-letters", refusals, DeadLetterFileSink(alert_file.with_suffix(".deadletter.jsonl")))
        return dataflow
    op.output("alerts", alerts, AlertSink(redis_url))
    op.output("health", reports.trues, HealthSink(redis_url))
    op.output("dead-letters", refusals, DeadLetterSink(redis_url))
    return dataflow

