"""Trend strength: Wilder's average directional index with its +DI and -DI lines."""

from __future__ import annotations

import math

import numpy as np

from engine._jit import kernel
from engine.indicators._base import TOLERANCE, Indicator, Parameter, as_input, converged_after

__all__ = ["AverageDirectionalIndex"]


class AverageDirectionalIndex(Indicator):
    """Average directional index (trend strength, 0..100) with +DI and -DI, as TA-Lib seeds them."""

    name = "adx"
    group = "trend"
    inputs = ("high", "low", "close")
    outputs = ("adx", "plus_di", "minus_di")
    parameters = (Parameter("period", 14, 2, 500, "bars in Wilder's smoothing"), TOLERANCE)
    __slots__ = (
        "_count", "period", "tolerance", "adx", "plus_di", "minus_di",
        "_high", "_low", "_close", "_plus_dm", "_minus_dm", "_true_range", "_dx_sum", "_average",
    )  # fmt: skip

    def __init__(self, period: int = 14, tolerance: float = 1e-9) -> None:
        self.period = period
        self.tolerance = tolerance
        self.warmup = _adx_warmup(period, tolerance)
        self._count = 0
        self.adx = self.plus_di = self.minus_di = math.nan
        self._high = self._low = self._close = 0.0
        self._plus_dm = self._minus_dm = self._true_range = self._dx_sum = self._average = 0.0

    def update(self, high: float, low: float, close: float) -> None:
        total = high + low + close
        if total - total != 0.0:
            return
        count = self._count + 1
        self._count = count
        up = high - self._high
        down = self._low - low
        previous_close = self._close
        self._high = high
        self._low = low
        self._close = close
        if count == 1:
            return
        period = self.period
        # Bars 2..period only sum; after that Wilder's smoothing (TA-Lib's phases).
        if count > period:
            self._plus_dm -= self._plus_dm / period
            self._minus_dm -= self._minus_dm / period
        if down > 0.0 and up < down:
            self._minus_dm += down
        elif up > 0.0 and up > down:
            self._plus_dm += up
        # max(high, prior close) - min(low, prior close): TA-Lib's three-way max, without abs().
        true_range = (high if high > previous_close else previous_close) - (low if low < previous_close else previous_close)
        if count <= period:
            self._true_range += true_range
            return
        self._true_range = self._true_range - self._true_range / period + true_range
        plus_di = minus_di = 0.0
        dx = -1.0
        if self._true_range != 0.0:
            minus_di = 100.0 * (self._minus_dm / self._true_range)
            plus_di = 100.0 * (self._plus_dm / self._true_range)
            total = minus_di + plus_di
            if total != 0.0:
                dx = 100.0 * (abs(minus_di - plus_di) / total)
        if count <= 2 * period:
            if dx >= 0.0:
                self._dx_sum += dx
            if count < 2 * period:
                return
            self._average = self._dx_sum / period
        elif dx >= 0.0:
            self._average = (self._average * (period - 1) + dx) / period
        if count >= self.warmup:
            self.adx = self._average
            self.plus_di = plus_di
            self.minus_di = minus_di

    @staticmethod
    def batch(
        high: np.ndarray, low: np.ndarray, close: np.ndarray, period: int = 14, tolerance: float = 1e-9
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _adx(as_input(high), as_input(low), as_input(close), period, _adx_warmup(period, tolerance))


def _adx_warmup(period: int, tolerance: float) -> int:
    # Two Wilder stages in series (DM/TR, then ADX): both seeds must fade.
    return 2 * period + 2 * converged_after(1.0 - 1.0 / period, tolerance)


@kernel
def _adx(high, low, close, period, warmup):
    n = close.size
    outputs = np.full((3, n), np.nan)
    count = 0
    last_high = last_low = last_close = 0.0
    plus_dm = minus_dm = smoothed_range = dx_sum = average = 0.0
    adx_value = plus_value = minus_value = np.nan
    for i in range(n):
        h = high[i]
        lo = low[i]
        c = close[i]
        if h + lo + c - (h + lo + c) == 0.0:
            count += 1
            up = h - last_high
            down = last_low - lo
            previous_close = last_close
            last_high = h
            last_low = lo
            last_close = c
            if count > 1:
                if count > period:
                    plus_dm -= plus_dm / period
                    minus_dm -= minus_dm / period
                if down > 0.0 and up < down:
                    minus_dm += down
                elif up > 0.0 and up > down:
                    plus_dm += up
                true_range = (h if h > previous_close else previous_close) - (lo if lo < previous_close else previous_close)
                if count <= period:
                    smoothed_range += true_range
                else:
                    smoothed_range = smoothed_range - smoothed_range / period + true_range
                    plus_di = 0.0
                    minus_di = 0.0
                    dx = -1.0
                    if smoothed_range != 0.0:
                        minus_di = 100.0 * (minus_dm / smoothed_range)
                        plus_di = 100.0 * (plus_dm / smoothed_range)
                        total = minus_di + plus_di
                        if total != 0.0:
                            dx = 100.0 * (abs(minus_di - plus_di) / total)
                    seeded = True
                    if count <= 2 * period:
                        if dx >= 0.0:
                            dx_sum += dx
                        if count < 2 * period:
                            seeded = False
                        else:
                            average = dx_sum / period
                    elif dx >= 0.0:
                        average = (average * (period - 1) + dx) / period
                    if seeded and count >= warmup:
                        adx_value = average
                        plus_value = plus_di
                        minus_value = minus_di
        outputs[0, i] = adx_value
        outputs[1, i] = plus_value
        outputs[2, i] = minus_value
    return outputs[0], outputs[1], outputs[2]
