"""Stored history as the live flow's input: a replay's bar or tick feed, in event-time order across tickers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

from engine.errors import ConfigError
from engine.features import TICK_FIELDS
from engine.schemas import Bar, Tick
from engine.store import load_bars, load_ticks, write_parquet

__all__ = ["Window", "window", "bars", "ticks_within", "write_bars", "write_ticks"]

_DAY = 86_400_000_000_000


class Window:
    """The stored bars (and ticks, when asked) of a replay's tickers between two dates, as the broker walks them."""

    __slots__ = ("tickers", "cadence", "start", "end", "bars", "ticks")

    def __init__(self, tickers: list[str], cadence: str, start: int, end: int, bars: list[Bar], ticks: dict[str, dict] | None) -> None:
        self.tickers, self.cadence, self.start, self.end, self.bars, self.ticks = tickers, cadence, start, end, bars, ticks


def _ns(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()) * 1_000_000_000


def window(home: Path, tickers: list[str], cadence: str, first: date | None, last: date | None, *, with_ticks: bool) -> Window:
    """The bars of ``tickers`` at ``cadence`` starting on ``first`` to ``last`` (inclusive; unset: all stored).

    `ConfigError` names the field when the range holds no stored bar of some ticker, or
    ticks were asked for and a ticker has none.
    """
    if first is not None and last is not None and last < first:
        raise ConfigError("--to", f"{last} is before --from {first}", "give a --to on or after --from")
    start = _ns(first) if first is not None else -(2**62)
    end = _ns(last + timedelta(days=1)) if last is not None else 2**62
    rows: list[Bar] = []
    ticks = {} if with_ticks else None
    for ticker in tickers:
        stored, _ = load_bars(home, ticker, cadence)
        keep = np.flatnonzero((stored.start >= start) & (stored.start < end))
        if not len(keep):
            span = f"{_day(stored.start[0])} to {_day(stored.start[-1])}" if len(stored) else "nothing"
            raise ConfigError("--from/--to", f"no stored {cadence} bar of {ticker} in the range (stored: {span})",
                              "choose dates inside the stored range, or import the missing data")  # fmt: skip
        rows.extend(bars(stored, keep))
        if ticks is not None:
            table = load_ticks(home, ticker)
            if table is None:
                raise ConfigError("--source", f"{ticker} has no stored ticks", "replay --source bars, or import its ticks")
            inside = (table["ts"] >= start) & (table["ts"] < end)
            ticks[ticker] = {field: table[field][inside] for field in TICK_FIELDS}
    rows.sort(key=lambda bar: (bar.end, bar.ticker))
    return Window(list(tickers), cadence, start, end, rows, ticks)


def bars(stored, rows: np.ndarray) -> list[Bar]:
    """`Bar` values of some rows of a stored `Bars`."""
    volume = stored.volume
    return [
        Bar(ticker=stored.ticker, start=int(stored.start[i]), end=int(stored.end[i]), open=float(stored.open[i]), high=float(stored.high[i]),
            low=float(stored.low[i]), close=float(stored.close[i]), volume=float(volume[i]) if volume[i] == volume[i] else 0.0)
        for i in rows.tolist()
    ]  # fmt: skip


def ticks_within(table: dict[str, np.ndarray], bar: Bar) -> list[Tick]:
    """The ticks of one ticker inside ``bar`` (start inclusive, end exclusive), in time order."""
    ts = table["ts"]
    lo, hi = np.searchsorted(ts, bar.start), np.searchsorted(ts, bar.end)
    out = []
    for i in range(int(lo), int(hi)):
        values = {field: float(table[field][i]) for field in TICK_FIELDS[1:] if table[field][i] == table[field][i]}
        out.append(Tick(ticker=bar.ticker, ts=int(ts[i]), **values))
    return out


def write_bars(rows: list[Bar], path: Path) -> Path:
    """The bar feed as Parquet, in the order the flow reads it."""
    columns = {name: [getattr(bar, name) for bar in rows] for name in ("ticker", "start", "end", "open", "high", "low", "close", "volume")}
    write_parquet(pa.table(columns), path)
    return path


def write_ticks(feed: Window, path: Path) -> Path:
    """The tick feed of every ticker of the window as Parquet, merged in event-time order."""
    assert feed.ticks is not None
    parts = []
    for ticker, table in feed.ticks.items():
        part = {field: pa.array(table[field], from_pandas=True) for field in TICK_FIELDS}  # NaN (absent) as null
        part["ticker"] = pa.array(np.full(len(table["ts"]), ticker))
        parts.append(pa.table(part))
    merged = pa.concat_tables(parts).sort_by([("ts", "ascending"), ("ticker", "ascending")])
    write_parquet(merged, path)
    return path


def _day(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[D]"))
