"""Columnar bars for one ticker and cadence, and the aggregation that builds coarser bars.

`Bars` is what research reads from the workspace and what features are computed
over: seven aligned numpy arrays, times in int64 nanoseconds UTC, ``start``
inclusive and ``end`` exclusive. `aggregate` is the one OHLCV roll-up: resampling
minute bars to hours or days and rolling trades up into bars both call it.
"""

from __future__ import annotations

import numpy as np

from engine.cadence import parse_cadence
from engine.calendar import Calendar, local_clock, session_days

__all__ = ["Bars", "COLUMNS", "aggregate", "resample", "bucket_keys"]

COLUMNS = ("start", "end", "open", "high", "low", "close", "volume")


class Bars:
    """OHLCV bars of one ticker at one cadence, oldest first, as aligned numpy arrays."""

    __slots__ = ("ticker", "cadence", *COLUMNS)

    def __init__(
        self,
        ticker: str,
        cadence: str,
        start: np.ndarray,
        end: np.ndarray,
        open: np.ndarray,  # noqa: A002 - the bar field's name
        high: np.ndarray,
        low: np.ndarray,
        close: np.ndarray,
        volume: np.ndarray,
    ) -> None:
        self.ticker = ticker
        self.cadence = cadence
        self.start = np.asarray(start, dtype=np.int64)
        self.end = np.asarray(end, dtype=np.int64)
        self.open = np.asarray(open, dtype=np.float64)
        self.high = np.asarray(high, dtype=np.float64)
        self.low = np.asarray(low, dtype=np.float64)
        self.close = np.asarray(close, dtype=np.float64)
        self.volume = np.asarray(volume, dtype=np.float64)

    def __len__(self) -> int:
        return len(self.start)

    def __repr__(self) -> str:
        return f"Bars({self.ticker!r}, {self.cadence!r}, {len(self)} rows)"

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in COLUMNS}

    def select(self, rows: slice | np.ndarray) -> Bars:
        """The bars at ``rows`` (a slice or a boolean/index array), as a new `Bars`."""
        return Bars(self.ticker, self.cadence, *(getattr(self, name)[rows] for name in COLUMNS))


def aggregate(keys: np.ndarray, start, end, open, high, low, close, volume) -> tuple[np.ndarray, ...]:  # noqa: A002
    """Roll consecutive rows sharing a key into one bar: first open, max high, min low, last close, summed volume.

    Rows must be in time order; a key that comes back after another (not sorted) starts a new bar.
    """
    if len(keys) == 0:
        return tuple(np.asarray(column)[:0] for column in (start, end, open, high, low, close, volume))
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    last = np.r_[first[1:] - 1, len(keys) - 1]
    return (
        np.asarray(start)[first],
        np.asarray(end)[last],
        np.asarray(open)[first],
        np.maximum.reduceat(high, first),
        np.minimum.reduceat(low, first),
        np.asarray(close)[last],
        np.add.reduceat(np.asarray(volume, dtype=np.float64), first),
    )


def bucket_keys(start: np.ndarray, cadence: str, cal: Calendar) -> np.ndarray:
    """The bar of ``cadence`` each time falls in: intraday buckets count from the session open."""
    parsed = parse_cadence(cadence)
    session, _ = session_days(start, cal)
    if parsed.minutes is not None:
        _, minute = local_clock(start, cal.timezone)
        since_open = (minute - cal.open_minute) % 1440
        return session * 1440 + since_open // parsed.minutes
    if parsed.unit == "d":
        return session // parsed.count
    if parsed.unit == "w":
        return (session + 3) // 7 // parsed.count  # weeks start on Monday (day 0 was a Thursday)
    months = session.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    return months // parsed.count


def resample(bars: Bars, cadence: str, cal: Calendar) -> Bars:
    """``bars`` rolled up to a coarser ``cadence`` along ``cal``'s sessions (1m to 5m, 1h, 1d, 1w, 1mo)."""
    keys = bucket_keys(bars.start, cadence, cal)
    return Bars(bars.ticker, cadence, *aggregate(keys, *(getattr(bars, c) for c in COLUMNS)))

