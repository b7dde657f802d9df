"""Backtest = live, for the policy: the sweep's loop and the live driver decide the same trades, bar by bar.

Both run `engine.book.step`; what could differ is how each lays a bar of the
universe out (tickers without a bar, ranking, sessions, cooldown clocks, the step
count time stops run on). Random markets with holes and random policies (cooldowns,
daily caps, stops, targets, time stops, entry types, sizing, exposure, ranking over
several tickers, options) hold the two drivers to equal decisions, and each backtest
trade to the decisions that opened and closed it.
"""

from __future__ import annotations

import math
from datetime import date

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.calendar import CALENDARS, EPOCH, ExchangeClock, local_clock, session_clock, session_days, trading_days
from engine.options import contract_expiries
from engine.policy import ALL_DAY, Policy
from engine.schemas import Bar
from engine.signals import Scored, Signals
from research.backtest import Market, replay

MINUTE = 60_000_000_000
US = CALENDARS["us_equities"]
CLOCK = ExchangeClock(US)
FIRST_DAY = (date(2024, 3, 18) - EPOCH).days


def random_market(seed: int, tickers: int, bars: int, holes: float, per_session: int) -> Market:
    """A random universe of ``tickers`` on ``bars`` one-minute bars, ``holes`` of its bars missing: ``per_session`` minutes
    spread over each NYSE session from 2024-03-18 (Good Friday among them), the last ending at the close; the session
    clock and the listed expiries are the calendar's."""
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.01, (bars, tickers)), axis=0))
    open_ = close * np.exp(rng.normal(0.0, 0.004, close.shape))
    high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, close.shape))
    low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, close.shape))
    probability = rng.uniform(0.0, 1.0, close.shape)
    probability[: rng.integers(0, 10)] = np.nan  # features warming up
    missing = rng.uniform(size=close.shape) < holes
    missing[:, 0] &= rng.uniform(size=bars) < 0.5  # every bar of the axis has at least one ticker... mostly
    missing[missing.all(axis=1), 0] = False
    for column in (open_, high, low, close, probability):
        column[missing] = np.nan
    days = trading_days(US, FIRST_DAY, FIRST_DAY + 4 * bars // per_session + 14)[: -(-bars // per_session)]
    closes = np.array([CLOCK.session_bounds(int(day))[1] for day in days], dtype=np.int64)
    spacing = 390 // per_session * MINUTE  # through the session's hours, the last bar ending at its close
    end = (closes[:, None] - np.arange(per_session)[::-1] * spacing).ravel()[:bars]
    start = end - MINUTE
    opened, closed = session_clock(start, end, US, intraday=True)
    session = session_days(start, US)[0]
    hour = local_clock(end, US.timezone)[1] // 60
    volatility = np.where(missing, np.nan, rng.uniform(0.1, 0.4, close.shape))
    return Market([f"T{i}" for i in range(tickers)], start, hour, open_, high, low, close, probability, 252.0,
                  opened=opened, closed=closed, sessions_per_year=252.0, volatility=volatility, end=end, session=session,
                  contracts=lambda target: contract_expiries(CLOCK, end, target, int(session[0])))  # fmt: skip


policies = st.builds(
    Policy,
    threshold=st.floats(0.5, 0.8),
    hours_mask=st.sampled_from([ALL_DAY, (1 << 10) | (1 << 11) | (1 << 14)]),
    side=st.sampled_from([-1, 0, 1]),
    top_pct=st.sampled_from([10.0, 50.0, 100.0]),
    position_size=st.floats(0.01, 0.5),
    size_by_confidence=st.booleans(),
    confidence_cap=st.floats(0.55, 1.0),
    max_exposure=st.floats(0.05, 2.0),
    stop_loss=st.sampled_from([0.0, 0.005, 0.02]),
    take_profit=st.sampled_from([0.0, 0.01, 0.03]),
    hold_bars=st.integers(1, 8),
    max_positions=st.integers(1, 4),
    entry_type=st.integers(0, 2),
    slippage=st.sampled_from([0.0, 0.001]),
    commission=st.sampled_from([0.0, 0.0005]),
    strike_score=st.sampled_from([0.0, 0.3]),
    expiry_sessions=st.sampled_from([-1, -1, 0, 2]),
    cooldown_minutes=st.sampled_from([0, 3, 20]),
    max_trades_per_day=st.integers(1, 6),
)


def _live(market: Market, policy: Policy) -> list[tuple]:
    """The live driver's decisions over the market's bars but the last (where a backtest closes everything)."""
    signals = Signals(policy, tuple(market.tickers), market.sessions_per_year)
    decided = []
    for t in range(len(market) - 1):
        opened, closed = CLOCK.session_clock(int(market.start[t]), int(market.end[t]), True)  # from 1970, as the flow's
        rows = [
            Scored("m", Bar(ticker=ticker, start=int(market.start[t]), end=int(market.end[t]), open=float(market.open[t, i]),
                            high=float(market.high[t, i]), low=float(market.low[t, i]), close=float(market.close[t, i])),
                   market.probability[t, i], int(market.hour[t]), int(market.session[t]), opened, closed,
                   market.volatility[t, i], False, 0, 1)  # fmt: skip
            for i, ticker in enumerate(market.tickers)
            if market.close[t, i] == market.close[t, i]
        ]
        for signal in signals.close(rows, CLOCK):
            decided.append((t, signal.scored.bar.ticker, signal.intent, signal.direction, signal.reason, signal.price, signal.size,
                            signal.strike, signal.expiry))  # fmt: skip
    return decided


def _same(live: list[tuple], backtest: list[tuple]) -> bool:
    """Equal decisions; NaN (a stock's strike) equals NaN."""
    return len(live) == len(backtest) and all(
        len(a) == len(b) and all(x == y or (x != x and y != y) for x, y in zip(a, b, strict=True))
        for a, b in zip(live, backtest, strict=True)
    )


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), tickers=st.integers(1, 4), holes=st.sampled_from([0.0, 0.2]),
       per_session=st.sampled_from([5, 30]), policy=policies)  # fmt: skip
def test_the_live_driver_decides_bar_by_bar_what_the_backtest_decides(seed, tickers, holes, per_session, policy):
    market = random_market(seed, tickers, 120, holes, per_session)
    trades, _, decisions = replay(market, policy.row())
    expected = [(d.bar, d.ticker, d.intent, d.direction, d.reason, d.price, d.size, d.strike, d.expiry)
                for d in decisions if d.bar < len(market) - 1]  # fmt: skip
    assert _same(_live(market, policy), expected)
    if policy.expiry_sessions >= 0:  # each option trade holds the contract its entry decision named
        named = {(d.bar, d.ticker): (d.strike, d.expiry) for d in decisions if d.intent == "open"}
        assert all(named[t.entry_bar - 1, t.ticker] == (t.strike, t.expiry) and t.expiry >= FIRST_DAY for t in trades)

    # The oracle: each trade was opened by an entry decided at the close before its entry bar, in its direction and
    # size, and closed by one exit decision: at its exit bar, or, for a time stop, announced at the close before it
    # fell due (it leaves at the next open the ticker has; an option due to expire then still leaves on that word).
    opened = {(d.bar, d.ticker): d for d in decisions if d.intent == "open"}
    for trade in trades:
        entry = opened[trade.entry_bar - 1, trade.ticker]
        assert (entry.direction, entry.size) == (trade.direction, trade.size)
        assert entry.price == market.close[trade.entry_bar - 1, market.tickers.index(trade.ticker)]
    for ticker in market.tickers:
        exits = [d for d in decisions if d.intent == "close" and d.ticker == ticker]
        for trade in sorted((t for t in trades if t.ticker == ticker), key=lambda t: t.entry_bar):
            due = trade.entry_bar + policy.hold_bars - 1
            if exits and exits[0].reason == "time" and exits[0].bar == due:
                exit_ = exits.pop(0)
            elif trade.reason != "end_of_data":
                exit_ = exits.pop(0)
                assert (exit_.bar, exit_.reason) == (trade.exit_bar, trade.reason)
            else:
                continue
            assert exit_.direction == -trade.direction
        assert exits == [], "no exit closes a trade that was not there"
    # The caps hold in the backtest itself: entries per session, and the cooldown of each (ticker, side).
    per_session_entries: dict[int, int] = {}
    last_entry: dict[tuple[str, int], int] = {}
    for d in decisions:
        if d.intent != "open":
            continue
        session = int(market.session[d.bar])
        per_session_entries[session] = per_session_entries.get(session, 0) + 1
        assert per_session_entries[session] <= policy.max_trades_per_day
        previous = last_entry.get((d.ticker, d.direction))
        if previous is not None:
            assert market.end[d.bar] >= market.end[previous] + policy.cooldown_minutes * MINUTE
        last_entry[d.ticker, d.direction] = d.bar
        assert d.size <= policy.position_size + 1e-12 and not math.isnan(d.size)
