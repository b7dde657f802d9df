"""The dataflow's three keyed steps: per ticker, per model, per ticker again.

1. **Ticker** (keyed by ticker): glue around the ticker's `engine.pipeline.Pipeline`,
   which screens each tick, builds the bars of every cadence its models use and
   feeds their tick and bar features. The step matches the published models to it
   (warming a new one from stored history, so the first live bar already has
   complete features), turns what it refuses into `DeadLetter`s (nothing raises)
   and tells multi-ticker models how far its bars have closed (`Quiet`).
   Each closed bar leaves as a `Closed` row of features; the **score** step then
   scores a whole batch's rows with one ONNX call per model artifact.
2. **Policy** (keyed by model): `engine.signals` runs the policy kernel the backtest
   runs (`engine.book`) at each bar close of the model's universe, and
   `engine.alerts` dresses its entries and exits as alerts. A
   universe of several tickers waits until every ticker has closed the bar (or
   reported that it had none), so the cross-sectional ranking sees them all.
3. **Conflict** (keyed by ticker): when several models signal the same ticker at the
   same bar close, the user's rule decides (`engine.alerts.resolve`).

All state is event-time state in the step, so Bytewax snapshots it with the input
position and a resumed run re-emits the same alerts, with the same ids. A step's
snapshot is `engine.snapshot` bytes, which a later version of the code with the same
state layout resumes from.
"""

from __future__ import annotations

import contextlib

import gc
import hashlib
import math
import time
from collections.abc import Iterable

import msgspec
import numpy as np
from bytewax.operators import StatefulBatchLogic

from engine.alerts import build_alert, resolve
from engine.book import EVENT_COLUMNS, Book, live_step
from engine.calendar import NS_PER_MINUTE
from engine.errors import NotFoundError, printable
from engine.pipeline import Closed, Pipeline
from engine.policy import Policy
from engine.schemas import Alert, encode_json
from engine.signals import Scored, Signals
from engine.snapshot import decode_state, encode_state, state
from engine.store import load_bars, load_ticks
from flows.registry import Registry, ServingModel

__all__ = ["DeadLetter", "dead_letter", "Quiet", "Decided", "Status", "TickerStep", "score", "PolicyStep", "ConflictStep"]


PAYLOAD_KEPT = 1024
"""Bytes of a refused payload a dead letter keeps: 100,000 letters of 1 MB payloads would otherwise be 100 GB of Redis."""


class DeadLetter(msgspec.Struct, frozen=True, array_like=True):
    """A message the flow refused: why, the start of its raw payload with its size and hash, where it came from.

    Build one with `dead_letter`, which caps the payload and escapes the ticker."""

    reason: str
    ticker: str
    payload: bytes
    detail: str
    received_at: int
    size: int = 0
    """The whole payload's length in bytes."""
    sha256: str = ""
    """The whole payload's SHA-256: ties a letter to the message upstream when ``payload`` was cut."""


def dead_letter(reason: str, ticker: str, payload: bytes, detail: str, received: int) -> DeadLetter:
    """A dead letter of ``payload`` as received: its first `PAYLOAD_KEPT` bytes, its length and hash, its ticker made printable."""
    return DeadLetter(reason, printable(ticker, 32), payload[:PAYLOAD_KEPT], printable(detail, 500), received, len(payload),
                      hashlib.sha256(payload).hexdigest())  # fmt: skip


class Quiet(msgspec.Struct, frozen=True, array_like=True):
    """A ticker's word to one model that every bar ending at or before ``through`` has closed."""

    model: str
    ticker: str
    through: int


@state
class Decided(msgspec.Struct, frozen=True, array_like=True):
    """A model's alerts (possibly none) for one ticker's bar close; ``peers`` models decide on it."""

    ticker: str
    end: int
    peers: int
    alerts: list


class Status(msgspec.Struct, frozen=True):
    """A ticker's health after a bar close: how fresh its data is, whether its bars are continuous, what was refused."""

    ticker: str
    last_tick: int
    """Event time of the latest accepted tick (or bar)."""
    received_at: int
    """Wall clock when the data that closed the latest bar arrived."""
    last_bar_end: int
    bars: int
    gaps: int
    """Bars that did not start where the previous bar of their cadence ended, within one session (a halt, a hole)."""
    refused: dict[str, int]


def _now() -> int:
    return time.time_ns()


def compile_helpers() -> None:
    """Load the policy kernel now (compiled, or from numba's cache), so that the first bar close does not wait for it."""
    prices = np.ones(1)
    live_step(*Book(1, 1).arrays(), np.zeros(len(Policy.__struct_fields__)), prices, prices, prices, prices, prices * 0.5,
              0, 0, 0, 1, 0.0, 1.0, 252.0, 2.0, 0.0, prices, np.zeros((3, EVENT_COLUMNS)))  # fmt: skip


@state
class TickerState:
    """What the flow keeps about one ticker: its engine pipeline, and what the last `Quiet` told the models."""

    __slots__ = ("pipeline", "quiet_through")

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.quiet_through = -1


class TickerStep(StatefulBatchLogic):
    """Keyed by ticker: ticks and bars in; `Closed`, `Status`, `Quiet` and `DeadLetter` out. The work is `engine.pipeline`'s."""

    def __init__(self, registry: Registry, lateness: int, resume: bytes | None) -> None:
        self.registry = registry
        self.lateness = lateness
        self.state = None if resume is None else decode_state(resume, TickerState)
        self.version = -1  # of the registry the subscriptions match; a restored state re-binds its models' scorers

    def snapshot(self) -> bytes | None:
        return None if self.state is None else encode_state(self.state)

    def on_batch(self, values: list) -> tuple[Iterable, bool]:
        out: list = []
        registry = self.registry
        registry.refresh()
        for kind, item, received in values:
            if self.state is None:
                if kind == "clock":  # no tick of this ticker yet: nothing to close
                    continue
                negative = any(model.negative_prices for model in registry.by_ticker.get(item.ticker, ()))
                self.state = TickerState(Pipeline(item.ticker, self.lateness, negative_prices=negative))
            if self.version != registry.version:
                self._subscribe(item if kind == "clock" else item.ts if kind == "tick" else item.start)
            pipeline = self.state.pipeline
            if kind == "clock":
                watermark = item
            else:
                refused = pipeline.tick(item) if kind == "tick" else pipeline.bar(item)
                if refused is not None:
                    out.append(dead_letter(refused[0], pipeline.ticker, encode_json(item), refused[1], received))
                    continue
                watermark = item.ts if kind == "tick" else item.end - 1
            self._advance(watermark, received, out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable, bool]:
        out: list = []
        if self.state is not None:
            pipeline = self.state.pipeline
            bars = pipeline.bars
            out.extend(pipeline.close_all(_now()))
            if pipeline.bars != bars:
                out.append(self._status(_now()))
        return out, StatefulBatchLogic.RETAIN

    def _subscribe(self, first: int) -> None:
        """Match the published models: a new one is warmed from the history stored before ``first``, a gone one dropped."""
        pipeline, registry = self.state.pipeline, self.registry
        models = {model.trained_id: model for model in registry.by_ticker.get(pipeline.ticker, ())}
        for gone in set(pipeline.models) - set(models):
            pipeline.unsubscribe(gone)
        for trained_id, model in models.items():
            history = ticks = points = None
            regular = False  # the ticker's stored bars say which hours its bars keep (`sigma data import --hours`)
            if trained_id not in pipeline.models:
                try:
                    history, stored = load_bars(registry.home, pipeline.ticker, model.cadence)
                except NotFoundError:
                    pass
                else:
                    ticks = load_ticks(registry.home, pipeline.ticker) if model.ticks else None
                    regular = stored.hours == "regular"
                    if model.evaluation is not None:  # its intervals' volatility warms on the stored ones
                        with contextlib.suppress(NotFoundError):
                            points = load_bars(registry.home, pipeline.ticker, model.evaluation)[0]
            pipeline.subscribe(trained_id, model.scorer, model.cadence, model.clock, option=model.policy.expiry_sessions >= 0,
                               intraday=model.intraday, regular_hours=regular, first=first, history=history,
                               history_ticks=ticks, evaluation=model.evaluation, history_points=points)  # fmt: skip
        self.version = registry.version
        # The warmed state lives as long as the flow: spare it from every full collection, which would otherwise
        # walk all tickers' indicators in the middle of a bar close.
        gc.freeze()

    def _advance(self, watermark: int, received: int, out: list) -> None:
        state = self.state
        pipeline = state.pipeline
        bars = pipeline.bars
        out.extend(pipeline.advance(watermark, received))
        if pipeline.bars != bars:
            out.append(self._status(received))
        through = watermark - self.lateness
        if through // NS_PER_MINUTE > state.quiet_through // NS_PER_MINUTE:  # bars end on whole minutes at the finest
            state.quiet_through = through
            for model in self.registry.by_ticker.get(pipeline.ticker, ()):
                if len(model.universe) > 1:
                    out.append(Quiet(model.trained_id, pipeline.ticker, through))

    def _status(self, received: int) -> Status:
        pipeline = self.state.pipeline
        last_end = max(cadence.last_end for cadence in pipeline.cadences.values())
        return Status(pipeline.ticker, pipeline.last_tick, received, last_end, pipeline.bars, pipeline.gaps, dict(pipeline.refused))


def score(registry: Registry, items: list) -> list:
    """Score a batch's bar closes, every row of one model artifact in one ONNX call; `Quiet` markers keep their place.

    A burst of bar closes (every ticker's minute ends at once) then costs one call per
    artifact, not one per (model, ticker).
    """
    probabilities = [math.nan] * len(items)
    blocks: dict[int, tuple] = {}
    for i, item in enumerate(items):
        if type(item) is Closed and item.features is not None:
            model = registry.models.get(item.scored.model)
            if model is not None:
                block = blocks.setdefault(id(model.scorer), (model.scorer, [], []))
                block[1].append(i)
                block[2].append(item.features)
    for scorer, where, rows in blocks.values():
        for i, probability in zip(where, scorer.score(np.concatenate(rows)).tolist()):
            probabilities[i] = probability
    out = []
    for item, probability in zip(items, probabilities):
        if type(item) is not Closed:
            out.append(item)
        else:  # NaN while warming up, or when the model was unpublished in flight (the policy step then drops it)
            out.append(item.scored if probability != probability else msgspec.structs.replace(item.scored, probability=probability))
    return out


@state
class PolicyState:
    """One model's policy state and the bar closes of its universe still waiting for a ticker."""

    __slots__ = ("model", "signals", "pending", "progress")

    def __init__(self, model: str, signals: Signals) -> None:
        self.model = model
        self.signals = signals
        self.pending: dict[int, list[Scored]] = {}
        self.progress: dict[str, int] = {}  # ticker -> every bar ending at or before this has reported


class PolicyStep(StatefulBatchLogic):
    """Keyed by model: `Scored` and `Quiet` in; `Decided` (one per scored bar) out."""

    def __init__(self, registry: Registry, resume: bytes | None) -> None:
        self.registry = registry
        self.state = None if resume is None else decode_state(resume, PolicyState)

    def snapshot(self) -> bytes | None:
        return None if self.state is None else encode_state(self.state)

    def on_batch(self, values: list) -> tuple[Iterable, bool]:
        out: list = []
        for item in values:
            model = self.registry.models.get(item.model)
            if model is None:  # unpublished while its bars were in flight: it decides nothing, and its peers must not wait
                if isinstance(item, Scored):
                    out.append(Decided(item.bar.ticker, item.bar.end, item.peers, []))
                continue
            if self.state is None:
                self.state = PolicyState(item.model, Signals(model.policy, model.universe, model.sessions_per_year))
            state = self.state
            state.signals.killed = model.killed
            if len(model.universe) == 1:
                if isinstance(item, Scored):
                    self._decide(model, [item], out)
                continue
            if isinstance(item, Scored):
                bar = item.bar
                state.pending.setdefault(bar.end, []).append(item)
                state.progress[bar.ticker] = max(state.progress.get(bar.ticker, -1), bar.end)
            else:
                state.progress[item.ticker] = max(state.progress.get(item.ticker, -1), item.through)
        # Once per batch, not per item: a universe of 100 tickers would otherwise cost 100 look-ups a bar.
        if self.state is not None and self.state.pending and (model := self.registry.models.get(self.state.model)) is not None:
            through = min(self.state.progress.get(ticker, -1) for ticker in model.universe)
            for end in sorted(end for end in self.state.pending if end <= through):
                self._decide(model, self.state.pending.pop(end), out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable, bool]:
        out: list = []
        if self.state is not None and self.state.pending:
            model = self.registry.models.get(self.state.model)
            for end in sorted(self.state.pending):
                rows = self.state.pending.pop(end)
                if model is not None:
                    self._decide(model, rows, out)
        return out, StatefulBatchLogic.RETAIN

    def _decide(self, model: ServingModel, rows: list[Scored], out: list) -> None:
        signals = self.state.signals.close(rows, model.clock)
        alerts: dict[str, list[Alert]] = {}
        if signals:
            emitted = _now()
            for signal in signals:
                alert = build_alert(signal, model.settings, model.lineage, model.clock, multiplier=model.multiplier, emitted_at=emitted)
                alerts.setdefault(signal.scored.bar.ticker, []).append(alert)
        for row in rows:
            out.append(Decided(row.bar.ticker, row.bar.end, row.peers, alerts.pop(row.bar.ticker, [])))
        for ticker, exits in alerts.items():  # exits of tickers without a bar at this close: no peer decides on them
            out.append(Decided(ticker, rows[0].bar.end, 1, exits))


@state
class ConflictState:
    """Bar closes of one ticker waiting for the other models, and the models whose entry lost a conflict."""

    __slots__ = ("pending", "overruled")

    def __init__(self) -> None:
        self.pending: dict[int, list[Decided]] = {}
        self.overruled: set[str] = set()


class ConflictStep(StatefulBatchLogic):
    """Keyed by ticker: `Decided` in; the alerts that go to Redis out."""

    def __init__(self, rule: str, order: tuple[str, ...], resume: bytes | None) -> None:
        self.rule = rule
        self.order = order
        self.state = ConflictState() if resume is None else decode_state(resume, ConflictState)

    def snapshot(self) -> bytes:
        return encode_state(self.state)

    def on_batch(self, values: list[Decided]) -> tuple[Iterable, bool]:
        out: list = []
        pending = self.state.pending
        for decided in values:
            if decided.peers == 1 and not decided.alerts:
                continue
            group = pending.setdefault(decided.end, [])
            group.append(decided)
            if len(group) >= decided.peers:
                self._release(pending.pop(decided.end), out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable, bool]:
        out: list = []
        for end in sorted(self.state.pending):
            self._release(self.state.pending.pop(end), out)
        return out, StatefulBatchLogic.RETAIN

    def _release(self, group: list[Decided], out: list) -> None:
        overruled = self.state.overruled
        alerts = []
        for decided in group:
            for alert in decided.alerts:
                if alert.intent == "close" and alert.model_id in overruled:
                    overruled.discard(alert.model_id)  # it closes a position the trader never opened
                    continue
                alerts.append(alert)
        kept, _ = resolve(self.rule, alerts, self.order)  # type: ignore[arg-type]
        chosen = {alert.alert_id for alert in kept}
        overruled.update(alert.model_id for alert in alerts if alert.intent == "open" and alert.alert_id not in chosen)
        out.extend(kept)

