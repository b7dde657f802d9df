"""Tick-level microstructure: book imbalance, microprice, trade-sign imbalance and VPIN."""

from __future__ import annotations

import math

import numpy as np

from engine._jit import kernel
from engine.indicators._base import TICK_TIMESCALES, Indicator, Parameter, as_input
from engine.indicators._rolling import (
    RollingWindow,
    window_full,
    window_mean,
    window_new,
    window_push,
    window_total,
    window_variance,
)

__all__ = ["OrderBookImbalance", "Microprice", "TradeSignImbalance", "VolumeSynchronisedProbabilityOfInformedTrading"]

_SQRT2 = math.sqrt(2.0)


class OrderBookImbalance(Indicator):
    """Top-of-book imbalance (bid size - ask size) / (bid size + ask size), averaged over `period` quotes."""

    name = "order_book_imbalance"
    group = "microstructure"
    inputs = ("bid_size", "ask_size")
    outputs = ("value",)
    parameters = (Parameter("period", 10, 1, 10000, "quotes averaged"),)
    timescales = TICK_TIMESCALES
    __slots__ = ("period", "value", "_window")

    def __init__(self, period: int = 10) -> None:
        self.period = period
        self.warmup = period
        self.value = math.nan
        self._window = RollingWindow(period)

    def update(self, bid_size: float, ask_size: float) -> None:
        if bid_size - bid_size != 0.0 or ask_size - ask_size != 0.0:
            return
        depth = bid_size + ask_size
        window = self._window
        window.push((bid_size - ask_size) / depth if depth > 0.0 else 0.0)
        if window.count == self.period:
            self.value = window.mean()

    @staticmethod
    def batch(bid_size: np.ndarray, ask_size: np.ndarray, period: int = 10) -> np.ndarray:
        return _order_book_imbalance(as_input(bid_size), as_input(ask_size), period)


@kernel
def _order_book_imbalance(bid_size, ask_size, period):
    out = np.full(bid_size.size, np.nan)
    values, window = window_new(period)
    value = np.nan
    for i in range(bid_size.size):
        b = bid_size[i]
        a = ask_size[i]
        if b - b == 0.0 and a - a == 0.0:
            depth = b + a
            window = window_push(values, window, (b - a) / depth if depth > 0.0 else 0.0)
            if window_full(values, window):
                value = window_mean(window)
        out[i] = value
    return out


class Microprice(Indicator):
    """Size-weighted mid: bid x ask size + ask x bid size over total size (the mid when the book is empty)."""

    name = "microprice"
    group = "microstructure"
    inputs = ("bid", "ask", "bid_size", "ask_size")
    outputs = ("value",)
    price_outputs = frozenset(("value",))
    timescales = TICK_TIMESCALES
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.warmup = 1
        self.value = math.nan

    def update(self, bid: float, ask: float, bid_size: float, ask_size: float) -> None:
        if bid - bid != 0.0 or ask - ask != 0.0 or bid_size - bid_size != 0.0 or ask_size - ask_size != 0.0:
            return
        depth = bid_size + ask_size
        self.value = (bid * ask_size + ask * bid_size) / depth if depth > 0.0 else (bid + ask) / 2.0

    @staticmethod
    def batch(bid: np.ndarray, ask: np.ndarray, bid_size: np.ndarray, ask_size: np.ndarray) -> np.ndarray:
        return _microprice(as_input(bid), as_input(ask), as_input(bid_size), as_input(ask_size))


@kernel
def _microprice(bid, ask, bid_size, ask_size):
    out = np.full(bid.size, np.nan)
    value = np.nan
    for i in range(bid.size):
        b = bid[i]
        a = ask[i]
        bs = bid_size[i]
        az = ask_size[i]
        if b - b == 0.0 and a - a == 0.0 and bs - bs == 0.0 and az - az == 0.0:
            depth = bs + az
            value = (b * az + a * bs) / depth if depth > 0.0 else (b + a) / 2.0
        out[i] = value
    return out


class TradeSignImbalance(Indicator):
    """Signed-volume share of the last `period` trades, -1..1, signs by the tick test.

    An uptick buys, a downtick sells; a trade at an unchanged price stays unsigned,
    so the value depends on the last `period` + 1 trades only (a carried sign would
    reach back to an arbitrarily old price change).
    """

    name = "trade_sign_imbalance"
    group = "microstructure"
    inputs = ("price", "size")
    outputs = ("value",)
    parameters = (Parameter("period", 100, 1, 100000, "trades in the window"),)
    timescales = TICK_TIMESCALES
    __slots__ = ("period", "value", "_previous", "_signed", "_sizes")

    def __init__(self, period: int = 100) -> None:
        self.period = period
        self.warmup = period + 1
        self.value = math.nan
        self._previous = math.nan  # no trade yet: the first has no tick to compare
        self._signed = RollingWindow(period)
        self._sizes = RollingWindow(period)

    def update(self, price: float, size: float) -> None:
        if price - price != 0.0 or size - size != 0.0:
            return
        previous = self._previous
        self._previous = price
        if previous != previous:
            return
        signed = size if price > previous else -size if price < previous else 0.0
        self._signed.push(signed)
        self._sizes.push(size)
        if self._sizes.count == self.period:
            total = self._sizes.total()
            self.value = self._signed.total() / total if total > 0.0 else 0.0

    @staticmethod
    def batch(price: np.ndarray, size: np.ndarray, period: int = 100) -> np.ndarray:
        return _trade_sign_imbalance(as_input(price), as_input(size), period)


@kernel
def _trade_sign_imbalance(price, size, period):
    out = np.full(price.size, np.nan)
    signed_values, signed = window_new(period)
    sizes_values, sizes = window_new(period)
    previous = 0.0
    started = False
    value = np.nan
    for i in range(price.size):
        p = price[i]
        s = size[i]
        if p - p == 0.0 and s - s == 0.0:
            if started:
                signed = window_push(signed_values, signed, s if p > previous else -s if p < previous else 0.0)
                sizes = window_push(sizes_values, sizes, s)
                if window_full(sizes_values, sizes):
                    total = window_total(sizes)
                    value = window_total(signed) / total if total > 0.0 else 0.0
            started = True
            previous = p
        out[i] = value
    return out


class VolumeSynchronisedProbabilityOfInformedTrading(Indicator):
    """VPIN with bulk volume classification: mean |buy - sell| share of volume over `period` bars.

    Each bar's volume is split into buys and sells by Phi(change / sigma), sigma being
    the standard deviation of the last `period` price changes (Easley, Lopez de Prado
    and O'Hara, 2012). The buckets are the bars themselves, not volume buckets: a
    volume clock's bucket edges depend on where counting started, so two runs over
    the same recent data would disagree and backtest would not equal live.
    """

    name = "vpin"
    group = "microstructure"
    inputs = ("close", "volume")
    outputs = ("value",)
    parameters = (Parameter("period", 50, 2, 10000, "bars (or trades) in the window"),)
    timescales = frozenset({"tick", "minute"})
    __slots__ = ("period", "value", "_previous", "_changes", "_imbalance", "_volume")

    def __init__(self, period: int = 50) -> None:
        self.period = period
        self.warmup = 2 * period
        self.value = math.nan
        self._previous = math.nan  # no close yet: the first has no change
        self._changes = RollingWindow(period)
        self._imbalance = RollingWindow(period)
        self._volume = RollingWindow(period)

    def update(self, close: float, volume: float) -> None:
        if close - close != 0.0 or volume - volume != 0.0:
            return
        previous = self._previous
        self._previous = close
        if previous != previous:
            return
        change = close - previous
        changes = self._changes
        changes.push(change)
        if changes.count < self.period:
            return
        sigma = math.sqrt(changes.variance())
        buy_share = 0.5 * (1.0 + math.erf(change / (sigma * _SQRT2))) if sigma > 0.0 else 0.5
        self._imbalance.push(volume * abs(2.0 * buy_share - 1.0))
        self._volume.push(volume)
        if self._volume.count == self.period:
            total = self._volume.total()
            self.value = self._imbalance.total() / total if total > 0.0 else 0.0

    @staticmethod
    def batch(close: np.ndarray, volume: np.ndarray, period: int = 50) -> np.ndarray:
        return _vpin(as_input(close), as_input(volume), period)


@kernel
def _vpin(close, volume, period):
    out = np.full(close.size, np.nan)
    changes_values, changes = window_new(period)
    imbalances_values, imbalances = window_new(period)
    volumes_values, volumes = window_new(period)
    previous = 0.0
    started = False
    value = np.nan
    for i in range(close.size):
        c = close[i]
        v = volume[i]
        if c - c == 0.0 and v - v == 0.0:
            if started:
                change = c - previous
                changes = window_push(changes_values, changes, change)
                if window_full(changes_values, changes):
                    sigma = math.sqrt(window_variance(changes, 0))
                    buy_share = 0.5 * (1.0 + math.erf(change / (sigma * _SQRT2))) if sigma > 0.0 else 0.5
                    imbalances = window_push(imbalances_values, imbalances, v * abs(2.0 * buy_share - 1.0))
                    volumes = window_push(volumes_values, volumes, v)
                    if window_full(volumes_values, volumes):
                        total = window_total(volumes)
                        value = window_total(imbalances) / total if total > 0.0 else 0.0
            started = True
            previous = c
        out[i] = value
    return out
