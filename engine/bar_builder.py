"""Event-time bars of one ticker at one cadence, built tick by tick.

A bar covers the half-open interval [start, end) the research resampler would put
its ticks in (`engine.bars.bucket_keys`): intraday buckets count from the session
open in the exchange's time zone; a daily bar is a session, a weekly or monthly one
the sessions of its week or month. A bar stays open for ``lateness`` after its end,
so a tick delayed by the network still lands in the right bar, and closes when the
watermark passes ``end + lateness``. The watermark is the ticker's own event time,
or a clock the caller advances (another ticker's time, the wall clock), so a bar
also closes when no further tick arrives. A tick for a bar that has closed is late.

Nothing is fabricated: a bucket without a tick (a halt, a night) yields no bar.
Out-of-order ticks inside the lateness make the same bar as the sorted input: the
open is the earliest tick's price, the close the latest's.
"""

from __future__ import annotations

from datetime import date, timedelta

from engine.cadence import parse_cadence
from engine.calendar import EPOCH, NS_PER_MINUTE, ExchangeClock
from engine.schemas import Bar
from engine.snapshot import state

__all__ = ["BarBuilder", "ACCEPTED", "LATE", "OUTSIDE"]

ACCEPTED, LATE, OUTSIDE = 0, 1, 2
"""What `BarBuilder.add` did with a tick: added to a bar, refused (its bar closed), ignored (outside the sessions a daily bar spans)."""

_NONE: list[Bar] = []  # what `advance` returns when nothing closed; callers only read it

# An open bar: [start, end, open_ts, open, high, low, close_ts, close, volume, trades, notional]
_START, _END, _OPEN_TS, _OPEN, _HIGH, _LOW, _CLOSE_TS, _CLOSE, _VOLUME, _TRADES, _NOTIONAL = range(11)


@state
class BarBuilder:
    """Bars of one ticker at one cadence from its trades, with allowed ``lateness`` (nanoseconds)."""

    __slots__ = ("ticker", "cadence", "lateness", "regular_hours", "watermark", "closed_until", "clock", "_minutes", "_unit",
                 "_count", "_open")  # fmt: skip

    def __init__(self, ticker: str, cadence: str, clock: ExchangeClock, lateness: int, *, regular_hours: bool = False) -> None:
        parsed = parse_cadence(cadence)
        self.ticker = ticker
        self.cadence = cadence
        self.lateness = lateness
        self.regular_hours = regular_hours
        """Intraday bars of the session's hours only, as a dataset imported with ``--hours regular`` holds them."""
        self.watermark = -1
        """Event time up to which every tick has been seen (the latest tick, or the clock)."""
        self.closed_until = -1
        """End of the last closed bar: a tick before it is late."""
        self.clock = clock
        """The exchange's local time: bar bounds and sessions follow its calendar."""
        self._minutes = parsed.minutes
        self._unit = parsed.unit
        self._count = parsed.count
        self._open: list[list] = []  # open bars, oldest first; one or two unless the lateness spans several

    def add(self, ts: int, price: float, size: float) -> int:
        """Put one trade in its bar: `ACCEPTED`, `LATE` or `OUTSIDE`. Does not close bars (see `advance`)."""
        if ts < self.closed_until:
            return LATE
        for bar in self._open:
            if bar[_START] <= ts < bar[_END]:
                break
        else:
            bounds = self.bounds(ts)
            if bounds is None:
                return OUTSIDE
            bar = [bounds[0], bounds[1], ts, price, price, price, ts, price, 0.0, 0, 0.0]
            self._open.append(bar)
            if len(self._open) > 1 and self._open[-2][_START] > bar[_START]:
                self._open.sort()
        if ts < bar[_OPEN_TS]:
            bar[_OPEN_TS], bar[_OPEN] = ts, price
        if ts >= bar[_CLOSE_TS]:
            bar[_CLOSE_TS], bar[_CLOSE] = ts, price
        if price > bar[_HIGH]:
            bar[_HIGH] = price
        if price < bar[_LOW]:
            bar[_LOW] = price
        bar[_VOLUME] += size
        bar[_TRADES] += 1
        bar[_NOTIONAL] += price * size
        return ACCEPTED

    def add_bar(self, start: int, end: int, open: float, high: float, low: float, close: float, volume: float) -> int:  # noqa: A002
        """Put a finer bar (a 1-minute bar of a bar feed) in its bar, as its open, extremes, close and volume."""
        status = self.add(start, open, 0.0)
        if status != ACCEPTED:
            return status
        self.add(start, high, 0.0)
        self.add(start, low, 0.0)
        self.add(end - 1, close, volume)
        for bar in self._open:
            if bar[_START] <= start < bar[_END]:
                bar[_TRADES] -= 3  # the three price-only points above are not trades
        return ACCEPTED

    def advance(self, watermark: int) -> list[Bar]:
        """Move event time to ``watermark`` (it never goes back) and return the bars that closed, oldest first."""
        if watermark <= self.watermark:
            return _NONE
        self.watermark = watermark
        bars = self._open
        if not bars or bars[0][_END] + self.lateness > watermark:
            return _NONE  # the common case, on every tick: no allocation
        closed = []
        while bars and bars[0][_END] + self.lateness <= watermark:
            bar = bars.pop(0)
            self.closed_until = bar[_END]
            volume = bar[_VOLUME]
            vwap = bar[_NOTIONAL] / volume if volume > 0.0 else bar[_CLOSE]
            closed.append(Bar(ticker=self.ticker, start=bar[_START], end=bar[_END], open=bar[_OPEN], high=bar[_HIGH], low=bar[_LOW],
                              close=bar[_CLOSE], volume=volume, trades=bar[_TRADES], vwap=vwap))  # fmt: skip
        return closed

    def close_all(self) -> list[Bar]:
        """Close every open bar (the end of a replayed stream)."""
        return self.advance(max([bar[_END] for bar in self._open], default=0) + self.lateness)

    def next_end(self) -> int | None:
        """End of the oldest open bar (when the clock must next look), None when none is open."""
        return self._open[0][_END] if self._open else None

    def bounds(self, ts: int) -> tuple[int, int] | None:
        """UTC [start, end) of the bar ``ts`` falls in; None when a session bar does not span it."""
        clock = self.clock
        if self._minutes is not None:
            if self.regular_hours and not clock.session(ts)[1]:
                return None
            minutes = self._minutes
            _, minute = clock.local(ts)
            since_open = (minute - clock.calendar.open_minute) % 1440
            start = ts - ts % NS_PER_MINUTE - (since_open % minutes) * NS_PER_MINUTE
            return start, start + minutes * NS_PER_MINUTE
        day, inside = clock.session(ts)
        if not inside:
            return None
        if self._unit == "d":
            first = day - (day % self._count)
            last = first + self._count - 1
        elif self._unit == "w":
            monday = ((day + 3) // 7 // self._count) * 7 * self._count - 3  # weeks start on Monday (day 0 was a Thursday)
            weekdays = clock.calendar.weekdays
            first, last = monday + min(weekdays), monday + 7 * (self._count - 1) + max(weekdays)
        else:
            session = EPOCH + timedelta(days=day)
            months = (session.year * 12 + session.month - 1) // self._count * self._count
            opening = date(months // 12, months % 12 + 1, 1)
            following = months + self._count
            first = (opening - EPOCH).days
            last = (date(following // 12, following % 12 + 1, 1) - EPOCH).days - 1
        return clock.session_bounds(first)[0], clock.session_bounds(last)[1]
