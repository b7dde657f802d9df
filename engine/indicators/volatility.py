"""Volatility and range: Bollinger bands, ATR, realised volatility, z-score, Donchian channel."""

from __future__ import annotations

import math

import numpy as np

from engine._jit import kernel
from engine.indicators._base import TOLERANCE, Indicator, Parameter, as_input, converged_after
from engine.indicators._rolling import (
    RollingExtremes,
    RollingWindow,
    rolling_extremes,
    window_full,
    window_mean,
    window_new,
    window_push,
    window_variance,
)

__all__ = ["BollingerBands", "AverageTrueRange", "RealisedVolatility", "ZScore", "DonchianChannel"]

_PERIOD = Parameter("period", 20, 2, 2000, "bars in the window")


class BollingerBands(Indicator):
    """Bollinger bands: mean ± `deviations` population standard deviations, with %b and width."""

    name = "bollinger"
    group = "volatility"
    inputs = ("close",)
    outputs = ("middle", "upper", "lower", "percent_b", "width")
    price_outputs = frozenset(("middle", "upper", "lower"))
    parameters = (_PERIOD, Parameter("deviations", 2.0, 0.1, 10.0, "band distance in standard deviations"))
    __slots__ = ("period", "deviations", "middle", "upper", "lower", "percent_b", "width", "_window")

    def __init__(self, period: int = 20, deviations: float = 2.0) -> None:
        self.period = period
        self.deviations = deviations
        self.warmup = period
        self.middle = self.upper = self.lower = self.percent_b = self.width = math.nan
        self._window = RollingWindow(period)

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        window = self._window
        window.push(close)
        if window.count < self.period:
            return
        middle = window.mean()
        spread = math.sqrt(window.variance()) * self.deviations
        self.middle = middle
        self.upper = middle + spread
        self.lower = middle - spread
        self.percent_b = (close - self.lower) / (2.0 * spread) if spread > 0.0 else 0.5
        self.width = 2.0 * spread / middle if middle != 0.0 else 0.0

    @staticmethod
    def batch(close: np.ndarray, period: int = 20, deviations: float = 2.0) -> tuple[np.ndarray, ...]:
        return _bollinger(as_input(close), period, deviations)


@kernel
def _bollinger(close, period, deviations):
    n = close.size
    middles = np.full(n, np.nan)
    uppers = np.full(n, np.nan)
    lowers = np.full(n, np.nan)
    percents = np.full(n, np.nan)
    widths = np.full(n, np.nan)
    values, window = window_new(period)
    middle = upper = lower = percent_b = width = np.nan
    for i in range(n):
        x = close[i]
        if x - x == 0.0:
            window = window_push(values, window, x)
            if window_full(values, window):
                middle = window_mean(window)
                spread = math.sqrt(window_variance(window, 0)) * deviations
                upper = middle + spread
                lower = middle - spread
                percent_b = (x - lower) / (2.0 * spread) if spread > 0.0 else 0.5
                width = 2.0 * spread / middle if middle != 0.0 else 0.0
        middles[i] = middle
        uppers[i] = upper
        lowers[i] = lower
        percents[i] = percent_b
        widths[i] = width
    return middles, uppers, lowers, percents, widths


class AverageTrueRange(Indicator):
    """Average true range with Wilder's smoothing, seeded with the mean of the first `period` true ranges."""

    name = "atr"
    group = "volatility"
    inputs = ("high", "low", "close")
    outputs = ("value",)
    price_outputs = frozenset(("value",))
    parameters = (Parameter("period", 14, 2, 500, "bars in Wilder's smoothing"), TOLERANCE)
    __slots__ = ("_count", "period", "tolerance", "value", "_previous_close", "_average", "_decay", "_weight")

    def __init__(self, period: int = 14, tolerance: float = 1e-9) -> None:
        self.period = period
        self.tolerance = tolerance
        # Wilder's (average * (n - 1) + tr) / n, with the division off the recursion's
        # critical path; within 1e-15 of TA-Lib's operation order.
        self._decay = (period - 1) / period
        self._weight = 1.0 / period
        self.warmup = period + 1 + converged_after(1.0 - 1.0 / period, tolerance)
        self._count = 0
        self.value = math.nan
        self._previous_close = 0.0
        self._average = 0.0

    def update(self, high: float, low: float, close: float) -> None:
        total = high + low + close
        if total - total != 0.0:
            return
        count = self._count + 1
        self._count = count
        previous = self._previous_close
        self._previous_close = close
        if count == 1:
            return
        # max(high, prior close) - min(low, prior close): TA-Lib's three-way max, without abs().
        true_range = (high if high > previous else previous) - (low if low < previous else previous)
        period = self.period
        if count > period + 1:
            self._average = self._average * self._decay + true_range * self._weight
        else:
            self._average += true_range
            if count < period + 1:
                return
            self._average /= period
        if count >= self.warmup:
            self.value = self._average

    @staticmethod
    def batch(high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14, tolerance: float = 1e-9) -> np.ndarray:
        warmup = period + 1 + converged_after(1.0 - 1.0 / period, tolerance)
        return _atr(as_input(high), as_input(low), as_input(close), period, warmup)


@kernel
def _atr(high, low, close, period, warmup):
    n = close.size
    out = np.full(n, np.nan)
    decay = (period - 1) / period
    weight = 1.0 / period
    count = 0
    previous = 0.0
    average = 0.0
    value = np.nan
    for i in range(n):
        h = high[i]
        lo = low[i]
        c = close[i]
        if h + lo + c - (h + lo + c) == 0.0:
            count += 1
            if count > 1:
                true_range = (h if h > previous else previous) - (lo if lo < previous else previous)
                if count > period + 1:
                    average = average * decay + true_range * weight
                else:
                    average += true_range
                    if count == period + 1:
                        average /= period
                if count >= warmup:
                    value = average
            previous = c
        out[i] = value
    return out


class RealisedVolatility(Indicator):
    """Realised volatility: sample standard deviation of log returns over `period` bars (not annualised)."""

    name = "realised_volatility"
    group = "volatility"
    inputs = ("close",)
    outputs = ("value",)
    parameters = (_PERIOD,)
    __slots__ = ("period", "value", "_previous", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period + 1
        self.value = math.nan
        self._previous = math.nan  # no close yet: the first has no return
        self._window = RollingWindow(period)

    def update(self, close: float) -> None:
        # A non-positive close has no log return: skipped like a non-finite one.
        if close - close != 0.0 or close <= 0.0:
            return
        previous = self._previous
        self._previous = close
        if previous != previous:
            return
        window = self._window
        window.push(math.log(close / previous))
        if window.count == self.period:
            self.value = math.sqrt(window.variance(1))

    @staticmethod
    def batch(close: np.ndarray, period: int = 20) -> np.ndarray:
        return _realised_volatility(as_input(close), period)


@kernel
def _realised_volatility(close, period):
    out = np.full(close.size, np.nan)
    values, window = window_new(period)
    previous = 0.0
    started = False
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0 and x > 0.0:
            if started:
                window = window_push(values, window, math.log(x / previous))
                if window_full(values, window):
                    value = math.sqrt(window_variance(window, 1))
            started = True
            previous = x
        out[i] = value
    return out


class ZScore(Indicator):
    """Z-score: distance of the close from its `period` mean in population standard deviations."""

    name = "zscore"
    group = "volatility"
    inputs = ("close",)
    outputs = ("value",)
    parameters = (_PERIOD,)
    __slots__ = ("period", "value", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period
        self.value = math.nan
        self._window = RollingWindow(period)

    def update(self, close: float) -> None:
        if close - close != 0.0:
            return
        window = self._window
        window.push(close)
        if window.count == self.period:
            deviation = math.sqrt(window.variance())
            self.value = (close - window.mean()) / deviation if deviation > 0.0 else 0.0

    @staticmethod
    def batch(close: np.ndarray, period: int = 20) -> np.ndarray:
        return _zscore(as_input(close), period)


@kernel
def _zscore(close, period):
    out = np.full(close.size, np.nan)
    values, window = window_new(period)
    value = np.nan
    for i in range(close.size):
        x = close[i]
        if x - x == 0.0:
            window = window_push(values, window, x)
            if window_full(values, window):
                deviation = math.sqrt(window_variance(window, 0))
                value = (x - window_mean(window)) / deviation if deviation > 0.0 else 0.0
        out[i] = value
    return out


class DonchianChannel(Indicator):
    """Donchian channel: highest high, lowest low and their midpoint over `period` bars."""

    name = "donchian"
    group = "volatility"
    inputs = ("high", "low")
    outputs = ("upper", "lower", "middle")
    price_outputs = frozenset(("upper", "lower", "middle"))
    parameters = (_PERIOD,)
    __slots__ = ("period", "upper", "lower", "middle", "_extremes")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period
        self.upper = self.lower = self.middle = math.nan
        self._extremes = RollingExtremes(period)

    def update(self, high: float, low: float) -> None:
        if high - high != 0.0 or low - low != 0.0:
            return
        extremes = self._extremes
        extremes.push(high, low)
        if extremes.count == self.period:
            self.upper = extremes.highest
            self.lower = extremes.lowest
            self.middle = (extremes.highest + extremes.lowest) / 2.0

    @staticmethod
    def batch(high: np.ndarray, low: np.ndarray, period: int = 20) -> tuple[np.ndarray, ...]:
        return _donchian(*rolling_extremes(as_input(high), as_input(low), period))


@kernel
def _donchian(highest, lowest):
    n = highest.size
    uppers = np.full(n, np.nan)
    lowers = np.full(n, np.nan)
    middles = np.full(n, np.nan)
    upper = lower = middle = np.nan
    for i in range(n):
        if highest[i] == highest[i]:
            upper = highest[i]
            lower = lowest[i]
            middle = (upper + lower) / 2.0
        uppers[i] = upper
        lowers[i] = lower
        middles[i] = middle
    return uppers, lowers, middles
