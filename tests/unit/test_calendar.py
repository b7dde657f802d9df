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
