"""Column arrays for indicator tests: real series from ../shared/data and a seeded synthetic one."""

from __future__ import annotations

import csv
from datetime import date
from functools import cache

import numpy as np

from tests.conftest import shared_file

LEAN_PRICE = 10_000.0  # Lean stores prices as integers of 1/10,000 USD
SPY_MINUTE_DAYS = ("20131004", "20131007", "20131008", "20131009", "20131010", "20131011")


def _bars(open_, high, low, close, volume, session) -> dict[str, np.ndarray]:
    arrays = dict(open=open_, high=high, low=low, close=close, volume=volume, session=session)
    return {name: np.asarray(column, dtype=np.float64) for name, column in arrays.items()}


@cache
def spy_minute() -> dict[str, np.ndarray]:
    """Six days of Lean SPY minute trade bars, extended hours included (about 5,000 bars)."""
    rows = []
    for day in SPY_MINUTE_DAYS:
        path = shared_file(f"lean-spy-minute/{day}_spy_minute_trade.csv")
        session = date(int(day[:4]), int(day[4:6]), int(day[6:])).toordinal()
        table = np.loadtxt(path, delimiter=",", ndmin=2)
        rows.append(np.column_stack([table, np.full(len(table), session)]))
    table = np.vstack(rows)
    prices = table[:, 1:5] / LEAN_PRICE
    return _bars(prices[:, 0], prices[:, 1], prices[:, 2], prices[:, 3], table[:, 5], table[:, 6])


def _headed_bars(relative: str) -> dict[str, np.ndarray]:
    """Bars from a CSV with a header of date, open, high, low, close, volume (any case)."""
    with shared_file(relative).open() as handle:
        rows = [{key.lower(): value for key, value in row.items()} for row in csv.DictReader(handle)]
    column = lambda name: [float(row[name]) for row in rows]  # noqa: E731
    session = [date.fromisoformat(row["date"][:10]).toordinal() for row in rows]
    return _bars(column("open"), column("high"), column("low"), column("close"), column("volume"), session)


@cache
def spy_daily() -> dict[str, np.ndarray]:
    """Ten years of Yahoo SPY daily bars (2,519)."""
    return _headed_bars("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv")


@cache
def ethbtc_5m() -> dict[str, np.ndarray]:
    """Twenty days of Binance ETH/BTC five-minute bars (5,760), prices near 0.1."""
    return _headed_bars("crypto-ethbtc-5m/ETH_BTC-5m.csv")


@cache
def spy_trades(limit: int = 40_000) -> dict[str, np.ndarray]:
    """The first trades of Lean's SPY tick file for 2013-10-07."""
    path = shared_file("lean-spy-trade-ticks/20131007_spy_Trade_Tick.csv")
    table = np.loadtxt(path, delimiter=",", usecols=(1, 2), max_rows=limit)
    price = table[:, 0] / LEAN_PRICE
    return {"price": price, "size": table[:, 1], "close": price, "volume": table[:, 1]}


@cache
def btc_quotes() -> dict[str, np.ndarray]:
    """Binance BTC/USDT top-of-book quotes (451)."""
    path = shared_file("crypto-trades-quotes/binance-btcusdt-quotes.csv")
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    return {name: np.array([float(row[name]) for row in rows]) for name in ("bid", "ask", "bid_size", "ask_size")}


BAR_SERIES = {"spy_minute": spy_minute, "spy_daily": spy_daily, "ethbtc_5m": ethbtc_5m}
TICK_SERIES = {"spy_trades": spy_trades, "btc_quotes": btc_quotes}


_BAR_COLUMNS = {"open", "high", "low", "close", "volume", "session"}
COLUMNS = {
    **{name: _BAR_COLUMNS for name in BAR_SERIES},
    "spy_trades": {"price", "size", "close", "volume"},
    "btc_quotes": {"bid", "ask", "bid_size", "ask_size"},
}
"""Columns each series carries, known without reading the files."""


def series_for(indicator: type) -> list[str]:
    """The real series at the indicator's timescales that carry all of its inputs."""
    names = []
    if indicator.timescales - {"tick"}:
        names += list(BAR_SERIES)
    if "tick" in indicator.timescales:
        names += list(TICK_SERIES)
    return [name for name in names if COLUMNS[name].issuperset(indicator.inputs)]


def synthetic(n: int = 3_000, seed: int = 7) -> dict[str, np.ndarray]:
    """A seeded random-walk market with every input column any indicator reads."""
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 0.5, n))
    high = close + rng.uniform(0.01, 0.6, n)
    low = close - rng.uniform(0.01, 0.6, n)
    volume = rng.uniform(100.0, 10_000.0, n)
    spread = rng.uniform(0.01, 0.05, n)
    return {
        "open": close + rng.normal(0.0, 0.1, n),
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
        "session": np.arange(n) // 390.0,
        "price": close,
        "size": volume,
        "bid": close - spread,
        "ask": close + spread,
        "bid_size": rng.uniform(1.0, 500.0, n),
        "ask_size": rng.uniform(1.0, 500.0, n),
    }


def run_incremental(indicator, columns: list[np.ndarray]) -> np.ndarray:
    """Feed rows one at a time; outputs after each row, shaped (outputs, rows)."""
    rows = []
    for values in zip(*(column.tolist() for column in columns)):
        indicator.update(*values)
        rows.append([getattr(indicator, name) for name in indicator.outputs])
    return np.array(rows, dtype=np.float64).T


def run_batch(cls, columns: list[np.ndarray], params: dict) -> np.ndarray:
    result = cls.batch(*columns, **params)
    return np.atleast_2d(np.array(result if isinstance(result, tuple) else (result,)))
