"""A seeded synthetic market, so that the demo and the tests run with no data download.

Each ticker walks through regimes (bull, bear, range, volatile) that persist for
weeks: trends carry a little momentum, ranges revert. Intraday, volatility, volume and
trade arrival follow the U shape of a real session, and order flow is mildly informed:
the buy/sell imbalance of a minute leans the next minutes' drift its way, which the
order-flow indicators can learn. Ticks carry the quote they traded against; minute
bars are rolled up from the ticks with the engine's own aggregation.

The same seed and ticker give the same series on every machine; each ticker draws
from its own stream, so adding a ticker does not change the others.
"""

from __future__ import annotations

import hashlib
from datetime import date

import numpy as np

from engine.bars import COLUMNS, Bars, aggregate, resample
from engine.cadence import parse_cadence
from engine.calendar import (
    EPOCH,
    NS_PER_DAY,
    NS_PER_MINUTE,
    Calendar,
    close_minutes,
    local_to_utc,
    session_days,
    trading_days,
)

__all__ = ["generate", "REGIMES"]

REGIMES = ("bull", "bear", "range", "volatile")
# Daily drift, daily volatility and lag-one autocorrelation of each regime.
_DRIFT = np.array([0.0012, -0.0012, 0.0, 0.0])
_VOLATILITY = np.array([0.010, 0.014, 0.008, 0.025])
_MOMENTUM = np.array([0.15, 0.15, -0.25, 0.0])
_STAY = 0.97  # a regime lasts about a month of sessions on average


def _stream(seed: int, ticker: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}:{ticker}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _regimes(rng: np.random.Generator, count: int) -> np.ndarray:
    states = np.empty(count, dtype=np.int64)
    state = int(rng.integers(len(REGIMES)))
    switches = rng.random(count) > _STAY
    picks = rng.integers(len(REGIMES), size=count)
    for i in range(count):
        if switches[i]:
            state = int(picks[i])
        states[i] = state
    return states


def generate(
    tickers: list[str],
    cadence: str,
    sessions: int,
    cal: Calendar,
    *,
    seed: int = 7,
    start: date = date(2020, 1, 2),
    ticks: bool = False,
) -> dict[str, tuple[Bars, dict[str, np.ndarray] | None]]:
    """Bars of ``cadence`` over ``sessions`` trading sessions per ticker, and ticks when asked (intraday only)."""
    first = (start - EPOCH).days
    days = trading_days(cal, first, first + sessions * 2 + 30)[:sessions]
    intraday = parse_cadence(cadence).minutes is not None
    result = {}
    for ticker in tickers:
        rng = _stream(seed, ticker)
        price = float(rng.uniform(20, 400))
        if intraday:
            minutes, tick_table = _minutes(rng, days, price, cal, ticks)
            bars = minutes if cadence == "1m" else resample(minutes, cadence, cal)
        else:
            bars, tick_table = _sessions(rng, days, price, cal), None
            if cadence != "1d":
                bars = resample(bars, cadence, cal)
        result[ticker] = (Bars(ticker, cadence, *(getattr(bars, c) for c in COLUMNS)), tick_table)
    return result


def _sessions(rng: np.random.Generator, days: np.ndarray, price: float, cal: Calendar) -> Bars:
    """Daily bars: one per session, from open to close in the exchange's time zone."""
    count = len(days)
    regime = _regimes(rng, count)
    noise = rng.standard_normal(count)
    returns = np.empty(count)
    previous = 0.0
    for i in range(count):
        state = regime[i]
        previous = _DRIFT[state] + _MOMENTUM[state] * previous + _VOLATILITY[state] * noise[i]
        returns[i] = previous
    close = price * np.exp(np.cumsum(returns))
    gap = _VOLATILITY[regime] * 0.2 * rng.standard_normal(count)
    open_ = np.r_[price, close[:-1]] * np.exp(gap)
    wick = _VOLATILITY[regime] * np.abs(rng.standard_normal((2, count))) * 0.6
    high = np.maximum(open_, close) * np.exp(wick[0])
    low = np.minimum(open_, close) * np.exp(-wick[1])
    volume = np.round(1e6 * np.exp(0.3 * rng.standard_normal(count) + 20 * np.abs(returns)))
    start = local_to_utc(days * NS_PER_DAY + cal.open_minute * NS_PER_MINUTE, cal.timezone)
    end = start + (close_minutes(days, cal) - cal.open_minute if cal.holidays else cal.session_minutes) * NS_PER_MINUTE
    return Bars("", "1d", start, end, open_, high, low, close, volume)


def _seasonality(length: int) -> np.ndarray:
    """The U shape of a session: busy at the open and the close, quiet at lunch (mean 1)."""
    position = np.linspace(-1.0, 1.0, length)
    shape = 0.6 + 1.2 * position**2
    return shape / shape.mean()


def _minutes(
    rng: np.random.Generator, days: np.ndarray, price: float, cal: Calendar, with_ticks: bool
) -> tuple[Bars, dict[str, np.ndarray] | None]:
    per_session = cal.session_minutes
    count = len(days) * per_session
    shape = np.tile(_seasonality(per_session), len(days))
    regime = np.repeat(_regimes(rng, len(days)), per_session)
    scale = np.sqrt(per_session)
    flow = np.empty(count)  # informed order-flow imbalance, persistent over a few minutes
    innovations = rng.standard_normal(count)
    level = 0.0
    for i in range(count):
        level = 0.8 * level + 0.6 * innovations[i]
        flow[i] = level
    volatility = _VOLATILITY[regime] / scale * np.sqrt(shape)
    returns = _DRIFT[regime] / per_session + 0.25 * volatility * np.r_[0.0, flow[:-1]] + volatility * rng.standard_normal(count)
    mid = price * np.exp(np.cumsum(returns))
    local = (days[:, None] * NS_PER_DAY + (cal.open_minute + np.arange(per_session)) * NS_PER_MINUTE).ravel()
    start = local_to_utc(local, cal.timezone)
    arrivals = rng.poisson(6.0 * shape)
    if cal.holidays:  # nothing trades after an early close
        arrivals[~session_days(start, cal)[1]] = 0
    if not with_ticks:
        wick = volatility * np.abs(rng.standard_normal((2, count))) * mid
        open_ = np.r_[price, mid[:-1]]
        volume = np.round(arrivals * rng.lognormal(4.5, 0.6, count))
        high = np.maximum(open_, mid) + wick[0]
        low = np.minimum(open_, mid) - wick[1]
        keep = arrivals > 0  # a minute without trades has no bar, as in real minute files
        bars = Bars("", "1m", start, start + NS_PER_MINUTE, open_, high, low, mid, volume)
        return bars.select(keep), None
    minute = np.repeat(np.arange(count), arrivals)  # the minute of each tick
    ticks = _ticks(rng, start, minute, mid, flow, arrivals, volatility)
    columns = aggregate(minute, ticks["ts"], ticks["ts"], ticks["price"], ticks["price"], ticks["price"], ticks["price"], ticks["size"])
    present = np.unique(minute)
    bars = Bars("", "1m", start[present], start[present] + NS_PER_MINUTE, *columns[2:])
    return bars, ticks


def _ticks(rng, start, minute, mid, flow, arrivals, volatility) -> dict[str, np.ndarray]:
    """Trades at the bid or the ask of the quote they met, signed by the minute's order flow."""
    total = len(minute)
    # The k-th of n trades in a minute lands in the k-th n-th of it, so ticks stay in time order.
    offsets = (np.arange(total) - np.repeat(np.cumsum(arrivals) - arrivals, arrivals) + rng.random(total)) / np.repeat(
        np.maximum(arrivals, 1), arrivals
    )
    ts = start[minute] + (offsets * NS_PER_MINUTE).astype(np.int64)
    previous_mid = np.r_[mid[0], mid[:-1]][minute]
    here = previous_mid + (mid[minute] - previous_mid) * offsets
    half_spread = np.maximum(0.005, here * volatility[minute] * 0.05)
    bid = np.round(here - half_spread, 2)
    ask = np.maximum(np.round(here + half_spread, 2), bid + 0.01)
    buy = rng.random(total) < 1.0 / (1.0 + np.exp(-flow[minute]))
    pressure = np.exp(0.5 * flow[minute])
    return {
        "ts": ts,
        "price": np.where(buy, ask, bid),
        "size": np.round(rng.lognormal(4.0, 0.8, total)),
        "bid": bid,
        "ask": ask,
        "bid_size": np.round(rng.lognormal(6.0, 0.5, total) * pressure),
        "ask_size": np.round(rng.lognormal(6.0, 0.5, total) / pressure),
    }
