"""The dataflow's three keyed steps: per ticker, per model, per ticker again.

1. **Ticker** (keyed by ticker): screens each tick (`engine.screening`), builds the
   bars of every cadence its models use (`engine.bar_builder`), feeds tick and bar
   indicators and scores each closed bar with every published model subscribed to
   the ticker (`engine.pipeline`). Its first tick warms the indicators from stored
   history, so the first live bar already has complete features. A bad message
   leaves as a `DeadLetter`; nothing raises.
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

import gc
import math
import time
from collections.abc import Iterable

import msgspec
import numpy as np
from bytewax.operators import StatefulBatchLogic

from engine.alerts import build_alert, resolve
from engine.bar_builder import LATE, BarBuilder, ClosedBar
from engine.calendar import NS_PER_MINUTE, bars_per_year, session_days
from engine.errors import NotFoundError
from engine.indicators.volatility import RealisedVolatility
from engine.book import EVENT_COLUMNS, Book, live_step
from engine.options import volatility_window
from engine.pipeline import Pipeline
from engine.schemas import Alert, Bar, Tick, encode_json
from engine.screening import LEVEL_SHIFT, TickScreen
from engine.policy import Policy
from engine.signals import Scored, Signals
from engine.snapshot import decode_state, encode_state, state
from engine.store import load_bars, load_ticks
from flows.registry import Registry, ServingModel

__all__ = ["DeadLetter", "Quiet", "Closed", "Decided", "Status", "TickerStep", "score", "PolicyStep", "ConflictStep"]

NS = 1_000_000_000
_NO_CLOCK = (0.0, 1.0)  # the session clock of a model that holds no option: read by nothing


class DeadLetter(msgspec.Struct, frozen=True, array_like=True):
    """A message the flow refused: why, the raw payload, where it came from."""

    reason: str
    ticker: str
    payload: bytes
    detail: str
    received_at: int


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
              0, 0, 0, 0.0, 1.0, 252.0, prices, np.zeros((3, EVENT_COLUMNS)))  # fmt: skip


@state
class _Cadence:
    """One cadence's bars and realised volatility on one ticker."""

    __slots__ = ("builder", "volatility", "per_year")

    def __init__(self, builder: BarBuilder, window: int, per_year: float) -> None:
        self.builder = builder
        self.volatility = RealisedVolatility(window)
        self.per_year = per_year


@state
class TickerState:
    """Everything the flow keeps about one ticker: screen, bars per cadence, each model's features."""

    __slots__ = ("ticker", "lateness", "screen", "cadences", "pipelines", "version", "implied", "last_bar_start", "last_tick",
                 "closed_until", "quiet_through", "bars", "gaps", "previous", "counts")  # fmt: skip

    def __init__(self, ticker: str, lateness: int) -> None:
        self.ticker = ticker
        self.lateness = lateness
        self.screen: TickScreen | None = None
        self.cadences: dict[str, _Cadence] = {}
        self.pipelines: dict[str, Pipeline] = {}
        self.version = -1
        self.implied = math.nan
        self.last_bar_start = -1  # of a bar feed: later bars must start after it
        self.last_tick = -1
        self.closed_until = -1  # the latest end of a closed bar, any cadence: a tick before it is late
        self.quiet_through = -1  # what the last `Quiet` told the models
        self.bars = 0
        self.gaps = 0
        self.previous: dict[str, tuple[int, int]] = {}  # cadence -> (end, session) of its last bar
        self.counts: dict[str, int] = {}


class TickerStep(StatefulBatchLogic):
    """Keyed by ticker: ticks and bars in; `Scored`, `Quiet` and `DeadLetter` out."""

    def __init__(self, registry: Registry, lateness: int, resume: bytes | None) -> None:
        self.registry = registry
        self.lateness = lateness
        self.state = None if resume is None else decode_state(resume, TickerState)
        self._tick_pipelines: list[Pipeline] = []  # the pipelines that read ticks, found once per subscription
        if self.state is not None:  # restored from a snapshot: its pipelines need their scorers again
            self.state.version = -1

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
                self.state = TickerState(item.ticker, self.lateness)
            if self.state.version != registry.version:
                self._subscribe(item if kind == "clock" else item.ts if kind == "tick" else item.start)
            if kind == "tick":
                self._tick(item, received, out)
            elif kind == "bar":
                self._bar(item, received, out)
            else:
                self._advance(item, received, out)
        return out, StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[Iterable, bool]:
        out: list = []
        closed = [(cadence, bar) for cadence, c in self.state.cadences.items() for bar in c.builder.close_all()] if self.state else []
        if closed:
            self._close(closed, _now(), out)
        return out, StatefulBatchLogic.RETAIN

    # -- subscriptions and warm-up -------------------------------------------------

    def _subscribe(self, first: int) -> None:
        """Match the published models: a new one is warmed from history before ``first``, a gone one dropped."""
        state, registry = self.state, self.registry
        models = {model.trained_id: model for model in registry.by_ticker.get(state.ticker, ())}
        if state.screen is None:
            state.screen = TickScreen(negative_prices=any(m.negative_prices for m in models.values()),
                                      memory=max(self.lateness, 2 * NS))  # fmt: skip
        for gone in set(state.pipelines) - set(models):
            del state.pipelines[gone]
        for trained_id, model in models.items():
            if model.cadence not in state.cadences:
                per_year = bars_per_year(model.clock.calendar, model.cadence)
                state.cadences[model.cadence] = _Cadence(BarBuilder(model.cadence, model.clock, self.lateness),
                                                         volatility_window(model.cadence), per_year)  # fmt: skip
                self._warm_volatility(model, first)
            if trained_id in state.pipelines:
                state.pipelines[trained_id].bind(model.scorer)
            else:
                state.pipelines[trained_id] = self._warm(Pipeline(model.scorer), model, first)
        state.version = registry.version
        # The warmed state lives as long as the flow: spare it from every full collection, which would otherwise
        # walk all tickers' indicators in the middle of a bar close.
        gc.freeze()
        self._tick_pipelines = [state.pipelines[trained_id] for trained_id, model in models.items() if model.ticks]

    def _history(self, model: ServingModel, first: int):
        try:
            bars, _ = load_bars(self.registry.home, self.state.ticker, model.cadence)
        except NotFoundError:
            return None
        cadence = self.state.cadences[model.cadence].builder
        bounds = cadence.bounds(first)
        cut = bounds[0] if bounds is not None else first
        return bars.select(slice(0, int(np.searchsorted(bars.end, cut, side="right"))))

    def _warm(self, pipeline: Pipeline, model: ServingModel, first: int) -> Pipeline:
        bars = self._history(model, first)
        if bars is not None:
            ticks = load_ticks(self.registry.home, self.state.ticker) if model.ticks else None
            session, _ = session_days(bars.start, model.clock.calendar)
            pipeline.replay(bars, session, ticks, score=False)
        return pipeline

    def _warm_volatility(self, model: ServingModel, first: int) -> None:
        bars = self._history(model, first)
        if bars is not None:
            volatility = self.state.cadences[model.cadence].volatility
            for close in bars.close[-volatility.warmup:]:
                volatility.update(float(close))

    # -- input ---------------------------------------------------------------------

    def _reject(self, reason: str, item, received: int, out: list, detail: str = "") -> None:
        counts = self.state.counts
        counts[reason] = counts.get(reason, 0) + 1
        out.append(DeadLetter(reason, self.state.ticker, encode_json(item), detail, received))

    def _tick(self, tick: Tick, received: int, out: list) -> None:
        state = self.state
        identity = tick.trade_id or (tick.ts, tick.price, tick.size, tick.bid, tick.ask, tick.bid_size, tick.ask_size)
        verdict = state.screen.check(tick.ts, tick.price, tick.size, tick.bid, tick.ask, identity)
        if verdict is not None and verdict != LEVEL_SHIFT:
            self._reject(verdict, tick, received, out)
            return
        if tick.ts < state.closed_until:
            self._reject("late", tick, received, out, "its bar has closed")
            return
        if verdict == LEVEL_SHIFT:  # a split or a gap: the indicators' history no longer describes this price
            self._restart()
        state.last_tick = max(state.last_tick, tick.ts)
        if tick.implied_volatility is not None:
            state.implied = tick.implied_volatility
        if tick.price is not None:
            for cadence in state.cadences.values():
                cadence.builder.add(tick.ts, tick.price, tick.size)
        if self._tick_pipelines:
            nan = math.nan
            fields = (tick.ts, nan if tick.price is None else tick.price, nan if tick.size is None else tick.size,
                      nan if tick.bid is None else tick.bid, nan if tick.ask is None else tick.ask,
                      nan if tick.bid_size is None else tick.bid_size, nan if tick.ask_size is None else tick.ask_size)  # fmt: skip
            for pipeline in self._tick_pipelines:
                pipeline.update_tick(*fields)
        self._advance(tick.ts, received, out)

    def _bar(self, bar: Bar, received: int, out: list) -> None:
        state = self.state
        if min(bar.open, bar.high, bar.low, bar.close) <= 0.0 and not state.screen.negative_prices:
            self._reject("bad_price", bar, received, out)
            return
        if bar.start < state.last_bar_start:
            self._reject("out_of_order_bar", bar, received, out, "a later bar came first")
            return
        if bar.start == state.last_bar_start:
            self._reject("duplicate_bar", bar, received, out, "the first bar of an interval wins")
            return
        state.last_bar_start = bar.start
        high = max(bar.high, bar.open, bar.close)
        low = min(bar.low, bar.open, bar.close)
        if high != bar.high or low != bar.low:  # repaired as research repairs stored bars: widened to the open and close
            state.counts["ohlc_repaired"] = state.counts.get("ohlc_repaired", 0) + 1
        if bar.implied_volatility is not None:
            state.implied = bar.implied_volatility
        for cadence in state.cadences.values():
            if cadence.builder.add_bar(bar.start, bar.end, bar.open, high, low, bar.close, bar.volume) == LATE:
                self._reject("late", bar, received, out, "its bar has closed")
                return
        state.last_tick = max(state.last_tick, bar.end - 1)
        self._advance(bar.end - 1, received, out)

    def _restart(self) -> None:
        state = self.state
        state.counts[LEVEL_SHIFT] = state.counts.get(LEVEL_SHIFT, 0) + 1
        models = self.registry.models
        for trained_id in state.pipelines:
            state.pipelines[trained_id] = Pipeline(models[trained_id].scorer)
        self._tick_pipelines = [state.pipelines[trained_id] for trained_id in state.pipelines if models[trained_id].ticks]
        for cadence in state.cadences.values():
            cadence.volatility = RealisedVolatility(cadence.volatility.period)

    # -- bar close -----------------------------------------------------------------

    def _advance(self, watermark: int, received: int, out: list) -> None:
        state = self.state
        closed: list = []
        for name, cadence in state.cadences.items():
            for bar in cadence.builder.advance(watermark):
                closed.append((name, bar))
        if closed:
            state.closed_until = max(cadence.builder.closed_until for cadence in state.cadences.values())
            self._close(closed, received, out)
        through = watermark - self.lateness
        if through // NS_PER_MINUTE > state.quiet_through // NS_PER_MINUTE:  # bars end on whole minutes at the finest
            state.quiet_through = through
            for model in self.registry.by_ticker.get(state.ticker, ()):
                if len(model.universe) > 1:
                    out.append(Quiet(model.trained_id, state.ticker, through))

    def _close(self, closed: list[tuple[str, ClosedBar]], received: int, out: list) -> None:
        state = self.state
        models = self.registry.models
        if len(closed) > 1:
            closed.sort(key=lambda c: c[1][1])
        rows = []
        for name, bar in closed:
            cadence = state.cadences[name]
            clock = cadence.builder.clock  # the models of one cadence share its calendar: their bars came from it
            session, _ = clock.session(bar[0])
            _, minute = clock.local(bar[1])  # the hour a bar's close is decided in, as the sweep reads it
            end, last_session = state.previous.get(name, (bar[0], session))
            state.gaps += end != bar[0] and last_session == session
            state.previous[name] = (bar[1], session)
            state.bars += 1
            cadence.volatility.update(bar[5])
            volatility = state.implied if state.implied == state.implied else cadence.volatility.value * math.sqrt(cadence.per_year)
            timing = None
            for trained_id, pipeline in state.pipelines.items():
                model = models[trained_id]
                if model.cadence == name:
                    row = pipeline.update_features(bar[2], bar[3], bar[4], bar[5], bar[6], session)
                    if model.policy.expiry_sessions >= 0 and timing is None:  # an option decays on the session clock
                        timing = clock.session_clock(bar[0], bar[1], model.intraday)
                    rows.append((trained_id, bar, None if row is None else row.copy(), minute // 60, session,
                                 timing if model.policy.expiry_sessions >= 0 else _NO_CLOCK, volatility))  # fmt: skip
        implied = state.implied == state.implied
        nan = math.nan
        for trained_id, bar, features, hour, session, (opened, ends), volatility in rows:
            peers = sum(1 for row in rows if row[1][1] == bar[1]) if len(rows) > 1 else 1  # models deciding on this bar close
            scored = Scored(trained_id, state.ticker, bar[0], bar[1], bar[2], bar[3], bar[4], bar[5], nan, hour, session,
                            opened, ends, volatility, implied, received, peers)  # fmt: skip
            out.append(Closed(scored, features))
        out.append(Status(state.ticker, state.last_tick, received, closed[-1][1][1], state.bars, state.gaps, dict(state.counts)))


class Closed(msgspec.Struct, frozen=True, array_like=True):
    """A bar close as one model sees it, before scoring: ``scored`` with a NaN probability, and the model's feature row."""

    scored: Scored
    features: object
    """The (1 x features) float32 row, or None while the features warm up (the probability stays NaN)."""


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
                    out.append(Decided(item.ticker, item.end, item.peers, []))
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
                state.pending.setdefault(item.end, []).append(item)
                state.progress[item.ticker] = max(state.progress.get(item.ticker, -1), item.end)
            else:
                state.progress[item.ticker] = max(state.progress.get(item.ticker, -1), item.through)
            through = min(state.progress.get(ticker, -1) for ticker in model.universe)
            for end in sorted(end for end in state.pending if end <= through):
                self._decide(model, state.pending.pop(end), out)
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
        signals = self.state.signals.close(rows)
        alerts: dict[str, list[Alert]] = {}
        if signals:
            emitted = _now()
            for signal in signals:
                alert = build_alert(signal, model.settings, model.lineage, model.clock, multiplier=model.multiplier, emitted_at=emitted)
                alerts.setdefault(signal.scored.ticker, []).append(alert)
        for row in rows:
            out.append(Decided(row.ticker, row.end, row.peers, alerts.pop(row.ticker, [])))
        for ticker, exits in alerts.items():  # exits of tickers without a bar at this close: no peer decides on them
            out.append(Decided(ticker, rows[0].end, 1, exits))


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

