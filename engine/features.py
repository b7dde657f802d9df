"""Features: the model's indicator outputs at each bar close, in a fixed column order.

A feature is named like the pack writes it (``rsi``, ``macd.histogram``). Outputs in
price units are divided by the bar's close, so a model trained on one price level
reads another the same way. Bar indicators update on bars; tick indicators (order
book, trade signs) update on ticks and are sampled at each bar's close from the last
tick before the bar ended, never after.

`feature_matrix` computes a whole history with the indicators' batch twins;
`FeatureVector` computes one bar at a time with their incremental form. They agree
to the last bit, so research and the live flow see the same numbers.

A model evaluated inside its bars (a daily model deciding every 15 minutes) reads at
each evaluation point the features of the bar so far: its open, high, low, close and
volume up to that point, peeked (`FeatureVector.peek_bar`), never committed; the
point that closes the bar reads the bar's committed features. `evaluation_points`
maps the evaluation intervals onto the bars, `evaluation_matrix` computes a history
of them with the same `FeatureVector` the live flow drives.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from operator import itemgetter

import msgspec
import numpy as np

from engine.bars import Bars
from engine.errors import ConfigError
from engine.indicators import INDICATORS, compute, make
from engine.snapshot import state

__all__ = [
    "Feature", "BAR_FIELDS", "TICK_FIELDS", "RESTART_AFTER_DAYS", "LEVEL_JUMP", "model_features", "needs_ticks", "restarts",
    "feature_matrix", "FeatureVector", "warmup_bars", "evaluation_points", "evaluation_matrix", "extend_bar",
]  # fmt: skip

BAR_FIELDS = ("open", "high", "low", "close", "volume", "session")
"""What a bar offers an indicator; ``session`` is the exchange session's day number."""
TICK_FIELDS = ("ts", "price", "size", "bid", "ask", "bid_size", "ask_size")
"""Columns of a tick table: a trade has price and size, a quote bid, ask and sizes (NaN where absent)."""


@state
class Feature(msgspec.Struct, frozen=True):
    """One model input column: an indicator's output, divided by the close when it is a price."""

    name: str
    indicator: str
    output: str
    per_close: bool


def needs_ticks(indicator: str) -> bool:
    """True when the indicator reads fields only ticks carry (quotes, trade sizes)."""
    return not set(INDICATORS[indicator].inputs) <= set(BAR_FIELDS)


def model_features(names: list[str], indicators: Mapping[str, Mapping[str, float]]) -> list[Feature]:
    """The `Feature` for each name (``indicator`` or ``indicator.output``) of a model's indicators."""
    features = []
    for name in names:
        indicator, _, output = name.partition(".")
        if indicator not in indicators:
            raise ConfigError("features", f"{name!r} names no indicator of the model", f"use one of: {', '.join(indicators)}")
        cls = INDICATORS[indicator]
        output = output or cls.outputs[0]
        if output not in cls.outputs:
            raise ConfigError("features", f"{indicator} has no output {output!r}", f"its outputs: {', '.join(cls.outputs)}")
        features.append(Feature(name, indicator, output, output in cls.price_outputs))
    return features


def restarts(session: np.ndarray, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where the features start afresh, as (rows after a hole, rows of a jump).

    A bar more than `RESTART_AFTER_DAYS` after the one before starts the features
    afresh with itself. A bar closing beyond `LEVEL_JUMP` of the close before (a split
    of unadjusted prices) straddles two price levels: it is scored by nothing, and
    the features start afresh with the bar after it.
    """
    hole = np.diff(np.asarray(session, dtype=np.float64)) > RESTART_AFTER_DAYS
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = close[1:] / close[:-1]
    jump = (close[1:] * close[:-1] > 0.0) & ((ratio > _UP) | (ratio < _DOWN))
    return np.flatnonzero(hole & ~jump) + 1, np.flatnonzero(jump) + 1


def feature_matrix(
    features: list[Feature],
    indicators: Mapping[str, Mapping[str, float]],
    bars: Bars,
    session: np.ndarray,
    ticks: Mapping[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Features of every bar (rows) in ``features`` order (columns); NaN until an indicator is warm.

    Each stretch of bars between restarts (long holes, jumps of the price level:
    `restarts`) is computed on its own, as the live vector starts afresh there; a tick
    indicator's stretch takes the ticks after the close of the bar it restarted at.
    """
    columns = {**bars.columns(), "session": np.asarray(session, dtype=np.float64)}
    holes, jumps = restarts(session, bars.close)
    # A stretch starts at a bar after a hole, or after a jump's bar; its tick indicators start at that restart's close.
    starts = sorted([(int(row), int(row)) for row in holes] + [(int(row) + 1, int(row)) for row in jumps if row + 1 < len(bars)])
    edges = [(0, -1), *starts, (len(bars), -1)]
    outputs: dict[str, dict[str, np.ndarray]] = {}
    for indicator in {feature.indicator for feature in features}:
        if needs_ticks(indicator) and ticks is None:
            raise ConfigError(
                "ticks",
                f"{indicator} reads ticks (quotes and trades) and {bars.ticker} has only bars",
                "import ticks for it, or generate them with `sigma data synth --ticks`",
            )
        pieces = []
        for (first, restarted), (end, _) in itertools.pairwise(edges):
            if not needs_ticks(indicator):
                pieces.append(compute(indicator, {name: values[first:end] for name, values in columns.items()}, indicators[indicator]))
                continue
            since = np.searchsorted(ticks["ts"], bars.end[restarted]) if restarted >= 0 else 0
            taken = {n: v[since:] for n, v in ticks.items()}
            per_tick = compute(indicator, taken, indicators[indicator])
            last = np.searchsorted(taken["ts"], bars.end[first:end], side="left") - 1
            pieces.append({name: np.where(last >= 0, values[np.maximum(last, 0)], np.nan) for name, values in per_tick.items()})
        outputs[indicator] = pieces[0] if len(pieces) == 1 else {name: np.concatenate([p[name] for p in pieces]) for name in pieces[0]}
    matrix = np.empty((len(bars), len(features)))
    for column, feature in enumerate(features):
        values = outputs[feature.indicator][feature.output]
        matrix[:, column] = values / bars.close if feature.per_close else values
    matrix[jumps] = np.nan
    return matrix


def evaluation_points(bars: Bars, points: Bars) -> tuple[np.ndarray, np.ndarray]:
    """For each evaluation interval of ``points``: the row of ``bars`` it falls in (-1 when none: a night, a missing bar),
    and whether it closes that bar (it reaches the bar's end: an hourly interval 15:30-16:30 closes a 16:00 session)."""
    row = np.searchsorted(bars.start, points.start, side="right") - 1
    taken = np.maximum(row, 0)
    inside = (row >= 0) & (points.start < bars.end[taken]) if len(bars) else np.zeros(len(points), dtype=bool)
    row = np.where(inside, row, -1)
    return row, inside & (points.end >= bars.end[taken])


def evaluation_matrix(
    features: list[Feature], indicators: Mapping[str, Mapping[str, float]], bars: Bars, session: np.ndarray, points: Bars,
) -> np.ndarray:
    """Features at each evaluation point of ``points`` (rows), in ``features`` order; NaN where undefined.

    A point inside a bar reads the bar so far (the intervals of that bar up to it) as
    a peek; the point that closes a bar reads its committed features, after every bar
    before it, stored or not, has been committed in order (the warm-up included).
    Bar indicators only: tick indicators are sampled at closes (`model_features`).
    """
    row, closes = evaluation_points(bars, points)
    vector = FeatureVector(features, indicators)
    matrix = np.full((len(points), len(features)), np.nan)
    committed = 0  # bars fed so far
    forming = -1  # the bar whose intervals ``so_far`` holds: open, high, low, close, volume
    so_far = [0.0] * 5
    columns = (bars.open, bars.high, bars.low, bars.close, bars.volume)
    for k, j in enumerate(row.tolist()):
        if j < 0:
            continue
        while committed < j + closes[k]:  # every bar before this point's, and its own when the point closes it
            vector.update_bar(*(float(c[committed]) for c in columns), float(session[committed]))
            committed += 1
        if closes[k]:
            if vector.ready:
                matrix[k] = vector.values
            continue
        extend_bar(so_far, forming != j, float(points.open[k]), float(points.high[k]), float(points.low[k]),
                   float(points.close[k]), float(points.volume[k]))  # fmt: skip
        forming = j
        peeked = vector.peek_bar(*so_far, float(session[j]))
        if peeked is not None:
            matrix[k] = peeked
    return matrix


def extend_bar(so_far: list[float], first: bool, open: float, high: float, low: float, close: float, volume: float) -> None:  # noqa: A002
    """Fold one closed interval into ``so_far``, a bar's open, high, low, close and volume up to it (``first``: the bar's
    first interval): how research and the live pipeline both make the bar a peek reads."""
    if first:
        so_far[:] = open, high, low, close, volume
    else:
        so_far[1], so_far[2], so_far[3], so_far[4] = max(so_far[1], high), min(so_far[2], low), close, so_far[4] + volume


def warmup_bars(features: list[Feature], indicators: Mapping[str, Mapping[str, float]]) -> int:
    """Updates the slowest of the features' indicators needs before every feature is defined."""
    return max((make(name, indicators[name]).warmup for name in {f.indicator for f in features}), default=0)


RESTART_AFTER_DAYS = 30
"""Calendar days between two bars after which the features start afresh, in research and live alike: history from
before such a hole (QQQ's 6.3 years, a relisting) says nothing of the market after it, and the indicators warm up again."""
LEVEL_JUMP = 0.35
"""How far (in log price: 30% down, 42% up) a bar may close from the close before it without starting the features afresh:
beyond, it is a split or a reverse split of unadjusted prices (AAPL's 7:1: 85% down), whose history no longer describes
the price, rather than a move to read as a crash. Research and live restart at the same bars."""
HOLE, JUMP = "hole", "jump"
"""Why the features start afresh (`FeatureVector.restart`)."""
_UP = math.exp(LEVEL_JUMP)
_DOWN = 1.0 / _UP  # bounds on the ratio itself, which both sides compute alike to the bit


def _picker(fields: tuple[str, ...], inputs: tuple[str, ...]):
    """A function returning the ``inputs`` out of a tuple laid out as ``fields``, always as a tuple."""
    positions = [fields.index(name) for name in inputs]
    return itemgetter(*positions) if len(positions) > 1 else lambda values: (values[positions[0]],)


@state(derived=("_bar_indicators", "_tick_indicators", "_taps", "_twins", "_peek_taps", "peeked"))
class FeatureVector:
    """The model's features, one bar at a time: feed ticks and bars, read ``values`` after each bar.

    `peek_bar` reads the features of a bar still forming, as if it closed now, from
    twins of the bar indicators: nothing is committed until the bar's own close. A
    bar more than `RESTART_AFTER_DAYS` after the last one starts every indicator
    afresh (tick indicators included); a bar closing beyond `LEVEL_JUMP` of the
    last close is scored by nothing and the indicators start afresh after it, as
    `feature_matrix` cuts its history there.
    """

    __slots__ = ("features", "values", "ready", "last_session", "last_close", "_indicators", "_bar_indicators",
                 "_tick_indicators", "_taps", "_twins", "_peek_taps", "peeked")  # fmt: skip

    def __init__(self, features: list[Feature], indicators: Mapping[str, Mapping[str, float]]) -> None:
        self.features = features
        self.values = np.full(len(features), np.nan)
        self.ready = not len(features)
        """True once every feature is defined (all indicators are warm)."""
        self.last_session = math.nan
        """The session of the last bar fed."""
        self.last_close = math.nan
        self._indicators = {feature.indicator: make(feature.indicator, indicators[feature.indicator]) for feature in features}
        self.rebuild()

    def rebuild(self) -> None:
        """Wire the update and output plumbing around the indicators (the state)."""
        used = self._indicators
        # (update, picker) pairs: the picker takes an indicator's inputs out of the bar's or tick's fields.
        self._bar_indicators = [
            (instance.update, _picker(BAR_FIELDS, instance.inputs)) for name, instance in used.items() if not needs_ticks(name)
        ]
        self._tick_indicators = [
            (instance.update, _picker(TICK_FIELDS, instance.inputs)) for name, instance in used.items() if needs_ticks(name)
        ]
        self._taps = [(used[f.indicator], f.output, f.per_close) for f in self.features]
        twins = {name: type(instance)(**instance.params) for name, instance in used.items() if not needs_ticks(name)}
        self._twins = [(used[name].peek, twin, _picker(BAR_FIELDS, twin.inputs)) for name, twin in twins.items()]
        self._peek_taps = [(twins.get(f.indicator, used[f.indicator]), f.output, f.per_close) for f in self.features]
        self.peeked = np.full(len(self.features), np.nan)
        """The features of the latest `peek_bar`."""

    def update_tick(self, ts: float, price: float, size: float, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        """Feed one tick to the tick indicators (NaN for the fields it does not carry)."""
        fields = (ts, price, size, bid, ask, bid_size, ask_size)
        for update, pick in self._tick_indicators:
            update(*pick(fields))

    def update_bar(self, open: float, high: float, low: float, close: float, volume: float, session: float) -> np.ndarray:  # noqa: A002
        """Feed one closed bar; returns ``values``, this bar's features."""
        restart = self.restart(close, session)
        self.last_session, self.last_close = session, close
        if restart is not None:
            self._indicators = {name: type(instance)(**instance.params) for name, instance in self._indicators.items()}
            self.rebuild()
            if restart == JUMP:  # a bar across two price levels: scored by nothing, and not the new level's first bar
                self.values[:] = np.nan
                self.ready = False
                return self.values
        fields = (open, high, low, close, volume, session)
        for update, pick in self._bar_indicators:
            update(*pick(fields))
        self.ready = _tap(self._taps, close, self.values)
        return self.values

    def restart(self, close: float, session: float) -> str | None:
        """`JUMP` or `HOLE` when a bar closing at ``close`` in ``session`` starts the features afresh (`restarts`' rule,
        bar by bar); None when it does not."""
        previous = self.last_close
        ratio = close / previous if close * previous > 0.0 else 1.0
        if ratio > _UP or ratio < _DOWN:
            return JUMP
        return HOLE if session - self.last_session > RESTART_AFTER_DAYS else None

    def peek_bar(
        self, open: float, high: float, low: float, close: float, volume: float, session: float  # noqa: A002
    ) -> np.ndarray | None:
        """The features of a bar still forming (its open, high, low, close and volume so far), committing nothing.

        Returns ``peeked``, or None while a feature is undefined (also when the bar
        comes after a gap that starts the indicators afresh). Tick indicators read as
        they stand: they are sampled at the last tick, as at a close.
        """
        if self.restart(close, session) is not None:
            return None
        fields = (open, high, low, close, volume, session)
        for peek, twin, pick in self._twins:
            peek(*pick(fields), into=twin)
        return self.peeked if _tap(self._peek_taps, close, self.peeked) else None


def _tap(taps: list, close: float, values: np.ndarray) -> bool:
    """Write each tapped output into ``values`` (price outputs divided by ``close``); True when all are finite, as research
    reads a row (NaN while warming up; an overflow is no value to score either)."""
    ready = True
    for column, (indicator, output, per_close) in enumerate(taps):
        value = getattr(indicator, output)
        if per_close:
            value /= close
        ready = ready and math.isfinite(value)
        values[column] = value
    return ready
