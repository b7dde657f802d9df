"""The session clock options decay on: it runs in sessions, stands still overnight and over weekends and holidays."""

from __future__ import annotations

from datetime import date

import numpy as np

import pytest

from engine.calendar import CALENDARS, NS_PER_MINUTE, ExchangeClock, session_clock, session_days, trading_days
from research.synthetic import generate

US = CALENDARS["us_equities"]


def test_minute_bars_advance_one_session_per_trading_day():
    bars, _ = generate(["SPY"], "1m", 3, US, start=date(2024, 6, 28))["SPY"]  # Friday, then Monday and Tuesday
    opened, closed = session_clock(bars.start, bars.end, US, intraday=True)
    day, _ = session_days(bars.start, US)
    for ordinal, session in enumerate(np.unique(day)):  # the weekend costs no time
        inside = day == session
        assert opened[inside].min() == ordinal and closed[inside].max() == ordinal + 1
    assert np.allclose(closed - opened, 1 / 390) and np.all(np.diff(opened) > 0)


def test_daily_bars_span_one_session_and_skip_holidays():
    bars, _ = generate(["SPY"], "1d", 4, US, start=date(2024, 7, 2))["SPY"]  # July 4th is a holiday
    opened, closed = session_clock(bars.start, bars.end, US, intraday=False)
    assert opened.tolist() == [0.0, 1.0, 2.0, 3.0] and closed.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_a_round_the_clock_calendar_opens_at_midnight():
    crypto = CALENDARS["crypto"]
    bars, _ = generate(["BTC"], "1h", 2, crypto, start=date(2024, 1, 6))["BTC"]  # Saturday and Sunday trade
    opened, closed = session_clock(bars.start, bars.end, crypto, intraday=True)
    assert opened[0] == 0.0 and closed[23] == 1.0 and opened[24] == 1.0 and closed[-1] == 2.0


@pytest.mark.parametrize("name", sorted(CALENDARS))
@pytest.mark.parametrize(("minutes", "intraday"), [(1, True), (5, True), (60, True), (1440, False), (7 * 1440, False)])
def test_the_streaming_clock_of_one_bar_is_the_vectorised_one(name, minutes, intraday):
    # Bars over two years of daylight-saving changes, weekends and holidays, each clocked as the live flow clocks it.
    cal = CALENDARS[name]
    clock = ExchangeClock(cal)
    rng = np.random.default_rng(minutes)
    start = rng.integers(19_700 * 1440, 20_450 * 1440, 400) // minutes * minutes * NS_PER_MINUTE  # 2023-12 to 2025-12
    for s in start.tolist():
        e = s + minutes * NS_PER_MINUTE
        opened, closed = session_clock(np.array([s]), np.array([e]), cal, intraday)
        day = int(session_days(np.array([s]), cal)[0][0])
        base = len(trading_days(cal, 0, day - 1))
        assert clock.session_clock(s, e, intraday) == (base + float(opened[0]), base + float(closed[0]))


def _day_number(day: date) -> int:
    return (day - date(1970, 1, 1)).days


def test_nyse_holidays_and_early_closes_equal_exchange_calendars_xnys_2000_to_2026():
    import exchange_calendars  # the reference: a test dependency (pyproject's test extra)

    xnys = exchange_calendars.get_calendar("XNYS", start="2000-01-01", end="2026-12-31")
    first, last = _day_number(date(2000, 1, 1)), _day_number(date(2026, 12, 31))
    sessions = [_day_number(day.date()) for day in xnys.sessions]
    assert trading_days(US, first, last).tolist() == sessions
    clock = ExchangeClock(US)
    early = [day for day in sessions if clock.close_minute(day) != US.close_minute]
    assert early == [_day_number(day.date()) for day in xnys.early_closes] and len(early) == 60
    for day in early:  # 13:00 New York time, as the reference closes them
        _, closes = clock.session_bounds(day)
        reference = xnys.closes[xnys.sessions[sessions.index(day)]]
        assert closes == reference.value


def test_an_early_close_ends_the_session_its_bars_and_its_options_at_13():
    bars, _ = generate(["SPY"], "1m", 3, US, start=date(2024, 11, 27))["SPY"]  # Wednesday, Black Friday (Thanksgiving shut)
    day, inside = session_days(bars.start, US)
    assert inside.all(), "no synthetic minute after the early close"
    per_session = np.bincount(day - day.min())[[0, 2]]
    assert per_session[1] <= 210 < per_session[0], "Black Friday trades 09:30 to 13:00"
    opened, closed = session_clock(bars.start, bars.end, US, intraday=True)
    friday = day == _day_number(date(2024, 11, 29))
    assert closed[friday].max() == 2.0, "a 0DTE option bought on Black Friday expires at 13:00, its one session over"
    clock = ExchangeClock(US)
    origin = clock.session_clock(int(bars.start[0]), int(bars.end[0]), True)[0] - float(opened[0])
    for s, e, vectorised in zip(bars.start[friday].tolist(), bars.end[friday].tolist(), closed[friday].tolist()):
        assert clock.session_clock(s, e, True)[1] - origin == pytest.approx(vectorised), "the live clock agrees"
    assert clock.session(int(clock.session_bounds(_day_number(date(2024, 11, 29)))[1]))[1] is False, "13:00 is outside"
    daily, _ = generate(["SPY"], "1d", 3, US, start=date(2024, 11, 27))["SPY"]
    assert ((daily.end - daily.start) // NS_PER_MINUTE).tolist() == [390, 210, 390]
