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
from numba import njit

__all__ = ["RollingWindow", "RollingExtremes"]


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

    @property
    def oldest(self) -> float:
        """The value that the next push evicts (meaningful once full)."""
        return self._values[self._position]

    def total(self) -> float:
        return self._anchor * self.count + self._sum

    def mean(self) -> float:
        return self._anchor + self._sum / self.count

    def variance(self, ddof: int = 0) -> float:
        n = self.count
        centred = self._sum_squares - self._sum * self._sum / n
        return centred / (n - ddof) if centred > 0.0 else 0.0


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


# Compiled twins. Window state: [position, count, anchor, sum, sum_squares].
_POSITION, _COUNT, _ANCHOR, _SUM, _SQUARES = 0, 1, 2, 3, 4


@njit(cache=True)
def window_new(size):
    return np.zeros(size), np.zeros(5)


@njit(cache=True)
def window_push(values, state, x):
    size = values.size
    position = int(state[_POSITION])
    count = state[_COUNT]
    if count < size:
        if count == 0:
            state[_ANCHOR] = x
        state[_COUNT] = count + 1
    else:
        old = values[position] - state[_ANCHOR]
        state[_SUM] -= old
        state[_SQUARES] -= old * old
    values[position] = x
    deviation = x - state[_ANCHOR]
    state[_SUM] += deviation
    state[_SQUARES] += deviation * deviation
    position += 1
    if position == size:
        position = 0
        anchor = state[_ANCHOR] + state[_SUM] / size
        total = 0.0
        squares = 0.0
        for i in range(size):
            deviation = values[i] - anchor
            total += deviation
            squares += deviation * deviation
        state[_ANCHOR] = anchor
        state[_SUM] = total
        state[_SQUARES] = squares
    state[_POSITION] = position


@njit(cache=True)
def window_full(values, state):
    return state[_COUNT] == values.size


@njit(cache=True)
def window_oldest(values, state):
    return values[int(state[_POSITION])]


@njit(cache=True)
def window_total(state):
    return state[_ANCHOR] * state[_COUNT] + state[_SUM]


@njit(cache=True)
def window_mean(state):
    return state[_ANCHOR] + state[_SUM] / state[_COUNT]


@njit(cache=True)
def window_variance(state, ddof):
    n = state[_COUNT]
    centred = state[_SQUARES] - state[_SUM] * state[_SUM] / n
    return centred / (n - ddof) if centred > 0.0 else 0.0


# Extremes state: [position, count, highest, lowest].
@njit(cache=True)
def extremes_new(size):
    highs = np.full(size, -np.inf)
    lows = np.full(size, np.inf)
    state = np.array([0.0, 0.0, -np.inf, np.inf])
    return highs, lows, state


@njit(cache=True)
def extremes_push(highs, lows, state, high, low):
    size = highs.size
    position = int(state[0])
    evicted_high = highs[position]
    evicted_low = lows[position]
    highs[position] = high
    lows[position] = low
    position += 1
    state[0] = 0 if position == size else position
    if state[1] < size:
        state[1] += 1
    if high >= state[2]:
        state[2] = high
    elif evicted_high == state[2]:
        state[2] = highs.max()
    if low <= state[3]:
        state[3] = low
    elif evicted_low == state[3]:
        state[3] = lows.min()
