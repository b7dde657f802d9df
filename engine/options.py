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
Strikes are continuous; a listed chain rounds them to its increment.

The sweep's backtest kernel inlines these functions and the live flow calls them,
so a backtest and an alert price the same contract the same way.
"""

from __future__ import annotations

import functools
import math
from statistics import NormalDist

from engine._jit import helper
from engine.cadence import parse_cadence

__all__ = ["STRIKE_DELTAS", "strike_score", "option_strike", "option_price", "volatility_window"]

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
