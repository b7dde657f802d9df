"""The backtester: a hand-computed trade list, the policy's fill order, and kernel = plain loop exactly."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.options import on_grid, strike_score
from engine.policy import ALL_DAY, ENTRY_TYPES, SIDES
from research.backtest import BLOCKS, METRICS, PARAMETERS, Market, replay, run, summarise, trades
from tests.parity.test_policy import policies, random_market
from tests.reference import black_scholes


def _market(open_, high, low, close, probability, hours=None, periods=252.0, **clock):
    columns = [np.asarray(a, dtype=float).reshape(len(open_), -1) for a in (open_, high, low, close, probability)]
    tickers = [f"T{i}" for i in range(columns[0].shape[1])]
    hour = np.full(len(open_), 16) if hours is None else np.asarray(hours)
    return Market(tickers, np.arange(len(open_)), hour, *columns, periods, **clock)


def _config(**given):
    values = {"threshold": 0.6, "hours_mask": ALL_DAY, "side": SIDES["long"], "top_pct": 100.0, "position_size": 1.0,
              "size_by_confidence": 0.0, "confidence_cap": 1.0, "max_exposure": 10.0, "stop_loss": 0.0, "take_profit": 0.0, "hold_bars": 2, "max_positions": 1,
              "entry_type": ENTRY_TYPES["market"], "slippage": 0.0, "commission": 0.0, "strike_score": 0.0,
              "expiry_sessions": -1, "cooldown_minutes": 0, "max_trades_per_day": 1_000_000} | given  # fmt: skip
    return np.array([values[name] for name in PARAMETERS], dtype=float)


def test_a_simple_case_matches_the_hand_computed_trades():
    # Signal at bar 0's close -> buy bar 1's open (101, +1% slippage = 102.01); time stop after 2 bars -> sell at
    # bar 3's open (104, -1% = 102.96). Signal at bar 3's close -> buy bar 4's open 106 (107.06); the take-profit
    # of 5% (112.413) is touched inside bar 5 (high 113) -> sold at 112.413 - 1% = 111.28887.
    open_ = [100, 101, 103, 104, 106, 110, 111]
    high = [101, 103, 104, 106, 108, 113, 112]
    low = [99, 100, 102, 103, 105, 109, 110]
    close = [100.5, 102, 103.5, 105, 107, 111, 111.5]
    probability = [0.7, 0.5, 0.5, 0.9, 0.5, 0.5, 0.5]
    market = _market(open_, high, low, close, probability)
    listed, returns = trades(market, _config(slippage=0.01, take_profit=0.05, hold_bars=2))
    assert [(t.entry_bar, t.entry_price, t.exit_bar, t.exit_price, t.reason) for t in listed] == [
        (1, pytest.approx(102.01), 3, pytest.approx(102.96), "time"),
        (4, pytest.approx(107.06), 5, pytest.approx(112.413 * 0.99), "take_profit"),
    ]
    assert listed[0].net_return == pytest.approx(102.96 / 102.01 - 1)
    # Each trade's bar returns add up to its return on the committed capital (position_size 1).
    assert returns[1:4].sum() == pytest.approx(102.96 / 102.01 - 1)
    assert returns[4:6].sum() == pytest.approx(112.413 * 0.99 / 107.06 - 1)
    assert returns[0] == returns[6] == 0.0


def test_evaluated_inside_its_bars_a_model_s_time_stop_counts_its_bars_not_its_evaluations():
    # Three evaluation points per bar (the third closes it). A signal at row 1 (inside bar 0) buys row 2's open, which
    # is in bar 0 still; a hold of 2 bars leaves at the open of bar 2's first row (row 6). A signal at row 6 buys row 7
    # (bar 2), and leaves at the open of bar 4's first row, row 12: the end of the history comes first.
    rows = 12
    prices = np.arange(100.0, 100.0 + rows)
    probability = np.full(rows, 0.5)
    probability[[1, 6]] = 0.9
    closes = np.tile([0, 0, 1], rows // 3)
    market = _market(prices, prices, prices, prices, probability, closes=closes)
    listed, _ = trades(market, _config(hold_bars=2))
    assert [(t.entry_bar, t.exit_bar, t.reason) for t in listed] == [(2, 6, "time"), (7, 11, "end_of_data")]
    every = trades(_market(prices, prices, prices, prices, probability), _config(hold_bars=2))[0]  # every row a bar
    assert [(t.entry_bar, t.exit_bar) for t in every] == [(2, 4), (7, 9)]


def test_when_one_bar_touches_stop_and_target_the_stop_is_taken():
    market = _market([100, 100, 100], [100, 120, 100], [100, 80, 100], [100, 100, 100], [0.9, 0.5, 0.5])
    listed, _ = trades(market, _config(stop_loss=0.1, take_profit=0.1, hold_bars=5))
    assert listed[0].reason == "stop_loss" and listed[0].exit_price == pytest.approx(90.0)


def test_a_gap_through_the_stop_fills_at_the_open():
    market = _market([100, 100, 85, 86], [100, 101, 87, 87], [100, 99, 84, 85], [100, 100, 86, 86], [0.9, 0.5, 0.5, 0.5])
    listed, _ = trades(market, _config(stop_loss=0.1, hold_bars=5))
    assert (listed[0].exit_bar, listed[0].exit_price, listed[0].reason) == (2, 85.0, "stop_loss")


def test_allowed_hours_and_short_side():
    probability = [0.8, 0.8, 0.5, 0.5]
    market = _market([100] * 4, [101] * 4, [99] * 4, [100] * 4, probability, hours=[9, 13, 13, 13])
    only_nine = _config(hours_mask=1 << 9, side=SIDES["short"], threshold=0.7)
    listed, _ = trades(market, only_nine)
    assert [(t.entry_bar, t.direction) for t in listed] == [(1, -1)]  # a short strategy's trade pays: sell
    both = _market([100] * 3, [101] * 3, [99] * 3, [100] * 3, [0.2, 0.5, 0.5])
    assert [t.direction for t in trades(both, _config(side=SIDES["both"], threshold=0.7))[0]] == [-1]
    assert trades(both, _config(threshold=0.7))[0] == []  # long-only ignores low probabilities


def test_an_option_trade_is_priced_from_the_underlying_hand_computed():
    # Daily bars at 20% volatility. Signal at bar 0's close 100 names the 30-session ATM (50-delta) call: 31 sessions
    # to its expiry from that close, its strike on the listed $1 grid; it is bought at bar 1's open 101, premium + 1%
    # slippage; the time stop sells it at bar 3's open 104, two sessions closer to expiry, - 1%.
    market = _market([100, 101, 103, 104, 104], [101, 103, 104, 106, 105], [99, 100, 102, 103, 103],
                     [100, 102, 103, 104, 104], [0.7, 0.5, 0.5, 0.5, 0.5], volatility=np.full((5, 1), 0.2))
    config = _config(slippage=0.01, hold_bars=2, strike_score=strike_score("ATM"), expiry_sessions=30)
    (trade,), _ = trades(market, config)
    assert 100 < 100 * np.exp(0.5 * 0.2**2 * 31 / 252) < 100.5  # the 50-delta strike sits just above the spot: listed at 100
    strike = 100.0
    entry = black_scholes(1, 101, strike, 31 / 252, 0.2) * 1.01
    exit_ = black_scholes(1, 104, strike, 29 / 252, 0.2) * 0.99
    assert (trade.direction, trade.entry_bar, trade.exit_bar, trade.reason) == (1, 1, 3, "time")
    assert (trade.strike, trade.entry_price, trade.exit_price) == (pytest.approx(strike), pytest.approx(entry), pytest.approx(exit_))
    assert trade.net_return == pytest.approx(exit_ / entry - 1)  # about 3 points up on the stock is ~+50% on the call
    # A down signal of a two-sided model buys the put instead.
    flat = _market([100] * 4, [101] * 4, [99] * 4, [100] * 4, [0.2, 0.5, 0.5, 0.5], volatility=np.full((4, 1), 0.2))
    (put,), _ = trades(flat, _config(side=SIDES["both"], threshold=0.7, strike_score=0.0, expiry_sessions=30))
    assert put.direction == -1 and put.strike == on_grid(100 * np.exp(0.5 * 0.04 * 31 / 252), 100) == 100.0


def test_a_0dte_option_settles_at_its_intrinsic_value_and_stops_watch_the_premium():
    # Four bars a session: a 0DTE call bought at bar 1's open (a quarter of the session gone) expires at bar 3's close.
    opened = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    kwargs = {"opened": opened, "closed": opened + 0.25, "volatility": np.full((5, 1), 0.3)}
    rising = _market([100, 100, 100.5, 101, 101], [100, 100.6, 101, 101.5, 101], [100, 99.8, 100.2, 100.8, 101],
                     [100, 100.4, 100.9, 101.2, 101], [0.8, 0.5, 0.5, 0.5, 0.5], **kwargs)
    config = _config(hold_bars=99, strike_score=0.0, expiry_sessions=0)
    (trade,), _ = trades(rising, config)
    assert (trade.exit_bar, trade.reason) == (3, "expiry")
    assert trade.exit_price == pytest.approx(101.2 - trade.strike)  # intrinsic at the close, no spread
    # The same call with a 1% stop: on the underlying, so the dip to 98.5 in bar 2 sells the call at its value at 99,
    # with the bar's close's time left (a quarter session).
    falling = _market([100, 100, 100, 99, 99], [100, 100.1, 100, 99.2, 99], [100, 99.9, 98.5, 98.8, 99],
                      [100, 100, 99.2, 99, 99], [0.8, 0.5, 0.5, 0.5, 0.5], **kwargs)
    (stopped,), _ = trades(falling, _config(hold_bars=99, strike_score=0.0, expiry_sessions=0, stop_loss=0.01))
    assert (stopped.exit_bar, stopped.reason) == (2, "stop_loss")
    assert stopped.exit_price == pytest.approx(black_scholes(1, 99.0, stopped.strike, 0.25 / 252, 0.3))
    assert stopped.entry_price == pytest.approx(black_scholes(1, 100.0, stopped.strike, 0.75 / 252, 0.3))


def test_options_need_a_volatility_to_trade():
    market = _market([100] * 4, [101] * 4, [99] * 4, [100] * 4, [0.9, 0.5, 0.5, 0.5])  # no volatility known
    assert trades(market, _config(expiry_sessions=30))[0] == []
    assert len(trades(market, _config())[0]) == 1  # the ticker itself still trades


def test_top_pct_and_max_positions_pick_the_most_confident_tickers():
    flat = np.full((5, 3), 100.0)
    probability = np.array([[0.7, 0.9, 0.8]] + [[0.5, 0.5, 0.5]] * 4)
    market = _market(flat, flat + 1, flat - 1, flat, probability)
    one_third = trades(market, _config(top_pct=33.0, max_positions=3))[0]  # ceil(0.99) = one ticker
    assert [t.ticker for t in one_third] == ["T1"]
    two_slots = trades(market, _config(top_pct=100.0, max_positions=2))[0]
    assert sorted(t.ticker for t in two_slots) == ["T1", "T2"]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), tickers=st.integers(1, 3), configs=st.lists(policies, min_size=1, max_size=6))
def test_a_sweep_row_equals_the_backtest_of_its_configuration(seed, tickers, configs):
    # The sweep runs many configurations at once on parallel threads; `sigma backtest` and training replay one.
    market = random_market(seed, tickers, 150, 0.2, 10)
    results, blocks = run(market, np.array([policy.row() for policy in configs]))
    for i, policy in enumerate(configs):
        listed, returns, _ = replay(market, policy.row())
        net = np.array([t.net_return for t in listed])
        expected, expected_blocks = np.empty(len(METRICS)), np.empty((BLOCKS, 3))
        exposed = int(results[i, METRICS.index("exposure")] * len(market) + 0.5)
        summarise(returns, len(listed), int((net > 0).sum()), net[net > 0].sum(), -net[net <= 0].sum(), exposed, market.periods_per_year,
                  expected, expected_blocks)  # fmt: skip
        assert np.allclose(results[i], expected, rtol=1e-12, atol=1e-15, equal_nan=True), dict(zip(METRICS, results[i] - expected))
        assert np.allclose(blocks[i], expected_blocks, rtol=1e-12, atol=1e-15)
