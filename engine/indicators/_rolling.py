"""Fixed-size windows shared by the indicators, in two forms with the same arithmetic.

``RollingWindow`` and ``RollingExtremes`` serve the incremental objects; the ``window_*``
and ``extremes_*`` functions are their compiled twins for the batch kernels, holding
the same state in small arrays. Change one form and the other together: the parity
tests compare them to the last bit.

Sums are kept relative to an anchor near the window's mean and rebuilt from the
buffer once per lap, so rounding never accumulates over a 24/7 stream and the
variance does not suffer the cancellation of ``E[x^2] - E[x]^2`` at price scale.
"""

from __future__ import annotations

import math

import numpy as np

from engine._jit import helper, kernel
from engine.snapshot import state

__all__ = ["RollingWindow", "RollingExtremes", "lap_sum"]


def lap_sum(values: list[float]) -> float:
    """Left-to-right sum, as the kernels add: windows rebuild their sums with it once per lap."""
    total = 0.0
    for x in values:
        total += x
    return total


@state
class RollingWindow:
    """The last ``size`` values with their total, mean and variance."""

    __slots__ = ("size", "count", "_values", "_position", "_anchor", "_sum", "_sum_squares")

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self._values = [0.0] * size
        self._position = 0
        self._anchor = 0.0
        self._sum = 0.0
        self._sum_squares = 0.0

    def push(self, x: float) -> None:
        values = self._values
        position = self._position
        if self.count < self.size:
            if self.count == 0:
                self._anchor = x
            self.count += 1
        else:
            old = values[position] - self._anchor
            self._sum -= old
            self._sum_squares -= old * old
        values[position] = x
        deviation = x - self._anchor
        self._sum += deviation
        self._sum_squares += deviation * deviation
        position += 1
        if position == self.size:
            position = 0
            self._relap()
        self._position = position

    def _relap(self) -> None:
        anchor = self._anchor + self._sum / self.size
        total = 0.0
        squares = 0.0
        for x in self._values:
            deviation = x - anchor
            total += deviation
            squares += deviation * deviation
        self._anchor = anchor
        self._sum = total
        self._sum_squares = squares

    @property
    def full(self) -> bool:
        return self.count == self.size

    def total(self) -> float:
        return self._anchor * self.count + self._sum

    def mean(self) -> float:
        return self._anchor + self._sum / self.count

    def variance(self, ddof: int = 0) -> float:
        n = self.count
        centred = self._sum_squares - self._sum * self._sum / n
        return centred / (n - ddof) if centred > 0.0 else 0.0


@state
class RollingExtremes:
    """Highest high and lowest low of the last ``size`` pushes.

    A new extreme is O(1); when the evicted value was the extreme, the window is
    scanned, which keeps the amortised cost O(1) on market data.
    """

    __slots__ = ("size", "count", "highest", "lowest", "_highs", "_lows", "_position")

    def __init__(self, size: int) -> None:
        self.size = size
        self.count = 0
        self.highest = -math.inf
        self.lowest = math.inf
        self._highs = [-math.inf] * size
        self._lows = [math.inf] * size
        self._position = 0

    def push(self, high: float, low: float) -> None:
        position = self._position
        evicted_high = self._highs[position]
        evicted_low = self._lows[position]
        self._highs[position] = high
        self._lows[position] = low
        position += 1
        self._position = 0 if position == self.size else position
        if self.count < self.size:
            self.count += 1
        if high >= self.highest:
            self.highest = high
        elif evicted_high == self.highest:
            self.highest = max(self._highs)
        if low <= self.lowest:
            self.lowest = low
        elif evicted_low == self.lowest:
            self.lowest = min(self._lows)


# Compiled twins. The buffer travels beside a tuple of scalars (position, count, anchor,
# sum, squares) that is passed by value, so the scalars stay in registers. Inside an
# array they would be reloaded after every store to the buffer, and an array inside the
# tuple would be reference-counted on every push: either way the kernels run 7x slower.


@helper
def ring_push(values, position, total, x):
    """Replace the oldest value of a NaN-initialised ring: (position, sum) after the push.

    The compiled twin of `SimpleMovingAverage.update`: the sum stays NaN until every slot
    holds a value, and is rebuilt left to right once per lap.
    """
    total += x - values[position]
    values[position] = x
    position += 1
    if position == values.size:
        position = 0
        total = 0.0
        for i in range(values.size):
            total += values[i]
    return position, total


@helper
def window_new(size):
    return np.zeros(size), (0, 0, 0.0, 0.0, 0.0)


@helper
def window_push(values, window, x):
    position, count, anchor, total, squares = window
    size = values.size
    if count < size:
        if count == 0:
            anchor = x
        count += 1
    else:
        old = values[position] - anchor
        total -= old
        squares -= old * old
    values[position] = x
    deviation = x - anchor
    total += deviation
    squares += deviation * deviation
    position += 1
    if position == size:
        position = 0
        anchor = anchor + total / size
        total = 0.0
        squares = 0.0
        for i in range(size):
            deviation = values[i] - anchor
            total += deviation
            squares += deviation * deviation
    return position, count, anchor, total, squares


@helper
def window_full(values, window):
    return window[1] == values.size


@helper
def window_total(window):
    return window[2] * window[1] + window[3]


@helper
def window_mean(window):
    return window[2] + window[3] / window[1]


@helper
def window_variance(window, ddof):
    n = window[1]
    centred = window[4] - window[3] * window[3] / n
    return centred / (n - ddof) if centred > 0.0 else 0.0


@kernel
def rolling_extremes(high, low, period):
    """Highest high and lowest low of the last `period` rows whose high and low are finite.

    NaN until `period` such rows exist, and at rows that are skipped. One pass with its
    state in locals (the same scan as `RollingExtremes.push`).
    """
    n = high.size
    highest_out = np.full(n, np.nan)
    lowest_out = np.full(n, np.nan)
    highs = np.full(period, -np.inf)
    lows = np.full(period, np.inf)
    position = 0
    count = 0
    highest = -np.inf
    lowest = np.inf
    for i in range(n):
        h = high[i]
        lo = low[i]
        if h + lo - (h + lo) != 0.0:
            continue
        evicted_high = highs[position]
        evicted_low = lows[position]
        highs[position] = h
        lows[position] = lo
        position += 1
        if position == period:
            position = 0
        if count < period:
            count += 1
        if h >= highest:
            highest = h
        elif evicted_high == highest:
            highest = -np.inf
            for j in range(period):
                if highs[j] > highest:
                    highest = highs[j]
        if lo <= lowest:
            lowest = lo
        elif evicted_low == lowest:
            lowest = np.inf
            for j in range(period):
                if lows[j] < lowest:
                    lowest = lows[j]
        if count == period:
            highest_out[i] = highest
            lowest_out[i] = lowest
    return highest_out, lowest_out
