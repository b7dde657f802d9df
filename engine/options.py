"""Option prices: which strike a strike rule picks, and what the option is worth.

Options are priced with Black-Scholes at a zero rate and no dividends, the volatility
being the underlying's trailing realised volatility at the signal. Time runs in
trading sessions (`engine.calendar.session_clock`), the calendar's number of them to
a year: an option expires at the close of the session ``dte`` sessions after the one
it was bought in, so a 0DTE option bought at the open has one session to live and
one bought at 15:59 has a minute.

A strike rule names a delta, not a distance in dollars or percent, so that it means
the same for a 0DTE and a 30-day option: ``ATM`` is the 50-delta strike, ``OTM_5``
the 45-delta one (5 delta points out of the money), ``ITM_10`` the 60-delta one.
The strike is chosen at the decision, from the close and the time the contract has
left there, and rounded to the listed increment near the price (`on_grid`); the
premium is then priced at the fill.

The sweep's backtest kernel inlines these functions and the live flow calls them,
so a backtest and an alert price the same contract the same way.
"""

from __future__ import annotations

import functools
import math
from datetime import date, timedelta
from statistics import NormalDist

import numpy as np

from engine._jit import helper
from engine.cadence import parse_cadence
from engine.calendar import EPOCH, ExchangeClock, bars_per_year, third_friday

__all__ = [
    "STRIKE_DELTAS", "strike_score", "option_strike", "strike_increment", "on_grid", "option_price", "volatility_window",
    "listed_expiry", "contract_expiry", "contract_expiries", "years_to_expiry",
]  # fmt: skip

_WEEKLY_LIMIT = 60  # sessions: beyond this target only the monthly expiries are listed

STRIKE_DELTAS = {"ITM_10": 0.60, "ITM_5": 0.55, "ATM": 0.50, "OTM_5": 0.45, "OTM_10": 0.40}
"""The absolute delta each strike rule buys."""


def volatility_window(cadence: str) -> int:
    """Bars of realised volatility that price an option: about a week (a month of daily bars), 20 to 2,000."""
    return min(max(round(5 * parse_cadence(cadence).bars_per_day), 20), 2000)


@functools.cache
def strike_score(selection: str) -> float:
    """The standard-normal score of a strike rule's delta, the form `option_strike` takes."""
    return NormalDist().inv_cdf(STRIKE_DELTAS[selection])


@helper
def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@helper
def option_strike(kind: int, spot: float, score: float, years: float, volatility: float) -> float:
    """The strike whose call (``kind`` +1) or put (-1) has the delta of ``score`` (from `strike_score`)."""
    deviation = volatility * math.sqrt(years)
    return spot * math.exp(0.5 * deviation * deviation - kind * score * deviation)


@helper
def strike_increment(spot: float) -> float:
    """The listed strike spacing near ``spot``: 0.5 below $25, 1 below $200, 5 below $1,000, then 10."""
    return 0.5 if spot < 25.0 else 1.0 if spot < 200.0 else 5.0 if spot < 1000.0 else 10.0


@helper
def on_grid(strike: float, spot: float) -> float:
    """``strike`` rounded to the nearest listed strike near ``spot`` (halves up, alike compiled and not)."""
    step = strike_increment(spot)
    return max(math.floor(strike / step + 0.5) * step, step)


@helper
def option_price(kind: int, spot: float, strike: float, years: float, volatility: float) -> float:
    """A call's (``kind`` +1) or put's (-1) Black-Scholes value; its intrinsic value once expired."""
    if years <= 0.0 or volatility <= 0.0:
        return max(kind * (spot - strike), 0.0)
    deviation = volatility * math.sqrt(years)
    d1 = (math.log(spot / strike) + 0.5 * deviation * deviation) / deviation
    d2 = d1 - deviation
    if kind > 0:
        value = spot * _normal_cdf(d1) - strike * _normal_cdf(d2)
    else:
        value = strike * _normal_cdf(-d2) - spot * _normal_cdf(-d1)
    return max(value, 0.0)


def listed_expiry(clock: ExchangeClock, session: int, sessions: int) -> int:
    """The day number of the listed expiry for a target ``sessions`` trading sessions after ``session``.

    The session itself for 0DTE (index ETFs list daily expiries), Fridays up to 60
    sessions out, the monthly third Friday beyond; a holiday moves an expiry to the
    session before.
    """
    day, left = session, sessions
    while left > 0:
        day += 1
        left -= clock.trades(day)
    if sessions == 0:
        return day
    if sessions <= _WEEKLY_LIMIT:
        friday = day + (1 - day) % 7  # day 1 (1970-01-02) was a Friday
        return _trading_on_or_before(clock, friday)
    monthly = third_friday(EPOCH + timedelta(days=day))
    if monthly < day:
        moment = EPOCH + timedelta(days=day)
        monthly = third_friday(date(moment.year + moment.month // 12, moment.month % 12 + 1, 1))
    return _trading_on_or_before(clock, monthly)


def _trading_on_or_before(clock: ExchangeClock, day: int) -> int:
    while not clock.trades(day):
        day -= 1
    return day


def contract_expiry(clock: ExchangeClock, bar_end: int, sessions: int) -> tuple[int, float]:
    """The expiry of the option an order decided at a bar's close buys: (day number, session clock at its close).

    The target counts from the session the order fills in, the first one that closes
    after ``bar_end``: a daily bar's order fills in the next session, so its 0DTE
    option lives through that session, not the one already over. The session clock
    is `ExchangeClock.session_clock`'s, counted from 1970.
    """
    day = clock.session(bar_end)[0]
    while not clock.trades(day) or clock.session_bounds(day)[1] <= bar_end:
        day += 1
    return _contract(clock, day, sessions)


@functools.lru_cache(maxsize=4096)
def _contract(clock: ExchangeClock, session: int, sessions: int) -> tuple[int, float]:
    expiry = listed_expiry(clock, session, sessions)  # one per session an order fills in, and target
    return expiry, clock.ordinal(expiry) + 1.0


def contract_expiries(clock: ExchangeClock, ends: np.ndarray, sessions: int, origin: int) -> tuple[np.ndarray, np.ndarray]:
    """`contract_expiry` at each of a history's bar ends: (session clock counted from the session dated ``origin``, day number).

    ``origin`` is the history's first session date, where `engine.calendar.session_clock` starts.
    """
    unique, where = np.unique(np.asarray(ends, dtype=np.int64), return_inverse=True)
    found = np.array([contract_expiry(clock, int(end), sessions) for end in unique.tolist()]).reshape(-1, 2)
    return found[where, 1] - clock.ordinal(origin), found[where, 0]


def years_to_expiry(clock: ExchangeClock, session: int, ts: int, expiry: int) -> float:
    """Trading years from ``ts`` (in the session dated ``session``) to the close of the expiry session: an option's time left."""
    opens, closes, later, per_year = _span(clock, session, expiry)
    return (min(max((closes - ts) / (closes - opens), 0.0), 1.0) + later) / per_year


@functools.lru_cache(maxsize=4096)
def _span(clock: ExchangeClock, session: int, expiry: int) -> tuple[int, int, int, float]:
    """(session open, session close, whole sessions after it until the expiry, sessions a year): one per session and expiry."""
    opens, closes = clock.session_bounds(session)
    later = sum(clock.trades(day) for day in range(session + 1, expiry + 1))
    return opens, closes, later, bars_per_year(clock.calendar, "1d")
