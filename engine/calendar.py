"""Exchange calendars: where a timestamp falls in an exchange's trading week.

Times are int64 nanoseconds since the epoch, UTC. Local fields (hour, session date)
are read in the exchange's own time zone, so daylight saving and half-hour opens
land where a trader expects them. A session that opens in the evening (CME Globex,
FX) belongs to the next calendar day's session date, as the exchanges count it.

Only the NYSE calendar knows holidays and early closes (13:00 New York time on the day
after Thanksgiving, Christmas Eve and July 3 when they are weekdays, as the NYSE's rules
give them, held against exchange_calendars' XNYS from 2000 in the tests); elsewhere a
holiday shows up as a gap, which the data-quality report lists as a warning, never as
an error, and every session closes at the calendar's close.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from functools import cache
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.cadence import parse_cadence
from engine.errors import ConfigError
from engine.snapshot import state

__all__ = [
    "Calendar", "CALENDARS", "calendar", "local_clock", "local_to_utc", "session_days", "trading_days", "bars_per_year",
    "session_clock", "close_minutes", "third_friday", "ExchangeClock",
]  # fmt: skip

NS_PER_MINUTE = 60_000_000_000
NS_PER_DAY = 1440 * NS_PER_MINUTE
EPOCH = date(1970, 1, 1)
_MINUTES_KEPT = 4096  # minutes an `ExchangeClock` remembers: a few days of one-minute bars


@state
class Calendar(msgspec.Struct, frozen=True, kw_only=True):
    """An exchange's week: time zone, session open and close (local minutes), trading weekdays."""

    name: str
    timezone: str
    open_minute: int
    """Local minute of day the session opens; at or after `close_minute` means the evening before."""
    close_minute: int
    weekdays: tuple[int, ...] = (0, 1, 2, 3, 4)
    """Weekdays (Monday = 0) of the session dates that trade."""
    holidays: Literal["nyse"] | None = None

    @property
    def overnight(self) -> bool:
        """True when a session opens the evening before its date; a round-the-clock session from midnight opens on it."""
        return self.open_minute >= self.close_minute and self.open_minute != 0

    @property
    def round_the_clock(self) -> bool:
        """True when a session lasts the whole day (FX, crypto)."""
        return self.open_minute == self.close_minute

    @property
    def session_minutes(self) -> int:
        return (self.close_minute - self.open_minute) % 1440 or 1440


CALENDARS: dict[str, Calendar] = {
    c.name: c
    for c in (
        Calendar(name="us_equities", timezone="America/New_York", open_minute=570, close_minute=960, holidays="nyse"),
        Calendar(name="cme_globex", timezone="America/Chicago", open_minute=1020, close_minute=960),
        Calendar(name="fx", timezone="America/New_York", open_minute=1020, close_minute=1020),
        Calendar(name="crypto", timezone="UTC", open_minute=0, close_minute=0, weekdays=(0, 1, 2, 3, 4, 5, 6)),
    )
}
"""The calendars a dataset may declare."""


def calendar(name: str) -> Calendar:
    """The calendar registered as ``name``; `ConfigError` lists the known ones."""
    try:
        return CALENDARS[name]
    except KeyError:
        raise ConfigError("calendar", f"unknown calendar {name!r}", f"use one of: {', '.join(CALENDARS)}") from None


def local_clock(ts: np.ndarray, timezone: str) -> tuple[np.ndarray, np.ndarray]:
    """(local day number since 1970-01-01, local minute of day) of each UTC nanosecond time."""
    local = pc.local_timestamp(pa.array(ts, pa.timestamp("ns", tz=timezone)))
    wall = local.cast(pa.int64()).to_numpy()
    return wall // NS_PER_DAY, (wall % NS_PER_DAY) // NS_PER_MINUTE


def local_to_utc(local: np.ndarray, timezone: str) -> np.ndarray:
    """UTC nanoseconds of local wall-clock nanoseconds; a time skipped by daylight saving moves forward."""
    naive = pa.array(local, pa.timestamp("ns"))
    aware = pc.assume_timezone(naive, timezone=timezone, ambiguous="earliest", nonexistent="latest")
    return aware.cast(pa.int64()).to_numpy()


def close_minutes(days: np.ndarray, cal: Calendar) -> np.ndarray:
    """The local minute each session dated ``days`` closes: the calendar's close, or its early close on those days."""
    closes = np.full(len(days), cal.close_minute, dtype=np.int64)
    if cal.holidays == "nyse" and len(days):
        closes[np.isin(days, _nyse_early_closes(int(days.min()), int(days.max())))] = NYSE_EARLY_CLOSE
    return closes


def session_days(ts: np.ndarray, cal: Calendar) -> tuple[np.ndarray, np.ndarray]:
    """(session date as a day number, whether the time is inside that session's hours) per time."""
    day, minute = local_clock(ts, cal.timezone)
    if cal.overnight:
        evening = minute >= cal.open_minute
        day = day + evening
        inside = evening | (minute < cal.close_minute)
    else:
        inside = (minute >= cal.open_minute) & (minute < close_minutes(day, cal))
    if cal.round_the_clock:
        inside = np.ones(len(ts), bool)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday
    trading = np.isin(weekday, cal.weekdays)
    if cal.holidays == "nyse" and len(day):
        trading &= ~np.isin(day, _nyse_holidays(int(day.min()), int(day.max())))
    return day, inside & trading


def trading_days(cal: Calendar, first: int, last: int) -> np.ndarray:
    """Session dates (day numbers) from ``first`` to ``last`` inclusive on which the exchange trades."""
    days = np.arange(first, last + 1)
    days = days[np.isin((days + 3) % 7, cal.weekdays)]
    if cal.holidays == "nyse":
        days = days[~np.isin(days, _nyse_holidays(first, last))]
    return days


def bars_per_year(cal: Calendar, cadence: str) -> float:
    """How many bars of ``cadence`` a year of this calendar holds; annualises per-bar statistics."""
    parsed = parse_cadence(cadence)
    days = 252.0 if len(cal.weekdays) == 5 else 365.0
    if parsed.minutes is not None:
        return days * -(-cal.session_minutes // parsed.minutes)
    return {"d": days, "w": 52.0, "mo": 12.0}[parsed.unit] / parsed.count


def third_friday(moment: date) -> int:
    """The day number of the third Friday of ``moment``'s month: where monthly options and futures expire."""
    first = (date(moment.year, moment.month, 1) - EPOCH).days
    return first + (1 - first) % 7 + 14  # day 1 (1970-01-02) was a Friday


def session_clock(start: np.ndarray, end: np.ndarray, cal: Calendar, intraday: bool) -> tuple[np.ndarray, np.ndarray]:
    """Trading sessions elapsed at each bar's open and at its close, from the first bar's session.

    The clock options decay on: it stands still outside sessions (nights, weekends,
    holidays), so a 0DTE option bought at the open has exactly one session to live.
    A daily bar spans one session; a weekly one the sessions its week trades.
    """
    day, _ = session_days(start, cal)
    if not len(day):
        return np.zeros(0), np.zeros(0)
    last, _ = session_days(end - 1, cal)
    days = trading_days(cal, int(day.min()), int(last.max()))
    ordinal = np.searchsorted(days, day).astype(np.float64)
    if not intraday:
        return ordinal, np.searchsorted(days, last, side="right").astype(np.float64)
    # Minutes to the close from a bar's start and end; a start on the close of a round-the-clock calendar opens one.
    # An early close makes a shorter session: its minutes count for more of it.
    _, first_minute = local_clock(start, cal.timezone)
    end_day, last_minute = local_clock(end, cal.timezone)
    close = close_minutes(day, cal)
    length = (close - cal.open_minute) % 1440
    length = np.where(length == 0, 1440, length)
    if cal.overnight or cal.round_the_clock:  # the session runs through midnight: minutes to the close wrap
        left_at_open = ((close - first_minute - 1) % 1440 + 1) / length
        left_at_close = ((close - last_minute) % 1440) / length
    else:  # a daytime session: a time after its close (or on a later day) has none of it left, one before its open all
        left_at_open = (close - first_minute) / length
        left_at_close = np.where(end_day > day, 0.0, (close - last_minute) / length)
    return ordinal + 1.0 - np.clip(left_at_open, 0.0, 1.0), ordinal + 1.0 - np.clip(left_at_close, 0.0, 1.0)


@state(derived=("_zone", "_offsets", "_holidays", "_early", "_minutes", "_ordinals", "_sessions"))
class ExchangeClock:
    """One calendar's local time of single timestamps, for the streaming path.

    The vectorised functions above cost a few microseconds of setup per call; a live
    bar needs one time at a time. Time-zone offsets change only on whole hours
    (daylight saving), so the offset of each UTC hour is looked up once and kept;
    the answers for a minute are kept too, because every ticker's bar asks about the
    same few minutes.
    """

    __slots__ = ("calendar", "_zone", "_offsets", "_holidays", "_early", "_minutes", "_ordinals", "_sessions")

    def __init__(self, cal: Calendar) -> None:
        self.calendar = cal
        self._zone = ZoneInfo(cal.timezone)
        self._offsets: dict[int, int] = {}
        self._holidays: dict[int, frozenset[int]] = {}
        self._early: dict[int, frozenset[int]] = {}
        self._minutes: dict[int, tuple[tuple[int, int], tuple[int, bool]]] = {}  # UTC minute -> (local, session)
        self._ordinals: dict[int, int] = {}  # session date -> trading sessions before it since 1970
        self._sessions = np.zeros(0, np.int64)  # trading days since 1970, as far ahead as asked

    def rebuild(self) -> None:
        """Start the caches afresh: a snapshot keeps only the calendar."""
        self.__init__(self.calendar)

    def _offset(self, ts: int) -> int:
        hour = ts // 3_600_000_000_000
        offset = self._offsets.get(hour)
        if offset is None:
            moment = datetime.fromtimestamp(hour * 3600, UTC).astimezone(self._zone)
            offset = self._offsets[hour] = int(moment.utcoffset().total_seconds()) * 1_000_000_000
        return offset

    def local(self, ts: int) -> tuple[int, int]:
        """(local day number, local minute of day) of a UTC nanosecond time."""
        return self._minute(ts)[0]

    def session(self, ts: int) -> tuple[int, bool]:
        """(session date as a day number, whether ``ts`` is inside that session's trading hours)."""
        return self._minute(ts)[1]

    def _minute(self, ts: int) -> tuple[tuple[int, int], tuple[int, bool]]:
        key = ts // NS_PER_MINUTE
        known = self._minutes.get(key)
        if known is None:
            if len(self._minutes) >= _MINUTES_KEPT:
                self._minutes.clear()
            wall = ts + self._offset(ts)
            local = (wall // NS_PER_DAY, (wall % NS_PER_DAY) // NS_PER_MINUTE)
            known = self._minutes[key] = (local, self._session(*local))
        return known

    def _session(self, day: int, minute: int) -> tuple[int, bool]:
        cal = self.calendar
        if cal.overnight:
            evening = minute >= cal.open_minute
            day += evening
            inside = cal.round_the_clock or evening or minute < cal.close_minute
        else:
            inside = cal.round_the_clock or cal.open_minute <= minute < self.close_minute(day)
        return day, inside and self.trades(day)

    def close_minute(self, day: int) -> int:
        """The local minute the session dated ``day`` closes (`close_minutes` of one session)."""
        if self.calendar.holidays != "nyse":
            return self.calendar.close_minute
        year = (EPOCH + timedelta(days=day)).year
        early = self._early.get(year)
        if early is None:
            early = self._early[year] = frozenset(_nyse_early_year(year).tolist())
        return NYSE_EARLY_CLOSE if day in early else self.calendar.close_minute

    def trades(self, day: int) -> bool:
        """True when the session dated ``day`` trades (a weekday of the calendar and no holiday)."""
        if (day + 3) % 7 not in self.calendar.weekdays:
            return False
        if self.calendar.holidays != "nyse":
            return True
        year = (EPOCH + timedelta(days=day)).year
        closed = self._holidays.get(year)
        if closed is None:
            closed = self._holidays[year] = frozenset(_nyse_year(year).tolist())
        return day not in closed

    def utc(self, day: int, minute: int) -> int:
        """UTC nanoseconds of local ``minute`` on local ``day`` (a time skipped by daylight saving moves forward)."""
        wall = day * NS_PER_DAY + minute * NS_PER_MINUTE
        guess = wall - self._offset(wall)
        return wall - self._offset(guess)

    def session_clock(self, start: int, end: int, intraday: bool) -> tuple[float, float]:
        """`session_clock` of one bar, counted from 1970 rather than from a history's first bar (differences are the same).

        The same arithmetic on one bar, from the cached local minutes: the vectorised
        function costs about a millisecond of array setup a call, and every option
        model's bar close asks.
        """
        cal = self.calendar
        day = self.session(start)[0]
        base = self.ordinal(day)
        if not intraday:  # from the bar's first session to after its last one
            last = self.session(end - 1)[0]
            return float(base), float(base + sum(1 for d in range(day, last + 1) if self.trades(d)))
        # Minutes to the close from the bar's start and end; a start on the close of a round-the-clock calendar opens one.
        close = self.close_minute(day)
        length = (close - cal.open_minute) % 1440 or 1440
        end_day, end_minute = self.local(end)
        if cal.overnight or cal.round_the_clock:  # as the vectorised clock: wrapping only through midnight
            left_at_open = ((close - self.local(start)[1] - 1) % 1440 + 1) / length
            left_at_close = ((close - end_minute) % 1440) / length
        else:
            left_at_open = (close - self.local(start)[1]) / length
            left_at_close = 0.0 if end_day > day else (close - end_minute) / length
        return base + 1.0 - min(max(left_at_open, 0.0), 1.0), base + 1.0 - min(max(left_at_close, 0.0), 1.0)

    def ordinal(self, day: int) -> int:
        """Trading sessions before the one dated ``day``, since 1970: the session clock at its open."""
        base = self._ordinals.get(day)
        if base is None:
            if len(self._sessions) == 0 or day > self._sessions[-1]:  # a decade ahead at a time: an expiry is a lookup
                self._sessions = trading_days(self.calendar, 0, day + 3660)
            base = self._ordinals[day] = int(np.searchsorted(self._sessions, day))
        return base

    def session_bounds(self, day: int) -> tuple[int, int]:
        """UTC (open, close) of the session dated ``day`` (its early close, if it has one); a session opening in the
        evening opens the day before."""
        cal = self.calendar
        opens = self.utc(day - 1 if cal.overnight else day, cal.open_minute)
        return opens, (opens + NS_PER_DAY if cal.round_the_clock else self.utc(day, self.close_minute(day)))


# Unscheduled NYSE closures (weather, national mourning, 9/11) that rules cannot derive.
_NYSE_CLOSURES = (
    date(2001, 9, 11), date(2001, 9, 12), date(2001, 9, 13), date(2001, 9, 14),
    date(2004, 6, 11), date(2007, 1, 2), date(2012, 10, 29), date(2012, 10, 30),
    date(2018, 12, 5), date(2025, 1, 9),
)  # fmt: skip


NYSE_EARLY_CLOSE = 13 * 60
"""13:00 New York time: the NYSE's early close."""
# Where the NYSE departed from its early-close rules (exchange_calendars' XNYS has the same).
_NYSE_EARLY_ADDED = (date(2002, 7, 5), date(2003, 12, 26))
_NYSE_EARLY_REMOVED = (date(2002, 7, 3),)


def _over_years(per_year: Callable[[int], np.ndarray], first: int, last: int) -> np.ndarray:
    """``per_year``'s day numbers for every year from day ``first`` to day ``last``."""
    first_year, last_year = (EPOCH + timedelta(days=first)).year, (EPOCH + timedelta(days=last)).year
    return np.concatenate([per_year(year) for year in range(first_year, last_year + 1)])


def _nyse_early_closes(first: int, last: int) -> np.ndarray:
    return _over_years(_nyse_early_year, first, last)


@cache
def _nyse_early_year(year: int) -> np.ndarray:
    """Sessions closing at 13:00: the day after Thanksgiving, and July 3 and Christmas Eve when they fall Monday to Thursday
    (a Friday July 3 or December 24 is the holiday observed for a Saturday one)."""
    thanksgiving = date(year, 11, 1) + timedelta(days=(3 - date(year, 11, 1).weekday()) % 7 + 21)
    days = [thanksgiving + timedelta(days=1), *(day for day in (date(year, 7, 3), date(year, 12, 24)) if day.weekday() < 4)]
    days = [day for day in days if day not in _NYSE_EARLY_REMOVED] + [day for day in _NYSE_EARLY_ADDED if day.year == year]
    closed = set(_nyse_year(year).tolist())
    return np.array(sorted(n for n in ((day - EPOCH).days for day in days) if n not in closed), dtype=np.int64)


def _nyse_holidays(first: int, last: int) -> np.ndarray:
    return _over_years(_nyse_year, first, last)


@cache
def _nyse_year(year: int) -> np.ndarray:
    def observed(day: date) -> date | None:
        if day.weekday() == 5:  # Saturday: the Friday before, except for New Year (NYSE rule 7.2)
            return None if day.month == 1 else day - timedelta(days=1)
        return day + timedelta(days=1) if day.weekday() == 6 else day

    def nth_weekday(month: int, weekday: int, n: int) -> date:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))

    def last_monday(month: int) -> date:
        last = date(year, month + 1, 1) - timedelta(days=1)
        return last - timedelta(days=last.weekday())

    days = [
        observed(date(year, 1, 1)),
        nth_weekday(1, 0, 3) if year >= 1998 else None,
        nth_weekday(2, 0, 3),
        _easter(year) - timedelta(days=2),
        last_monday(5),
        observed(date(year, 6, 19)) if year >= 2022 else None,
        observed(date(year, 7, 4)),
        nth_weekday(9, 0, 1),
        nth_weekday(11, 3, 4),
        observed(date(year, 12, 25)),
        *(day for day in _NYSE_CLOSURES if day.year == year),
    ]
    return np.array(sorted((day - EPOCH).days for day in days if day is not None), dtype=np.int64)


def _easter(year: int) -> date:
    """Gregorian Easter Sunday (anonymous algorithm, Meeus/Jones/Butcher)."""
    a, b, c = year % 19, year // 100, year % 100
    d, e = divmod(b, 4)
    g = (8 * b + 13) // 25
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    el = (32 + 2 * e + 2 * i - h - k) % 7
    m = (a + 11 * h + 22 * el) // 451
    month, day = divmod(h + el - 7 * m + 114, 31)
    return date(year, month, day + 1)
