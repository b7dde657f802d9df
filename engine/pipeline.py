"""One ticker's kernel: its ticks and bars in, every subscribed model's feature row out at each bar close.

A `Pipeline` holds all Sigma keeps about one ticker: the screen that refuses bad ticks
(`engine.screening`), a bar builder and a realised volatility per cadence its models
use (`engine.bar_builder`), and each model's incremental tick and bar features
(`engine.features`). It is driven two ways, with the same calls:

- the live flow's ticker step feeds it each tick or bar as it arrives and moves its
  event time (`tick`, `bar`, `advance`), and scores the rows it returns in batches;
- research replays stored history through it (`replay`) to backtest an exported
  model exactly as it will run.

A model evaluated inside its bars (a daily model deciding every 15 minutes) gets a
row at each close of an evaluation interval instead: its bar so far (the intervals
of the bar up to that point) is peeked, not committed; the interval that closes the
bar reads the bar's committed features. Its rows are the intervals, as research's
rows are (`engine.features.evaluation_matrix`).

A bar keeps one shape, `engine.schemas.Bar`, from the builder to the policy. The
policy itself is not here: it ranks a model's whole universe at each close
(`engine.signals`), so it is keyed by model, not by ticker.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from engine.bar_builder import LATE, BarBuilder
from engine.bars import Bars
from engine.calendar import ExchangeClock, bars_per_year, session_days
from engine.features import TICK_FIELDS, FeatureVector, extend_bar, model_features, needs_ticks, warmup_bars
from engine.indicators.volatility import RealisedVolatility
from engine.options import volatility_window
from engine.schemas import Bar, Tick
from engine.scoring import Scorer
from engine.screening import FLAGS, RESTARTED, TickScreen
from engine.signals import Scored
from engine.snapshot import state

__all__ = ["Pipeline", "Closed", "Replayed"]

_NO_CLOCK = (0.0, 1.0)  # the session clock of a model that holds no option: read by nothing
_NONE: list = []  # what `advance` returns when nothing closed; callers only read it
_UNDEFINED = object()  # an evaluation point whose features are not all defined yet: a row with no probability


class Closed(msgspec.Struct, frozen=True, array_like=True):
    """A bar close as one model sees it, before scoring: ``scored`` with a NaN probability, and the model's feature row."""

    scored: Scored
    features: object
    """The (1 x features) float32 row, or None while the features warm up (the probability stays NaN)."""


class Replayed(msgspec.Struct, frozen=True):
    """What one model made of a replayed history: its probability and its feature row at every bar (NaN while warming up)."""

    probability: np.ndarray
    features: np.ndarray
    """(bars x features) float32, as scored."""


@state
class _Cadence:
    """One cadence's bars and realised volatility on one ticker, and where its last bar ended."""

    __slots__ = ("builder", "volatility", "per_year", "last_end", "last_session")

    def __init__(self, builder: BarBuilder, window: int, per_year: float) -> None:
        self.builder = builder
        self.volatility = RealisedVolatility(window)
        self.per_year = per_year
        self.last_end = -1
        self.last_session = -1


@state(derived=("scorer", "row"))
class _Model:
    """One model's features on the ticker; its scorer is bound, not state (an ONNX session cannot be snapshotted), and its
    row is the scorer's input buffer, rewritten at each close."""

    __slots__ = ("cadence", "evaluation", "option", "intraday", "ticks", "features", "indicators", "committed", "forming",
                 "so_far", "scorer", "row")  # fmt: skip

    def __init__(self, scorer: Scorer, cadence: str, option: bool, intraday: bool, evaluation: str | None = None) -> None:
        manifest = scorer.manifest
        features = model_features(manifest.features, manifest.indicators)
        scorer.check([f.name for f in features], np.float32, warmup_bars(features, manifest.indicators))
        self.cadence = cadence
        self.evaluation = evaluation
        """The cadence of its evaluation intervals inside its bars; None when it decides at each bar's close."""
        self.committed = -1
        """End of the last bar its features committed."""
        self.forming = -1
        """Start of the bar ``so_far`` is of."""
        self.so_far = [math.nan] * 5  # that bar's open, high, low, close and volume over the intervals closed so far
        self.option = option
        self.intraday = intraday
        self.ticks = any(needs_ticks(f.indicator) for f in features)
        self.indicators = {name: dict(values) for name, values in manifest.indicators.items()}
        self.features = FeatureVector(features, self.indicators)
        self.scorer = scorer
        self.row = np.empty((1, len(features)), dtype=np.float32)

    def rebuild(self) -> None:
        """Restored from a snapshot: no scorer until `Pipeline.subscribe` binds the model's again."""
        self.scorer = None
        self.row = np.empty((1, len(self.features.features)), dtype=np.float32)


@state(derived=("_tick_models",))
class Pipeline:
    """One ticker, every model subscribed to it: ticks and bars in; at each bar close, a `Closed` row per model."""

    __slots__ = ("ticker", "lateness", "screen", "cadences", "models", "implied", "last_bar_start", "last_tick",
                 "closed_until", "bars", "gaps", "refused", "_tick_models")  # fmt: skip

    def __init__(self, ticker: str, lateness: int, *, negative_prices: bool = False, memory: int = 2_000_000_000) -> None:
        self.ticker = ticker
        self.lateness = lateness
        """Nanoseconds a bar stays open after its end for delayed ticks."""
        self.screen = TickScreen(negative_prices=negative_prices, memory=max(lateness, memory))
        self.cadences: dict[str, _Cadence] = {}
        self.models: dict[str, _Model] = {}
        self.implied = math.nan
        """The latest implied volatility the feed gave (NaN: none, the realised one is used)."""
        self.last_bar_start = -1  # of a bar feed: later bars must start after it
        self.last_tick = -1
        """Event time of the latest accepted tick (or bar)."""
        self.closed_until = -1  # the latest end of a closed bar, any cadence: a tick before it is late
        self.bars = 0
        self.gaps = 0
        """Bars that did not start where the previous bar of their cadence ended, within one session (a halt, a hole)."""
        self.refused: dict[str, int] = {}
        """Counts by reason of what was refused, and of what was kept with a remark (`engine.screening.REMARKS`)."""
        self._tick_models: list[_Model] = []

    def rebuild(self) -> None:
        """Find the models that read ticks: whenever the models change, and after a restore (a snapshot keeps the models)."""
        self._tick_models = [model for model in self.models.values() if model.ticks]

    # -- subscriptions ---------------------------------------------------------------

    def subscribe(self, model: str, scorer: Scorer, cadence: str, clock: ExchangeClock, *, option: bool = False,
                  intraday: bool = True, regular_hours: bool = False, first: int | None = None, history: Bars | None = None,
                  history_ticks: dict[str, np.ndarray] | None = None, evaluation: str | None = None,
                  history_points: Bars | None = None) -> None:  # fmt: skip
        """Serve ``model`` (bound to ``scorer``) on bars of ``cadence``, warming its features from ``history``.

        ``option`` asks for the session clock an option decays on at each close;
        ``intraday`` says how it is counted; ``regular_hours`` builds intraday bars of
        the session's hours only, as the model's stored history holds them. The
        stored bars (and ticks) that end before the bar of event time ``first`` warm
        the model up, so the first live bar already has complete features. A model
        ``evaluation`` every interval of that cadence inside its bars decides at each
        one; its stored intervals (``history_points``) warm that cadence's volatility.
        A model served already is only re-bound.
        """
        if model in self.models:
            self.models[model].scorer = scorer
            return
        served = _Model(scorer, cadence, option, intraday, evaluation)
        for each, stored in ((cadence, history), (evaluation, history_points)):
            if each is None or each in self.cadences:
                continue
            builder = BarBuilder(self.ticker, each, clock, self.lateness, regular_hours=regular_hours)
            self.cadences[each] = _Cadence(builder, volatility_window(each), bars_per_year(clock.calendar, each))
            if stored is not None and first is not None:  # the volatility known at the first live close
                volatility = self.cadences[each].volatility
                for close in _before(stored, builder, first).close[-volatility.warmup:].tolist():
                    volatility.update(close)
        if history is not None and first is not None:
            history = _before(history, self.cadences[cadence].builder, first)
            _feed(served.features, history, session_days(history.start, clock.calendar)[0], history_ticks if served.ticks else None)
            if len(history):
                served.committed = int(history.end[-1])
        self.models[model] = served
        self.rebuild()

    def unsubscribe(self, model: str) -> None:
        """Stop serving ``model`` (unpublished); its cadence's bars go on for the others."""
        del self.models[model]
        self.rebuild()

    # -- input -----------------------------------------------------------------------

    def tick(self, tick: Tick) -> tuple[str, str] | None:
        """Take one tick: its bars and tick features; or the (reason, detail) it is refused for. Closes nothing (see `advance`)."""
        identity = tick.trade_id or (tick.ts, tick.price, tick.size, tick.bid, tick.ask, tick.bid_size, tick.ask_size)
        verdict = self.screen.check(tick.ts, tick.price, tick.size, tick.bid, tick.ask, identity)
        if verdict is not None and verdict not in FLAGS:
            return self._refuse(verdict)
        if tick.ts < self.closed_until:
            return self._refuse("late", "its bar has closed")
        if verdict is not None:  # kept, and counted; at a split the bar rule starts the features afresh, as research does
            self._count(verdict)
        self.last_tick = max(self.last_tick, tick.ts)
        if tick.implied_volatility is not None:
            self.implied = tick.implied_volatility
        if tick.price is not None:
            for cadence in self.cadences.values():
                cadence.builder.add(tick.ts, tick.price, tick.size)
        if self._tick_models:
            nan = math.nan
            fields = (tick.ts, nan if tick.price is None else tick.price, nan if tick.size is None else tick.size,
                      nan if tick.bid is None else tick.bid, nan if tick.ask is None else tick.ask,
                      nan if tick.bid_size is None else tick.bid_size, nan if tick.ask_size is None else tick.ask_size)  # fmt: skip
            for model in self._tick_models:
                model.features.update_tick(*fields)
        return None

    def bar(self, bar: Bar) -> tuple[str, str] | None:
        """Take one bar of a bar feed into the bars of every cadence; or the (reason, detail) it is refused for."""
        if min(bar.open, bar.high, bar.low, bar.close) <= 0.0 and not self.screen.negative_prices:
            return self._refuse("bad_price")
        if bar.start < self.last_bar_start:
            return self._refuse("out_of_order_bar", "a later bar came first")
        if bar.start == self.last_bar_start:
            return self._refuse("duplicate_bar", "the first bar of an interval wins")
        self.last_bar_start = bar.start
        high = max(bar.high, bar.open, bar.close)
        low = min(bar.low, bar.open, bar.close)
        if high != bar.high or low != bar.low:  # repaired as research repairs stored bars: widened to the open and close
            self._count("ohlc_repaired")
        if bar.implied_volatility is not None:
            self.implied = bar.implied_volatility
        for cadence in self.cadences.values():
            if cadence.builder.add_bar(bar.start, bar.end, bar.open, high, low, bar.close, bar.volume) == LATE:
                return self._refuse("late", "its bar has closed")
        self.last_tick = max(self.last_tick, bar.end - 1)
        return None

    def _refuse(self, reason: str, detail: str = "") -> tuple[str, str]:
        self._count(reason)
        return reason, detail

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1

    # -- bar close -------------------------------------------------------------------

    def advance(self, watermark: int, received: int) -> list[Closed]:
        """Move event time to ``watermark``: the bars that closed, each as a `Closed` row per model of its cadence.

        ``received`` is the wall clock at which the data that moved it arrived (the
        latency of an alert is counted from it); nothing here reads a clock.
        """
        closed: list = []
        for cadence in self.cadences.values():
            for bar in cadence.builder.advance(watermark):
                closed.append((cadence, bar))
        if not closed:
            return _NONE
        self.closed_until = max(cadence.builder.closed_until for cadence in self.cadences.values())
        return self._close(closed, received)

    def close_all(self, received: int) -> list[Closed]:
        """Close every open bar (the end of a replayed stream)."""
        closed = [(cadence, bar) for cadence in self.cadences.values() for bar in cadence.builder.close_all()]
        return self._close(closed, received) if closed else _NONE

    def _close(self, closed: list, received: int) -> list[Closed]:
        if len(closed) > 1:  # in time, and a bar before the interval that closes it ends with it
            closed.sort(key=lambda c: (c[1].end, c[1].start))
        rows = []
        for cadence, bar in closed:
            clock = cadence.builder.clock  # the models of one cadence share its calendar: their bars came from it
            session, _ = clock.session(bar.start)
            _, minute = clock.local(bar.end)  # the hour a bar's close is decided in, as the sweep reads it
            self.gaps += cadence.last_end not in (-1, bar.start) and cadence.last_session == session
            cadence.last_end, cadence.last_session = bar.end, session
            self.bars += 1
            cadence.volatility.update(bar.close)
            volatility = self.implied if self.implied == self.implied else cadence.volatility.value * math.sqrt(cadence.per_year)
            timing = None
            for name, model in self.models.items():
                closes = True
                if model.cadence == cadence.builder.cadence:
                    if model.features.restart(bar.close, session) is not None:  # after a hole, or at a jump of the price level
                        self._count(RESTARTED)
                    values = model.features.update_bar(bar.open, bar.high, bar.low, bar.close, bar.volume, session)
                    model.committed = bar.end
                    if model.evaluation is not None:
                        continue  # it decides with the interval that closes the bar
                    if not model.features.ready:
                        values = _UNDEFINED
                elif model.evaluation == cadence.builder.cadence:
                    values, closes = self._evaluate(model, bar)
                    if values is None:
                        continue
                else:
                    continue
                row = None
                if values is not _UNDEFINED:
                    model.row[0] = values
                    row = model.row.copy()
                if model.option and timing is None:  # an option decays on the session clock
                    timing = clock.session_clock(bar.start, bar.end, model.intraday)
                rows.append((name, bar, row, minute // 60, session, timing if model.option else _NO_CLOCK, volatility, closes))
        implied = self.implied == self.implied
        nan = math.nan
        out = []
        for name, bar, features, hour, session, (opened, ends), volatility, closes in rows:
            peers = sum(1 for row in rows if row[1].end == bar.end) if len(rows) > 1 else 1  # models deciding on this close
            out.append(Closed(Scored(name, bar, nan, hour, session, opened, ends, volatility, implied, received, peers, closes),
                              features))  # fmt: skip
        return out

    def _evaluate(self, model: _Model, interval: Bar) -> tuple[np.ndarray | object | None, bool]:
        """A model's features at the close of one evaluation interval, and whether it closes the model's bar: the bar so
        far peeked (`_UNDEFINED` while a feature is), or the committed bar; (None, _) when the interval is in no bar of
        the model (a night) or closes one its features did not commit."""
        bounds = self.cadences[model.cadence].builder.bounds(interval.start)
        if bounds is None:
            return None, False
        start, end = bounds
        if interval.end >= end:  # the bar committed just before, in `_close`'s order
            if model.committed != end:
                return None, True
            return (model.features.values if model.features.ready else _UNDEFINED), True
        extend_bar(model.so_far, model.forming != start, interval.open, interval.high, interval.low, interval.close, interval.volume)
        model.forming = start
        clock = self.cadences[model.cadence].builder.clock
        peeked = model.features.peek_bar(*model.so_far, float(clock.session(start)[0]))
        return (_UNDEFINED if peeked is None else peeked), False

    # -- research's driver -----------------------------------------------------------

    def replay(self, bars: Bars, ticks: dict[str, np.ndarray] | None = None) -> dict[str, Replayed]:
        """Feed a stored history as a bar feed and return each model's probabilities and feature rows (NaN while warming up).

        Each bar's stored ticks reach the tick features before its close, but not the
        bar builders: the stored bars are the bars. Each bar closes before the next is
        fed, so a replay needs no lateness.
        """
        where: dict[str, list[int]] = {name: [] for name in self.models}
        found: dict[str, list[np.ndarray]] = {name: [] for name in self.models}
        columns = [ticks[name] for name in TICK_FIELDS] if ticks is not None and self._tick_models else []
        taken = 0
        for t in range(len(bars)):
            end = int(bars.end[t])
            if columns:
                fields, taken = _ticks_before(columns, taken, end)
                for tick in fields:
                    for model in self._tick_models:
                        model.features.update_tick(*tick)
            bar = Bar(ticker=self.ticker, start=int(bars.start[t]), end=end, open=float(bars.open[t]), high=float(bars.high[t]),
                      low=float(bars.low[t]), close=float(bars.close[t]), volume=float(bars.volume[t]))  # fmt: skip
            if self.bar(bar) is None:
                # Event time moves on to the next bar's start (nothing earlier is to come): every bar that ends by then
                # closes with this one's row, an interval of a wider bucket than its stored bar too.
                last = t == len(bars) - 1
                for closed in self.close_all(0) if last else self.advance(max(end, int(bars.start[t + 1])) + self.lateness, 0):
                    if closed.features is not None:
                        where[closed.scored.model].append(t)
                        found[closed.scored.model].append(closed.features)
        replayed = {}
        for name, model in self.models.items():
            probability = np.full(len(bars), np.nan)
            features = np.full((len(bars), len(model.features.features)), np.nan, dtype=np.float32)
            if found[name]:
                rows = np.concatenate(found[name])
                probability[where[name]] = model.scorer.score(rows)
                features[where[name]] = rows
            replayed[name] = Replayed(probability, features)
        return replayed


def _before(bars: Bars, builder: BarBuilder, first: int) -> Bars:
    """The stored ``bars`` that end by the start of ``builder``'s bar of event time ``first``."""
    bounds = builder.bounds(first)
    return bars.select(slice(0, int(np.searchsorted(bars.end, bounds[0] if bounds else first, side="right"))))


def _feed(features: FeatureVector, bars: Bars, session: np.ndarray, ticks: dict[str, np.ndarray] | None) -> None:
    """Warm one model's features on stored history: each bar's ticks, then the bar."""
    columns = [ticks[name] for name in TICK_FIELDS] if ticks is not None else []
    taken = 0
    for t in range(len(bars)):
        if columns:
            fields, taken = _ticks_before(columns, taken, int(bars.end[t]))
            for tick in fields:
                features.update_tick(*tick)
        features.update_bar(bars.open[t], bars.high[t], bars.low[t], bars.close[t], bars.volume[t], session[t])


def _ticks_before(columns: list[np.ndarray], taken: int, end: int) -> tuple[list[tuple[float, ...]], int]:
    """The fields of the stored ticks from row ``taken`` up to event time ``end`` (excluded), and the next row to take."""
    until = max(taken, int(np.searchsorted(columns[0], end, side="left")))
    return [tuple(float(column[i]) for column in columns) for i in range(taken, until)], until
