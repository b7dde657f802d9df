"""Option prices: Black-Scholes against scipy, put-call parity, strikes that carry their rule's delta, expiry."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from engine.options import STRIKE_DELTAS, option_price, option_strike, strike_score
from tests.reference import black_scholes

spots = st.floats(5.0, 5_000.0)
moneyness = st.floats(0.7, 1.3)
years = st.floats(1 / (252 * 390), 2.0)
volatilities = st.floats(0.05, 1.5)


@settings(deadline=None)  # the first call compiles
@given(spot=spots, moneyness=moneyness, years=years, volatility=volatilities, kind=st.sampled_from([1, -1]))
def test_prices_match_scipys_black_scholes(spot, moneyness, years, volatility, kind):
    strike = spot * moneyness
    expected = max(black_scholes(kind, spot, strike, years, volatility), 0.0)
    assert option_price(kind, spot, strike, years, volatility) == pytest.approx(expected, rel=1e-9, abs=1e-9 * spot)


@given(spot=spots, moneyness=moneyness, years=years, volatility=volatilities)
def test_put_call_parity_holds_at_a_zero_rate(spot, moneyness, years, volatility):
    strike = spot * moneyness
    call = option_price(1, spot, strike, years, volatility)
    put = option_price(-1, spot, strike, years, volatility)
    assert call - put == pytest.approx(spot - strike, abs=1e-9 * spot)


@given(spot=spots, years=years, volatility=volatilities, rule=st.sampled_from(list(STRIKE_DELTAS)), kind=st.sampled_from([1, -1]))
def test_a_strike_rule_buys_its_delta(spot, years, volatility, rule, kind):
    strike = option_strike(kind, spot, strike_score(rule), years, volatility)
    d1 = (math.log(spot / strike) + 0.5 * volatility**2 * years) / (volatility * math.sqrt(years))
    delta = norm.cdf(d1) if kind > 0 else norm.cdf(d1) - 1.0
    assert abs(delta) == pytest.approx(STRIKE_DELTAS[rule], abs=1e-9)


@given(spot=spots, years=years, volatility=volatilities, kind=st.sampled_from([1, -1]))
def test_strikes_step_out_of_the_money_as_the_rules_do(spot, years, volatility, kind):
    rules = sorted(STRIKE_DELTAS, key=STRIKE_DELTAS.get, reverse=True)  # ITM_10 ... OTM_10
    strikes = [kind * option_strike(kind, spot, strike_score(rule), years, volatility) for rule in rules]
    assert strikes == sorted(strikes) and len(set(strikes)) == len(strikes)


def test_an_expired_option_is_worth_its_intrinsic_value():
    assert option_price(1, 105.0, 100.0, 0.0, 0.2) == 5.0
    assert option_price(-1, 105.0, 100.0, 0.0, 0.2) == 0.0
    assert option_price(-1, 95.0, 100.0, -0.01, 0.2) == 5.0


def test_time_value_decays_towards_expiry():
    values = [option_price(1, 100.0, 100.0, days / 252, 0.2) for days in (30, 10, 1, 0.1)]
    assert values == sorted(values, reverse=True) and values[-1] > 0.0
