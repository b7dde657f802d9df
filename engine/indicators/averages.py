"""Moving averages: simple, exponential (TA-Lib seeding) and linearly weighted."""

from __future__ import annotations

import math

import numpy as np

from engine._jit import kernel
from engine.indicators._base import TOLERANCE, Indicator, Parameter, as_input, converged_after
from engine.indicators._rolling import lap_sum, ring_push

__all__ = ["SimpleMovingAverage", "ExponentialMovingAverage", "WeightedMovingAverage"]

_PERIOD = Parameter("period", 20, 2, 2000, "bars in the average")


class SimpleMovingAverage(Indicator):
    """Simple moving average: the mean of the last `period` closes."""

    name = "sma"
    group = "averages"
    inputs = ("close",)
    outputs = ("value",)
    price_outputs = frozenset(("value",))
    parameters = (_PERIOD,)
    __slots__ = ("period", "value", "_values", "_position", "_sum")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period
        self.value = math.nan
        # NaN slots keep the sum NaN until the first lap has replaced them all: the
        # warm-up costs no counter and no branch.
        self._values = [math.nan] * period
        self._position = 0
        self._sum = math.nan

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        values = self._values
        position = self._position
        total = self._sum + (close - values[position])  # the kernel's association
        values[position] = close
        position += 1
        if position == self.period:
            position = 0
            total = lap_sum(values)
        self._position = position
        self._sum = total
        self.value = total / self.period

    @staticmethod
    def batch(close: np.ndarray, period: int = 20) -> np.ndarray:
        return _sma(as_input(close), period)


@kernel
def _sma(close, period):
    out = np.full(close.size, np.nan)
    values = np.full(period, np.nan)
    position = 0
    total = np.nan
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0:
            position, total = ring_push(values, position, total, x)
            value = total / period
        out[i] = value
    return out


class ExponentialMovingAverage(Indicator):
    """Exponential moving average (k = 2 / (period + 1)), seeded with the first `period` closes' mean."""

    name = "ema"
    group = "averages"
    inputs = ("close",)
    outputs = ("value",)
    price_outputs = frozenset(("value",))
    parameters = (_PERIOD, TOLERANCE)
    __slots__ = ("_count", "period", "tolerance", "value", "_alpha", "_seed", "_average")

    def __init__(self, period: int = 20, tolerance: float = 1e-9) -> None:
        self.period = period
        self.tolerance = tolerance
        self._alpha = 2.0 / (period + 1)
        self.warmup = period + converged_after(1.0 - self._alpha, tolerance)
        self._count = 0
        self.value = math.nan
        self._seed = 0.0
        self._average = 0.0

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        count = self._count + 1
        self._count = count
        if count > self.period:
            # TA-Lib's form of the recursion, so the numbers match it to the bit.
            self._average = (close - self._average) * self._alpha + self._average
        elif count == self.period:
            self._average = (self._seed + close) / self.period
        else:
            self._seed += close
            return
        if count >= self.warmup:
            self.value = self._average

    @staticmethod
    def batch(close: np.ndarray, period: int = 20, tolerance: float = 1e-9) -> np.ndarray:
        alpha = 2.0 / (period + 1)
        return _ema(as_input(close), period, alpha, period + converged_after(1.0 - alpha, tolerance))


@kernel
def _ema(close, period, alpha, warmup):
    out = np.full(close.size, np.nan)
    count = 0
    seed = 0.0
    average = 0.0
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0:
            count += 1
            if count > period:
                average = (x - average) * alpha + average
            elif count == period:
                average = (seed + x) / period
            else:
                seed += x
            if count >= warmup:
                value = average
        out[i] = value
    return out


class WeightedMovingAverage(Indicator):
    """Linearly weighted moving average: weights 1..period, newest heaviest."""

    name = "wma"
    group = "averages"
    inputs = ("close",)
    outputs = ("value",)
    price_outputs = frozenset(("value",))
    parameters = (_PERIOD,)
    __slots__ = ("_count", "period", "value", "_values", "_position", "_numerator", "_total", "_divisor")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period
        self._count = 0
        self.value = math.nan
        self._values = [0.0] * period
        self._position = 0
        self._numerator = 0.0
        self._total = 0.0
        self._divisor = period * (period + 1) / 2.0

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        period = self.period
        position = self._position
        if self._count < period:
            self._count += 1
            self._numerator += self._count * close
            self._total += close
        else:
            # Every weight drops by one (the oldest to zero), the newest enters at `period`.
            self._numerator += period * close - self._total
            self._total += close - self._values[position]
        self._values[position] = close
        position += 1
        if position == period:
            position = 0
            self._relap()
        self._position = position
        if self._count == period:
            self.value = self._numerator / self._divisor

    def _relap(self) -> None:
        # After a full lap the buffer is in age order: rebuild the sums exactly.
        numerator = 0.0
        total = 0.0
        weight = 1.0
        for x in self._values:
            numerator += weight * x
            total += x
            weight += 1.0
        self._numerator = numerator
        self._total = total

    @staticmethod
    def batch(close: np.ndarray, period: int = 20) -> np.ndarray:
        return _wma(as_input(close), period)


@kernel
def _wma(close, period):
    out = np.full(close.size, np.nan)
    values = np.zeros(period)
    position = 0
    count = 0
    numerator = 0.0
    total = 0.0
    divisor = period * (period + 1) / 2.0
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0:
            if count < period:
                count += 1
                numerator += count * x
                total += x
            else:
                numerator += period * x - total
                total += x - values[position]
            values[position] = x
            position += 1
            if position == period:
                position = 0
                numerator = 0.0
                total = 0.0
                weight = 1.0
                for j in range(period):
                    numerator += weight * values[j]
                    total += values[j]
                    weight += 1.0
            if count == period:
                value = numerator / divisor
        out[i] = value
    return out
