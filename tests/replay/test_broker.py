"""The paper broker: fills only on data after the alert, by the rules of `engine.policy`, with fees, partial fills and margin."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.alerts import nanoseconds
from engine.calendar import CALENDARS, ExchangeClock
from engine.options import option_price
from engine.policy import Policy
from engine.schemas import Bar, FutureAlert, Lineage, OptionAlert, StockAlert, Tick
from replay.broker import Broker, Fees, FillSettings

SHA = "ab" * 32
LINEAGE = Lineage(pack_sha=SHA, indicator_set_sha=SHA, model_config_sha=SHA, policy_sha=SHA, artifact_sha=SHA)
OPEN = datetime(2024, 3, 4, 14, 30, tzinfo=UTC)  # a Monday's 09:30 in New York
MINUTE = 60_000_000_000
CLOCK = ExchangeClock(CALENDARS["us_equities"])
POLICY = Policy(threshold=0.6, hours_mask=(1 << 24) - 1, side=0, top_pct=100.0, position_size=0.5, size_by_confidence=False,
                confidence_cap=1.0, max_exposure=1.0, stop_loss=0.0, take_profit=0.0, hold_bars=3, max_positions=5, entry_type=0,
                slippage=0.001, commission=0.0005, strike_score=0.0, expiry_sessions=-1, cooldown_minutes=0, max_trades_per_day=10)  # fmt: skip


def bars(prices: list[tuple[float, float, float, float]], ticker: str = "SPY", volume: float = 1e6) -> list[Bar]:
    start = nanoseconds(OPEN)
    return [Bar(ticker=ticker, start=start + i * MINUTE, end=start + (i + 1) * MINUTE, open=o, high=h, low=lo, close=c, volume=volume)
            for i, (o, h, lo, c) in enumerate(prices)]  # fmt: skip


def alert(bar: Bar, *, intent: str = "open", action: str = "BUY", reason: str = "entry", kind=StockAlert, size: float = 0.5,
          valid_bars: int = 1, **extra) -> StockAlert:  # fmt: skip
    moment = datetime.fromtimestamp(bar.end / 1e9, UTC)
    return kind(alert_id=f"m:{bar.ticker}:{bar.end}:{intent}", timestamp=moment, model_id="m", action=action, ticker=bar.ticker,
                quantity=100.0, confidence=0.7, position_size=size, entry_price=bar.close, valid_until=moment + timedelta(minutes=valid_bars),
                lineage=LINEAGE, received_at=moment, emitted_at=moment, intent=intent, reason=reason, **extra)  # fmt: skip


def broker(policy: Policy = POLICY, **fill) -> Broker:
    return Broker.open({"m": policy}, CLOCK, FillSettings(**fill))


def walk(b: Broker, history: list[Bar], alerts: list, ticks: dict[int, list[Tick]] | None = None) -> None:
    """Deliver each alert before the first bar starting at or after it, as `replay.sim.walk` does."""
    queue = sorted(alerts, key=lambda a: a.timestamp)
    for bar in history:
        while queue and nanoseconds(queue[0].timestamp) <= bar.start:
            b.on_alert(queue.pop(0))
        b.on_bar(bar, (ticks or {}).get(bar.start))
        b.mark(bar.end)


prices = st.floats(50.0, 150.0)
paths = st.lists(st.tuples(prices, prices, prices, prices), min_size=3, max_size=12).map(
    lambda rows: [(o, max(o, h, lo, c), min(o, h, lo, c), c) for o, h, lo, c in rows]
)


@settings(max_examples=60, deadline=None)
@given(path=paths, data=st.data())
def test_an_order_fills_only_on_bars_that_start_at_or_after_its_alert(path, data):
    history = bars(path)
    k = data.draw(st.integers(0, len(history) - 2))
    entry_type = data.draw(st.integers(0, 2))
    convention = data.draw(st.sampled_from(["backtest", "market"]))
    action = data.draw(st.sampled_from(["BUY", "SELL"]))
    b = broker(msgspec.structs.replace(POLICY, entry_type=entry_type), convention=convention)
    if data.draw(st.booleans()):
        walk(b, history, [alert(history[k], action=action)])
    else:  # told before any bar: the broker's own rule must keep the bars up to the decision's out
        b.on_alert(alert(history[k], action=action))
        walk(b, history, [])
    decided = history[k].end
    for fill in b.account.fills:
        assert fill.at >= decided
        if fill.reason == "entry":
            assert fill.at == history[k + 1].start  # the next bar, the only one the order is good for
    if entry_type == 0:  # a market order always fills at the next open, the policy's slippage worse
        [first] = [f for f in b.account.fills if f.reason == "entry"]
        direction = 1 if action == "BUY" else -1
        assert first.price == pytest.approx(history[k + 1].open * (1 + direction * POLICY.slippage), rel=1e-12)


def test_a_limit_entry_lapses_at_its_valid_until_when_the_price_never_comes_back():
    history = bars([(100, 101, 99, 100), (102, 104, 101, 103), (103, 105, 101.5, 104), (99, 100, 98, 99)])
    b = broker(msgspec.structs.replace(POLICY, entry_type=1))
    walk(b, history, [alert(history[0])])  # a buy limit at 100; the next bar trades 101 and up
    assert not b.account.fills and not b.account.orders
    assert any("expired unfilled" in note for note in b.account.notes)


def test_a_limit_touched_fills_with_its_probability_and_the_same_seed_gives_the_same_fills():
    history = bars([(100, 101, 99, 100)] + [(101, 102, 99.5, 101)] * 1)
    outcomes = {}
    for seed in range(40):
        b = broker(msgspec.structs.replace(POLICY, entry_type=1), convention="market", limit_fill_probability=0.5, seed=seed)
        walk(b, history, [alert(history[0])])
        again = broker(msgspec.structs.replace(POLICY, entry_type=1), convention="market", limit_fill_probability=0.5, seed=seed)
        walk(again, history, [alert(history[0])])
        assert again.account.fills == b.account.fills
        outcomes[seed] = bool(b.account.fills)
    assert 5 < sum(outcomes.values()) < 35  # about half the seeds fill
    assert all(f.price == 100 for f in b.account.fills)


def test_participation_fills_part_of_an_order_per_bar_and_the_rest_lapses():
    history = bars([(100, 100, 100, 100)] * 5, volume=40)
    b = broker(convention="market", participation=0.25, slippage_bps=0, fees=Fees(per_share=0, minimum=0))
    walk(b, history, [alert(history[0], size=0.5, valid_bars=3)])  # 50,000 of 100,000 at 100: 500 shares wanted, 10 a bar
    entries = [f for f in b.account.fills if f.reason == "entry"]
    assert [f.quantity for f in entries] == [10, 10, 10]  # bars 1 to 3, then the order's valid_until has passed
    assert b.account.positions["m|SPY"].quantity == 30


def test_market_fees_follow_the_instrument_schedule():
    history = bars([(100, 100, 100, 100)] * 6)
    b = broker(convention="market", slippage_bps=0, fees=Fees(per_share=0.01, minimum=1.0))
    close = alert(history[2], intent="close", action="SELL", reason="time")
    walk(b, history, [alert(history[0], size=0.005), close])  # 5 shares: the minimum applies; 500 shares would pay 5.00
    assert [f.fee for f in b.account.fills] == [1.0, 1.0]
    assert b.account.trades[0].pnl == pytest.approx(-2.0)
    b = broker(convention="market", slippage_bps=0, fees=Fees(per_share=0.01, minimum=1.0))
    walk(b, history, [alert(history[0], size=0.5), close])
    assert [f.fee for f in b.account.fills] == [5.0, 5.0]


def test_a_time_exit_fills_at_the_next_open_and_a_stop_rests_from_the_fill():
    policy = msgspec.structs.replace(POLICY, stop_loss=0.02)
    history = bars([(100, 100, 100, 100), (100, 101, 99, 100), (101, 102, 100, 101), (100, 101, 97, 98), (98, 99, 97, 98)])
    b = broker(policy, convention="backtest")
    stop_alert = alert(history[3], intent="close", action="SELL", reason="stop_loss")
    walk(b, history, [alert(history[0]), stop_alert])
    [trade] = b.account.trades
    entry = 100 * (1 + policy.slippage)
    assert trade.reason == "stop_loss"
    assert trade.exit_price == pytest.approx(entry * 0.98 * (1 - policy.slippage))  # the level, left by a sell
    assert any(note.startswith(stop_alert.alert_id) for note in b.account.notes)  # the flow's alert only confirms it
    b = broker(convention="backtest")
    walk(b, history, [alert(history[0]), alert(history[1], intent="close", action="SELL", reason="time")])
    [trade] = b.account.trades
    assert trade.exit_price == pytest.approx(history[2].open * (1 - POLICY.slippage))
    assert trade.net_return == pytest.approx((trade.exit_price - trade.entry_price) / trade.entry_price - 2 * POLICY.commission)


def test_an_alert_acted_on_once_whatever_how_often_it_arrives():
    history = bars([(100, 101, 99, 100)] * 4)
    b = broker()
    first = alert(history[0])
    assert b.on_alert(first)
    assert not b.on_alert(first)
    walk(b, history, [first, first])
    assert len(b.account.fills) == 1


def test_a_market_order_takes_the_next_quote_after_the_flow_decided():
    history = bars([(100, 100, 100, 100), (100.5, 101, 100, 100.5)])
    start = history[1].start
    ticks = {start: [Tick(ticker="SPY", ts=start + 200_000_000, bid=100.1, ask=100.2),  # before the flow decided (lateness 1 s)
                     Tick(ticker="SPY", ts=start + 1_500_000_000, bid=100.3, ask=100.4)]}  # fmt: skip
    b = broker(convention="market", slippage_bps=10)
    walk(b, history, [alert(history[0])], ticks)
    [fill] = b.account.fills
    assert fill.price == pytest.approx(100.4 * 1.001)
    assert fill.at == start + 1_500_000_000


def test_an_option_fills_at_its_premium_then_and_settles_at_intrinsic_value_at_expiry():
    session = [(500, 501, 499, 500)] * 389 + [(503, 503, 503, 503)]  # the whole session, its last bar at 503
    history = bars(session)
    extra = dict(underlying="SPY", option_type="call", strike=500.0, expiration=date(2024, 3, 4), contracts=1, volatility=0.2)
    b = broker(msgspec.structs.replace(POLICY, expiry_sessions=0, position_size=0.01), convention="backtest")
    walk(b, history, [alert(history[0], kind=OptionAlert, **extra)])
    entry, settle = b.account.fills
    years = (history[-1].end - history[1].start) / (history[-1].end - history[0].start) / 252
    assert entry.price == pytest.approx(option_price(1, 500, 500, years, 0.2) * (1 + POLICY.slippage), rel=1e-3)
    assert settle.reason == "expiry" and settle.price == pytest.approx(3.0)


def test_an_option_order_whose_contract_expired_before_its_fill_lapses_as_in_the_backtest():
    history = bars([(500, 501, 499, 500)] * 3)
    extra = dict(underlying="SPY", option_type="call", strike=500.0, contracts=1, volatility=0.2)
    b = broker(msgspec.structs.replace(POLICY, expiry_sessions=0), convention="backtest")
    walk(b, history, [alert(history[0], kind=OptionAlert, expiration=date(2024, 3, 1), **extra)])  # the Friday before
    assert not b.account.fills and "its contract expired before a bar came to fill it" in b.account.notes[0]
    b = broker(msgspec.structs.replace(POLICY, expiry_sessions=0), convention="backtest")
    walk(b, history, [alert(history[0], kind=OptionAlert, expiration=date(2024, 3, 4), **{**extra, "strike": 5000.0})])
    assert not b.account.fills and "worth nothing" in b.account.notes[0], "a call struck far above the spot is worth nothing"


def test_futures_hold_margin_and_refuse_what_it_cannot_cover():
    history = bars([(5000, 5000, 5000, 5000)] * 4, ticker="ES")
    extra = dict(contract="ES", contract_month="2024-03", contracts=1, contract_code="ESH24")
    b = broker(convention="market", slippage_bps=0, initial_margin=0.1)
    walk(b, history, [alert(history[0], kind=FutureAlert, size=0.9, **extra)])  # 90,000 of notional: one contract is 250,000
    assert not b.account.fills and "nothing affordable" in b.account.notes[0]
    b = broker(convention="market", slippage_bps=0, initial_margin=0.5, cash=300_000)
    walk(b, history, [alert(history[0], kind=FutureAlert, size=1.0, **extra)])  # one contract: 125,000 margin of 300,000
    position = b.account.positions["m|ES"]
    assert (position.quantity, position.multiplier, position.margin) == (1, 50.0, 125_000.0)
    assert b.available() == pytest.approx(300_000 - 125_000 - 2.25)
    assert math.isclose(b.equity(), 300_000 - 2.25)


def _es_days() -> list[Bar]:
    """Two one-minute ES bars at the open: Friday 2024-03-08, and Monday 2024-03-11, the March contract's volume roll day."""
    friday, monday = nanoseconds(datetime(2024, 3, 8, 14, 30, tzinfo=UTC)), nanoseconds(datetime(2024, 3, 11, 13, 30, tzinfo=UTC))
    return [Bar(ticker="ES", start=start, end=start + MINUTE, open=5000.0, high=5000.0, low=5000.0, close=5000.0, volume=1e6)
            for start in (friday, friday + MINUTE, monday, monday + MINUTE)]  # fmt: skip


@pytest.mark.parametrize("convention", ["market", "backtest"])
def test_a_held_future_rolls_to_the_next_contract_by_its_models_rule(convention):
    history = _es_days()
    entry = alert(history[0], kind=FutureAlert, size=1.0, contract="ES", contract_month="2024-03", contracts=1, contract_code="ESH24")
    leave = alert(history[2], intent="close", action="SELL", reason="time", kind=FutureAlert, contract="ES", contract_month="2024-06",
                  contracts=1, contract_code="ESM24")  # fmt: skip
    fill = dict(convention=convention, initial_margin=0.5, cash=300_000) | ({"slippage_bps": 10} if convention == "market" else {})
    rolled = Broker.open({"m": POLICY}, CLOCK, FillSettings(**fill), {"m": ("front", "volume")})
    walk(rolled, history[:3], [entry])
    position = rolled.account.positions["m|ES"]
    assert (position.instrument, position.month) == ("ESM24", "2024-06"), "rolled on the Monday of the expiry week"
    legs = [f for f in rolled.account.fills if f.reason == "roll"]
    assert [(f.instrument, f.side) for f in legs] == [("ESH24", -1), ("ESM24", 1)] and {f.at for f in legs} == {history[2].end}
    held = Broker.open({"m": POLICY}, CLOCK, FillSettings(**fill))  # a model with no roll rule (a specific month) holds
    walk(held, history, [entry, leave])
    walk(rolled, history[3:], [leave])
    [trade], [kept] = rolled.account.trades, held.account.trades
    if convention == "market":  # both legs cross the spread (10 bps each) and pay the per-contract fee
        assert [f.fee for f in legs] == [2.25, 2.25] and [f.price for f in legs] == pytest.approx([4995.0, 5005.0])
        assert trade.pnl == pytest.approx(kept.pnl - 2 * 2.25 - 50 * 10.0)
    else:  # the research backtest trades one continuous series: a roll costs nothing there
        assert [f.fee for f in legs] == [0.0, 0.0] and [f.price for f in legs] == [5000.0, 5000.0]
        assert trade.pnl == kept.pnl
    assert trade.instrument == "ESM24" and kept.instrument == "ESH24"


def test_the_live_account_takes_each_tickers_ticks_in_its_own_time_once():
    """A tick of one ticker a moment older than another's latest is still a price; one taken before (handed out again
    after a crash or a Redis rollback) is not."""
    import json as _json

    from replay import live

    class Recorder:
        def __init__(self) -> None:
            self.prices: list[tuple[str, int]] = []

        def on_bar(self, bar, ticks) -> None:
            self.prices.append((bar.ticker, bar.start))

        def mark(self, at) -> None:
            pass

    start = nanoseconds(OPEN)
    rows = [("SPY", start + 3), ("QQQ", start + 1), ("QQQ", start + 2), ("SPY", start + 4), ("QQQ", start + 2), ("SPY", start + 3)]
    recorder, state = Recorder(), live.LiveState(account=live.Account(cash=1e5, settings=FillSettings()), models=["m"])
    for ticker, ts in rows:
        tick = {"ticker": ticker, "ts": ts, "price": 100.0, "size": 1.0}
        live._tick(recorder, state, {b"tick": _json.dumps(tick).encode()})
    assert recorder.prices == [("SPY", start + 3), ("QQQ", start + 1), ("QQQ", start + 2), ("SPY", start + 4)]
