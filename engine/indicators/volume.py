"""Volume: on-balance volume over a window, session VWAP and volume surge."""

from __future__ import annotations

import math

import numpy as np

from engine._jit import kernel
from engine.indicators._base import Indicator, Parameter, as_input
from engine.indicators._rolling import (
    RollingWindow,
    lap_sum,
    ring_push,
    window_full,
    window_mean,
    window_new,
    window_push,
)

__all__ = ["OnBalanceVolume", "SessionVolumeWeightedAveragePrice", "VolumeSurge"]


class OnBalanceVolume(Indicator):
    """On-balance volume over the last `period` bars: up-bar volume minus down-bar volume.

    Classic OBV is a running total whose level depends on where the history starts;
    its change over `period` bars (this value) does not, so a model can use it.
    """

    name = "obv"
    group = "volume"
    inputs = ("close", "volume")
    outputs = ("value",)
    parameters = (Parameter("period", 20, 1, 5000, "bars summed"),)
    __slots__ = ("period", "value", "_previous", "_signed", "_position", "_sum")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period + 1
        self.value = math.nan
        self._previous = math.nan
        # NaN slots keep the sum NaN until `period` signed volumes exist (see SMA).
        self._signed = [math.nan] * period
        self._position = 0
        self._sum = math.nan

    def update(self, close: float, volume: float) -> None:
        total = close + volume
        if total - total != 0.0:
            return
        previous = self._previous
        self._previous = close
        if close > previous:
            signed = volume
        elif close < previous:
            signed = -volume
        elif close == previous:
            signed = 0.0
        else:  # the first bar: no previous close to compare with
            return
        values = self._signed
        position = self._position
        total = self._sum + (signed - values[position])  # the kernel's association
        values[position] = signed
        position += 1
        if position == self.period:
            position = 0
            total = lap_sum(values)
        self._position = position
        self._sum = total
        self.value = total

    @staticmethod
    def batch(close: np.ndarray, volume: np.ndarray, period: int = 20) -> np.ndarray:
        return _obv(as_input(close), as_input(volume), period)


@kernel
def _obv(close, volume, period):
    out = np.full(close.size, np.nan)
    values = np.full(period, np.nan)
    position = 0
    total = np.nan
    previous = np.nan
    value = np.nan
    for i in range(close.size):
        c = close[i]
        v = volume[i]
        if c + v - (c + v) == 0.0:
            started = previous == previous
            signed = v if c > previous else -v if c < previous else 0.0
            previous = c
            if started:
                position, total = ring_push(values, position, total, signed)
                value = total
        out[i] = value
    return out


class SessionVolumeWeightedAveragePrice(Indicator):
    """Volume-weighted average of the typical price (H+L+C)/3 since the session opened.

    `session` is any number that changes when a new trading session starts (the
    exchange-local date, say); history must begin at a session open to be exact.
    """

    name = "session_vwap"
    group = "volume"
    inputs = ("high", "low", "close", "volume", "session")
    outputs = ("value",)
    price_outputs = frozenset(("value",))
    timescales = frozenset({"minute", "hour"})
    anchor = "session"
    __slots__ = ("value", "_session", "_price_volume", "_volume")

    def __init__(self) -> None:
        self.warmup = 1
        self.value = math.nan
        self._session = math.nan
        self._price_volume = 0.0
        self._volume = 0.0

    def update(self, high: float, low: float, close: float, volume: float, session: float) -> None:
        prices = high + low + close
        total = prices + volume + session
        if total - total != 0.0:
            return
        if session != self._session:
            self._session = session
            self._price_volume = 0.0
            self._volume = 0.0
        typical = prices / 3.0
        price_volume = self._price_volume + typical * volume
        traded = self._volume + volume
        self._price_volume = price_volume
        self._volume = traded
        # Until volume trades, the bar's own price is the best estimate.
        self.value = price_volume / traded if traded > 0.0 else typical

    @staticmethod
    def batch(
        high: np.ndarray, low: np.ndarray, close: np.ndarray, volume: np.ndarray, session: np.ndarray
    ) -> np.ndarray:
        return _session_vwap(as_input(high), as_input(low), as_input(close), as_input(volume), as_input(session))


@kernel
def _session_vwap(high, low, close, volume, session):
    out = np.full(close.size, np.nan)
    current = np.nan
    price_volume = 0.0
    total = 0.0
    value = np.nan
    for i in range(close.size):
        h = high[i]
        lo = low[i]
        c = close[i]
        v = volume[i]
        s = session[i]
        if h - h == 0.0 and lo - lo == 0.0 and c - c == 0.0 and v - v == 0.0 and s - s == 0.0:
            if s != current:
                current = s
                price_volume = 0.0
                total = 0.0
            typical = (h + lo + c) / 3.0
            price_volume += typical * v
            total += v
            value = price_volume / total if total > 0.0 else typical
        out[i] = value
    return out


class VolumeSurge(Indicator):
    """Volume surge: this bar's volume over the mean volume of the last `period` bars (itself included)."""

    name = "volume_surge"
    group = "volume"
    inputs = ("volume",)
    outputs = ("value",)
    parameters = (Parameter("period", 20, 2, 2000, "bars in the mean volume"),)
    __slots__ = ("period", "value", "_window")

    def __init__(self, period: int = 20) -> None:
        self.period = period
        self.warmup = period
        self.value = math.nan
        self._window = RollingWindow(period)

    def update(self, volume: float) -> None:
        if volume - volume != 0.0:
            return
        window = self._window
        window.push(volume)
        if window.count == self.period:
            mean = window.mean()
            # No volume at all in the window: nothing unusual about this bar either.
            self.value = volume / mean if mean > 0.0 else 1.0

    @staticmethod
    def batch(volume: np.ndarray, period: int = 20) -> np.ndarray:
        return _volume_surge(as_input(volume), period)


@kernel
def _volume_surge(volume, period):
    out = np.full(volume.size, np.nan)
    values, window = window_new(period)
    value = np.nan
    for i in range(volume.size):
        v = volume[i]
        if v - v == 0.0:
            window = window_push(values, window, v)
            if window_full(values, window):
                mean = window_mean(window)
                value = v / mean if mean > 0.0 else 1.0
        out[i] = value
    return out
