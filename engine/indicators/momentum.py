"""Momentum oscillators: RSI (Wilder), MACD, rate of change and the slow stochastic.

Seeding follows TA-Lib's so that values match it after warm-up; where TA-Lib divides
by a zero range and prints 0, these print the neutral 50 (a flat market is neither
overbought nor oversold), which is what a model should see.
"""

from __future__ import annotations

import math

import numpy as np

from engine._jit import kernel
from engine.indicators._base import TOLERANCE, Indicator, Parameter, as_input, converged_after
from engine.indicators._rolling import (
    RollingExtremes,
    ring_push,
    rolling_extremes,
)
from engine.indicators.averages import SimpleMovingAverage

__all__ = ["RelativeStrengthIndex", "MovingAverageConvergenceDivergence", "RateOfChange", "Stochastic"]


class RelativeStrengthIndex(Indicator):
    """Wilder's relative strength index, 0..100."""

    name = "rsi"
    group = "momentum"
    inputs = ("close",)
    outputs = ("value",)
    parameters = (Parameter("period", 14, 2, 500, "bars in Wilder's smoothing"), TOLERANCE)
    __slots__ = ("_count", "period", "tolerance", "value", "_previous", "_gain", "_loss")

    def __init__(self, period: int = 14, tolerance: float = 1e-9) -> None:
        self.period = period
        self.tolerance = tolerance
        self.warmup = period + 1 + converged_after(1.0 - 1.0 / period, tolerance)
        self._count = 0
        self.value = math.nan
        self._previous = 0.0
        self._gain = 0.0
        self._loss = 0.0

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        count = self._count + 1
        self._count = count
        change = close - self._previous
        self._previous = close
        if count == 1:
            return
        period = self.period
        if count > period + 1:
            # TA-Lib's operation order: scale up, add, scale down.
            self._gain *= period - 1
            self._loss *= period - 1
        if change < 0.0:
            self._loss -= change
        else:
            self._gain += change
        if count <= period:
            return
        self._gain /= period
        self._loss /= period
        if count >= self.warmup:
            total = self._gain + self._loss
            self.value = 100.0 * (self._gain / total) if total != 0.0 else 50.0

    @staticmethod
    def batch(close: np.ndarray, period: int = 14, tolerance: float = 1e-9) -> np.ndarray:
        warmup = period + 1 + converged_after(1.0 - 1.0 / period, tolerance)
        return _rsi(as_input(close), period, warmup)


@kernel
def _rsi(close, period, warmup):
    out = np.full(close.size, np.nan)
    count = 0
    previous = 0.0
    gain = 0.0
    loss = 0.0
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0:
            count += 1
            change = x - previous
            previous = x
            if count > 1:
                if count > period + 1:
                    gain *= period - 1
                    loss *= period - 1
                if change < 0.0:
                    loss -= change
                else:
                    gain += change
                if count >= period + 1:
                    gain /= period
                    loss /= period
                    if count >= warmup:
                        total = gain + loss
                        value = 100.0 * (gain / total) if total != 0.0 else 50.0
        out[i] = value
    return out


class MovingAverageConvergenceDivergence(Indicator):
    """MACD: fast EMA minus slow EMA, its signal EMA and the histogram between them."""

    name = "macd"
    group = "momentum"
    inputs = ("close",)
    outputs = ("macd", "signal", "histogram")
    price_outputs = frozenset(("macd", "signal", "histogram"))
    parameters = (
        Parameter("fast", 12, 2, 500, "bars in the fast EMA"),
        Parameter("slow", 26, 3, 1000, "bars in the slow EMA; more than `fast`"),
        Parameter("signal_period", 9, 2, 500, "bars in the signal EMA of the MACD line"),
        TOLERANCE,
    )
    __slots__ = (
        "_count", "fast", "slow", "signal_period", "tolerance", "macd", "signal", "histogram",
        "_fast_alpha", "_slow_alpha", "_signal_alpha",
        "_fast_average", "_slow_average", "_signal_average", "_signal_seed",
    )  # fmt: skip

    def __init__(self, fast: int = 12, slow: int = 26, signal_period: int = 9, tolerance: float = 1e-9) -> None:
        self.fast = fast
        self.slow = slow
        self.signal_period = signal_period
        self.tolerance = tolerance
        self._fast_alpha = 2.0 / (fast + 1)
        self._slow_alpha = 2.0 / (slow + 1)
        self._signal_alpha = 2.0 / (signal_period + 1)
        self.warmup = _macd_warmup(slow, signal_period, tolerance)
        self._count = 0
        self.macd = self.signal = self.histogram = math.nan
        self._fast_average = self._slow_average = self._signal_average = self._signal_seed = 0.0

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        count = self._count + 1
        self._count = count
        slow = self.slow
        # TA-Lib seeds both EMAs at bar `slow`: the fast one with the mean of its own
        # last `fast` closes, so both lines start together.
        if count > slow:
            self._fast_average = (close - self._fast_average) * self._fast_alpha + self._fast_average
            self._slow_average = (close - self._slow_average) * self._slow_alpha + self._slow_average
        else:
            self._slow_average += close
            if count > slow - self.fast:
                self._fast_average += close
            if count < slow:
                return
            self._fast_average /= self.fast
            self._slow_average /= slow
        line = self._fast_average - self._slow_average
        seen = count - slow + 1
        if seen > self.signal_period:
            self._signal_average = (line - self._signal_average) * self._signal_alpha + self._signal_average
        elif seen == self.signal_period:
            self._signal_average = (self._signal_seed + line) / self.signal_period
        else:
            self._signal_seed += line
            return
        if count >= self.warmup:
            self.macd = line
            self.signal = self._signal_average
            self.histogram = line - self._signal_average

    @classmethod
    def conflict(cls, params: dict[str, int | float]) -> tuple[str, str] | None:
        if params["fast"] >= params["slow"]:
            return "fast", f"fast ({params['fast']}) must be less than slow ({params['slow']})"
        return None

    @staticmethod
    def batch(
        close: np.ndarray, fast: int = 12, slow: int = 26, signal_period: int = 9, tolerance: float = 1e-9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _macd(as_input(close), fast, slow, signal_period, _macd_warmup(slow, signal_period, tolerance))


def _macd_warmup(slow: int, signal_period: int, tolerance: float) -> int:
    # The slow line's seed error passes through the signal EMA: both must fade.
    return (
        slow
        + signal_period
        - 1
        + converged_after(1.0 - 2.0 / (slow + 1), tolerance)
        + converged_after(1.0 - 2.0 / (signal_period + 1), tolerance)
    )


@kernel
def _macd(close, fast, slow, signal_period, warmup):
    n = close.size
    macd = np.full(n, np.nan)
    signal = np.full(n, np.nan)
    histogram = np.full(n, np.nan)
    fast_alpha = 2.0 / (fast + 1)
    slow_alpha = 2.0 / (slow + 1)
    signal_alpha = 2.0 / (signal_period + 1)
    count = 0
    fast_average = 0.0
    slow_average = 0.0
    signal_average = 0.0
    signal_seed = 0.0
    line_value = np.nan
    signal_value = np.nan
    histogram_value = np.nan
    for i in range(n):
        x = close[i]
        if x - x == 0.0:
            count += 1
            ready = True
            if count > slow:
                fast_average = (x - fast_average) * fast_alpha + fast_average
                slow_average = (x - slow_average) * slow_alpha + slow_average
            else:
                slow_average += x
                if count > slow - fast:
                    fast_average += x
                if count < slow:
                    ready = False
                else:
                    fast_average /= fast
                    slow_average /= slow
            if ready:
                line = fast_average - slow_average
                seen = count - slow + 1
                if seen > signal_period:
                    signal_average = (line - signal_average) * signal_alpha + signal_average
                elif seen == signal_period:
                    signal_average = (signal_seed + line) / signal_period
                else:
                    signal_seed += line
                    ready = False
                if ready and count >= warmup:
                    line_value = line
                    signal_value = signal_average
                    histogram_value = line - signal_average
        macd[i] = line_value
        signal[i] = signal_value
        histogram[i] = histogram_value
    return macd, signal, histogram


class RateOfChange(Indicator):
    """Rate of change: percent move of the close over `period` bars."""

    name = "roc"
    group = "momentum"
    inputs = ("close",)
    outputs = ("value",)
    parameters = (Parameter("period", 10, 1, 1000, "bars to look back"),)
    __slots__ = ("period", "value", "_closes", "_position")

    def __init__(self, period: int = 10) -> None:
        self.period = period
        self.warmup = period + 1
        self.value = math.nan
        self._closes = [math.nan] * period  # NaN until a close `period` bars back exists
        self._position = 0

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        closes = self._closes
        position = self._position
        then = closes[position]
        closes[position] = close
        position += 1
        self._position = 0 if position == self.period else position
        if then == then:
            self.value = (close / then - 1.0) * 100.0 if then != 0.0 else 0.0

    @staticmethod
    def batch(close: np.ndarray, period: int = 10) -> np.ndarray:
        return _roc(as_input(close), period)


@kernel
def _roc(close, period):
    out = np.full(close.size, np.nan)
    closes = np.full(period, np.nan)
    position = 0
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0:
            then = closes[position]
            closes[position] = x
            position += 1
            if position == period:
                position = 0
            if then == then:
                value = (x / then - 1.0) * 100.0 if then != 0.0 else 0.0
        out[i] = value
    return out


class Stochastic(Indicator):
    """Slow stochastic oscillator: %K (smoothed) and %D, 0..100."""

    name = "stochastic"
    group = "momentum"
    inputs = ("high", "low", "close")
    outputs = ("k", "d")
    parameters = (
        Parameter("k_period", 14, 1, 500, "bars in the high-low range"),
        Parameter("k_smoothing", 3, 1, 100, "bars in the mean that smooths %K"),
        Parameter("d_period", 3, 1, 100, "bars in the mean of %K that gives %D"),
    )
    __slots__ = ("k_period", "k_smoothing", "d_period", "k", "d", "_range", "_k", "_d")

    def __init__(self, k_period: int = 14, k_smoothing: int = 3, d_period: int = 3) -> None:
        self.k_period = k_period
        self.k_smoothing = k_smoothing
        self.d_period = d_period
        self.warmup = k_period + k_smoothing + d_period - 2
        self.k = self.d = math.nan
        self._range = RollingExtremes(k_period)
        self._k = SimpleMovingAverage(k_smoothing)
        self._d = SimpleMovingAverage(d_period)

    def update(self, high: float, low: float, close: float) -> None:
        total = high + low + close
        if total - total != 0.0:
            return
        extremes = self._range
        extremes.push(high, low)
        if extremes.count < self.k_period:
            return
        # TA-Lib divides by range/100 rather than multiplying by 100: same bits as it.
        scale = (extremes.highest - extremes.lowest) / 100.0
        smoothed = self._k
        smoothed.update((close - extremes.lowest) / scale if scale != 0.0 else 50.0)
        k = smoothed.value
        if k != k:
            return
        signal = self._d
        signal.update(k)
        if signal.value == signal.value:
            self.k = k
            self.d = signal.value

    @staticmethod
    def batch(
        high: np.ndarray, low: np.ndarray, close: np.ndarray,
        k_period: int = 14, k_smoothing: int = 3, d_period: int = 3,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        high, low, close = as_input(high), as_input(low), as_input(close)
        # A row with a non-finite close is skipped whole, so it may not enter the range.
        skipped = ~np.isfinite(close)
        if skipped.any():
            high = np.where(skipped, np.nan, high)
        highest, lowest = rolling_extremes(high, low, k_period)
        return _stochastic(highest, lowest, close, k_smoothing, d_period)


@kernel
def _stochastic(highest, lowest, close, k_smoothing, d_period):
    # `highest` is NaN where the row was skipped or the range is not yet full.
    n = close.size
    k_out = np.full(n, np.nan)
    d_out = np.full(n, np.nan)
    fast = np.full(k_smoothing, np.nan)
    slow = np.full(d_period, np.nan)
    fast_position = slow_position = 0
    fast_sum = slow_sum = np.nan
    k_value = np.nan
    d_value = np.nan
    for i in range(n):
        c = close[i]
        if c - c == 0.0 and highest[i] == highest[i]:
            scale = (highest[i] - lowest[i]) / 100.0
            raw = (c - lowest[i]) / scale if scale != 0.0 else 50.0
            fast_position, fast_sum = ring_push(fast, fast_position, fast_sum, raw)
            k = fast_sum / k_smoothing
            if k == k:
                slow_position, slow_sum = ring_push(slow, slow_position, slow_sum, k)
                d = slow_sum / d_period
                if d == d:
                    k_value = k
                    d_value = d
        k_out[i] = k_value
        d_out[i] = d_value
    return k_out, d_out
