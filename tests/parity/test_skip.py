"""The backtest's shortcuts change nothing: skipping idle bars (`engine.book.skip`) and zero returns (`summarise`).

The oracle steps every bar through `engine.book.step`, as the live flow does, and sums
every bar's return; the backtest must give the same returns, trades and metrics, bit
for bit.
"""

from __future__ import annotations

import numba
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.book import EVENT_COLUMNS, LOG_COLUMNS, empty, step
from research.backtest import BLOCKS, METRICS, PARAMETERS, _contracts, _inputs, replay, run, summarise
from tests.parity.test_policy import policies, random_market

_MAXPOS = PARAMETERS.index("max_positions")


@numba.njit
def _every_bar(open_, high, low, close, probability, ranking, confidence, hour, session, end, closes, clock, volatility, config, log):
    """The oracle: one `step` per bar, no bar skipped."""
    opened, closed, sessions_per_year, expires, expiry_days = clock
    bars, tickers = close.shape
    slot_ints, slot_floats, order_ints, order_floats, ticker_state, counters, tally = empty(np.int64(config[_MAXPOS]), tickers)
    returns = np.empty(bars)
    events = np.zeros((0, EVENT_COLUMNS))
    for t in range(bars):
        returns[t], _ = step(slot_ints, slot_floats, order_ints, order_floats, ticker_state, counters, tally, config,
                             open_, high, low, close, probability, ranking, volatility, t, confidence[t], hour[t], session[t],
                             end[t], closes[t], opened[t], closed[t], sessions_per_year, expires[t], expiry_days[t], t == bars - 1, log,
                             events, 0)  # fmt: skip
    return returns, tally


def _summary(returns: np.ndarray) -> tuple:
    """The oracle of `summarise`'s total return, drawdown and mean: every bar, zero or not."""
    equity = peak = worst = 1.0
    total = 0.0
    for r in returns:
        equity *= 1.0 + r
        peak = max(peak, equity)
        worst = min(worst, equity / peak)
        total += r
    return equity - 1.0, 1.0 - worst, total / len(returns)


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tickers=st.integers(1, 4), holes=st.sampled_from([0.0, 0.2]),
       per_session=st.sampled_from([5, 30]), evaluations=st.sampled_from([1, 3]), policy=policies)  # fmt: skip
def test_skipping_idle_bars_gives_what_stepping_every_bar_gives(seed, tickers, holes, per_session, evaluations, policy):
    market = random_market(seed, tickers, 200, holes, per_session)
    market.closes = (np.arange(len(market)) % evaluations == evaluations - 1).astype(np.int64)  # rows per bar of the model
    config = policy.row()
    listed, returns, _ = replay(market, config)
    log = np.zeros((len(market) * int(config[_MAXPOS]) + 16, LOG_COLUMNS))
    expires, days, _ = _contracts(market, config[None, :])
    expected, tally = _every_bar(*_inputs(market, (expires[:, 0], days[:, 0])), config, log)
    assert returns.tobytes() == expected.tobytes()
    assert len(listed) == int(tally[0])
    assert [t.net_return for t in listed] == log[: len(listed), 7].tolist()
    results, _ = run(market, config[None, :])
    total, drawdown, mean = _summary(expected)
    row = dict(zip(METRICS, results[0]))
    assert (row["total_return"], row["max_drawdown"], row["mean"]) == (total, drawdown, mean)


@settings(max_examples=100, deadline=None)
@given(returns=st.lists(st.sampled_from([0.0, -0.0, 0.01, -0.02, 0.003, -1e-9]), min_size=1, max_size=60))
def test_summarise_passing_over_zero_returns_changes_no_bit(returns):
    returns = np.array(returns)
    out, blocks = np.empty(len(METRICS)), np.empty((BLOCKS, 3))
    summarise(returns, 0, 0, 0.0, 0.0, 0, 252.0, out, blocks)
    total, drawdown, mean = _summary(returns)
    assert (out[1], out[2], out[7]) == (total, drawdown, mean)
