"""The live engine pieces: bar builder, tick screen, policy state, alerts and conflicts."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import calendar
from engine.alerts import (
    alert_id,
    build_alert,
    contract_month,
    resolve,
)
from engine.bar_builder import ACCEPTED, LATE, OUTSIDE, BarBuilder
from engine.bars import aggregate, bucket_keys
from engine.calendar import (
    CALENDARS,
    EPOCH,
    NS_PER_MINUTE,
    ExchangeClock,
    local_clock,
    session_days,
)
from engine.models import FutureSettings, OptionSettings, StockSettings
from engine.options import contract_expiry, listed_expiry, on_grid, option_strike, strike_score, years_to_expiry
from engine.policy import Policy
from engine.schemas import Bar, Lineage, Tick
from engine.screening import LEVEL_SHIFT, LOCKED_QUOTE, TickScreen
from engine.signals import Scored, Signals
from engine.snapshot import decode_state, encode_state
from flows.sources import Reader

US = CALENDARS["us_equities"]
CLOCK = ExchangeClock(US)
SECOND = 1_000_000_000
LINEAGE = Lineage(pack_sha="a" * 64, indicator_set_sha="b" * 64, model_config_sha="c" * 64, policy_sha="d" * 64)


def _ns(year, month, day, hour, minute, second=0) -> int:
    return int(datetime(year, month, day, hour, minute, second, tzinfo=UTC).timestamp()) * SECOND


def test_the_exchange_clock_agrees_with_the_vectorised_calendar_across_daylight_saving():
    times = np.arange(_ns(2014, 3, 7, 0, 0), _ns(2014, 3, 12, 0, 0), 7 * NS_PER_MINUTE + 13 * SECOND)
    times = np.concatenate([times, np.arange(_ns(2013, 11, 1, 0, 0), _ns(2013, 11, 6, 0, 0), 11 * NS_PER_MINUTE)])
    day, minute = local_clock(times, US.timezone)
    session, inside = session_days(times, US)
    for i, ts in enumerate(times.tolist()):
        assert CLOCK.local(ts) == (day[i], minute[i])
        assert CLOCK.session(ts) == (session[i], inside[i])
    opens, closes = CLOCK.session_bounds((date(2014, 3, 10) - EPOCH).days)  # the first session after the spring change
    assert (opens, closes) == (_ns(2014, 3, 10, 13, 30), _ns(2014, 3, 10, 20, 0))


_EDGES = [_ns(2014, 3, day, hour, minute) for day in (7, 10, 11) for hour, minute in ((13, 30), (14, 30), (20, 0), (21, 0), (4, 0), (5, 0))]
"""Opens, closes and local midnights (EST and EDT) around the spring change of 2014."""


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_EDGES), st.integers(-90 * 60, 90 * 60)), min_size=1, max_size=60), st.integers(0, 59))
def test_the_minutes_an_exchange_clock_remembers_answer_as_if_computed_afresh(times, second):
    # Times in any order around opens, closes and midnights, across the spring daylight-saving change, each asked
    # twice within its minute (a burst of bar closes asks about one minute); a memory of a few minutes, so that it
    # fills and starts again within an example.
    kept, calendar._MINUTES_KEPT = calendar._MINUTES_KEPT, 8
    try:
        clock = ExchangeClock(US)
        times = [edge + offset * SECOND for edge, offset in times]
        times = [ts for t in times for ts in (t, t - t % NS_PER_MINUTE + second * SECOND)]
        day, minute = local_clock(np.array(times), US.timezone)
        session, inside = session_days(np.array(times), US)
        for i, ts in enumerate(times):
            assert clock.session(ts) == (session[i], inside[i])
            assert clock.local(ts) == (day[i], minute[i])
    finally:
        calendar._MINUTES_KEPT = kept


@st.composite
def _trades(draw):
    """A day of trades (ts, price, size) in time order, with quiet stretches (halts)."""
    count = draw(st.integers(1, 300))
    gaps = draw(st.lists(st.integers(1, 20 * 60 * SECOND), min_size=count, max_size=count))
    ts = _ns(2024, 3, 19, 13, 30) + np.cumsum(gaps)
    prices = draw(st.lists(st.floats(10, 20, allow_nan=False), min_size=count, max_size=count))
    sizes = draw(st.lists(st.floats(1, 500, allow_nan=False), min_size=count, max_size=count))
    return ts.tolist(), prices, sizes


@settings(max_examples=60, deadline=None)
@given(_trades(), st.sampled_from(["1m", "5m", "1h"]), st.integers(0, 3), st.randoms(use_true_random=False))
def test_bars_from_ticks_equal_the_research_roll_up_whatever_the_arrival_order(trades, cadence, seconds_late, shuffle):
    ts, prices, sizes = trades
    lateness = seconds_late * SECOND
    # Arrival order: each tick delayed by less than the lateness, so none may be refused.
    arrival = sorted(range(len(ts)), key=lambda i: ts[i] + shuffle.randrange(lateness + 1))
    builder = BarBuilder("SPY", cadence, CLOCK, lateness)
    bars = []
    for i in arrival:
        assert builder.add(ts[i], prices[i], sizes[i]) == ACCEPTED
        bars += builder.advance(ts[i])
    bars += builder.close_all()
    keys = bucket_keys(np.array(ts), cadence, US)
    start, end, open_, high, low, close, volume = aggregate(keys, ts, ts, prices, prices, prices, prices, sizes)
    assert [(bar.open, bar.high, bar.low, bar.close) for bar in bars] == list(zip(open_.tolist(), high.tolist(), low.tolist(), close.tolist(), strict=True))
    assert np.allclose([bar.volume for bar in bars], volume, rtol=1e-12), "volume: the same sum, maybe in another order"
    assert all(bar.start <= s <= e < bar.end for bar, s, e in zip(bars, start.tolist(), end.tolist(), strict=True))
    assert len({bar.start for bar in bars}) == len(bars), "no bucket is built twice, none across a halt"


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(CALENDARS)), st.sampled_from(["1m", "5m", "1h", "1d", "1w", "1mo"]),
       st.integers(_ns(2013, 1, 1, 0, 0), _ns(2025, 1, 1, 0, 0)))  # fmt: skip
def test_a_tick_falls_inside_the_bar_it_is_put_in_on_every_calendar(name, cadence, ts):
    # A round-the-clock session from midnight (crypto) once dated its times a day late: a tick on January 31st
    # went into a daily bar of February 1st and a monthly bar of February.
    cal = CALENDARS[name]
    bounds = BarBuilder("SPY", cadence, ExchangeClock(cal), 0).bounds(ts)
    session, inside = session_days(np.array([ts]), cal)
    if bounds is None:
        assert cadence in ("1d", "1w", "1mo") and not inside[0], "only a session bar refuses a time, and only outside sessions"
        return
    start, end = bounds
    assert start <= ts < end
    if inside[0]:  # the bar is the research resampler's bucket of the tick, from its first nanosecond to its last
        keys = bucket_keys(np.array([ts, start, end - 1]), cadence, cal)
        assert keys[0] == keys[1] == keys[2]
    if cal.round_the_clock and cal.timezone == "UTC":
        assert session[0] == ts // calendar.NS_PER_DAY, "a midnight-to-midnight session is dated by its own day"


def test_a_bar_closes_by_the_clock_and_a_tick_for_it_is_then_late():
    builder = BarBuilder("SPY", "1m", CLOCK, 2 * SECOND)
    t = _ns(2024, 3, 19, 14, 0, 10)
    assert builder.add(t, 10.0, 1.0) == ACCEPTED
    assert builder.advance(t + 50 * SECOND) == []  # inside the minute
    assert builder.advance(t + 51 * SECOND) == []  # past the end, within the lateness
    [bar] = builder.advance(t + 52 * SECOND)  # a clock, not a tick, closes it
    assert (bar.ticker, bar.start, bar.end) == ("SPY", _ns(2024, 3, 19, 14, 0), _ns(2024, 3, 19, 14, 1))
    assert builder.add(t + 20 * SECOND, 10.5, 1.0) == LATE
    restored = decode_state(encode_state(builder), BarBuilder)
    assert restored.closed_until == builder.closed_until and restored.add(t + 20 * SECOND, 10.5, 1.0) == LATE


def test_a_daily_bar_spans_the_session_and_ignores_extended_hours():
    builder = BarBuilder("SPY", "1d", CLOCK, SECOND)
    assert builder.add(_ns(2024, 3, 19, 12, 0), 10.0, 1.0) == OUTSIDE  # 08:00 New York: pre-market
    assert builder.add(_ns(2024, 3, 19, 15, 0), 10.0, 1.0) == ACCEPTED
    assert builder.bounds(_ns(2024, 3, 19, 15, 0)) == (_ns(2024, 3, 19, 13, 30), _ns(2024, 3, 19, 20, 0))
    weekly = BarBuilder("SPY", "1w", CLOCK, SECOND)
    assert weekly.bounds(_ns(2024, 3, 20, 15, 0)) == (_ns(2024, 3, 18, 13, 30), _ns(2024, 3, 22, 20, 0))


def test_the_screen_refuses_bad_ticks_and_adopts_a_confirmed_new_level():
    screen = TickScreen()
    t = _ns(2024, 3, 19, 14, 0)
    assert screen.check(t, 0.0, 1.0, None, None, 1) == "bad_price"
    assert screen.check(t, -1.0, 1.0, None, None, 2) == "bad_price"
    assert TickScreen(negative_prices=True).check(t, -1.0, 1.0, None, None, 2) is None  # a spread may trade below zero
    assert screen.check(t, 10.0, 0.0, None, None, 3) == "bad_size"
    assert screen.check(t, None, None, 10.1, 10.0, 4) == "crossed_quote"
    assert screen.check(t, None, None, 10.0, 10.0, 5) == LOCKED_QUOTE  # locked: kept, with its remark
    for i in range(30):
        assert screen.check(t + i, 10.0 + 0.01 * (i % 3), 5.0, None, None, ("trade", i)) is None
    assert screen.check(t + 5, 10.01, 5.0, None, None, ("trade", 5)) == "duplicate"
    assert screen.check(t + 31, 10.01, 5.0, None, None, ("trade", 31)) is None, "same time, other trade: kept"
    assert screen.check(t + 40, 100.0, 5.0, None, None, "spike") == "outlier"
    assert screen.check(t + 41, 10.02, 5.0, None, None, "after") is None
    # A split: the price moves 7:1 and stays there; after three agreeing prints it is the new level.
    verdicts = [screen.check(t + 50 + i, 1.43, 5.0, None, None, ("split", i)) for i in range(4)]
    assert verdicts == ["outlier", "outlier", LEVEL_SHIFT, None]


def _row(ticker="SPY", end_minute=31, probability=0.7, close=100.0, high=None, low=None, session=19801, hour=10) -> Scored:
    end = _ns(2024, 3, 19, 13, end_minute)
    bar = Bar(ticker=ticker, start=end - NS_PER_MINUTE, end=end, open=close, high=high or close, low=low or close, close=close)
    return Scored("m", bar, probability, hour, session, 0.0, 1.0, 0.2, False, end, 1)


POLICY = Policy(threshold=0.6, hours_mask=(1 << 24) - 1, side=0, top_pct=100.0, position_size=0.1, size_by_confidence=False,
                confidence_cap=1.0, max_exposure=1.0, stop_loss=0.01, take_profit=0.02, hold_bars=3, max_positions=5, entry_type=0,
                slippage=0.0, commission=0.0, strike_score=0.0, expiry_sessions=-1, cooldown_minutes=10, max_trades_per_day=2)  # fmt: skip


def test_the_policy_enters_exits_and_keeps_cooldowns_and_daily_limits():
    signals = Signals(POLICY, ("SPY",), 252.0)
    [entry] = signals.close([_row(probability=0.7)], CLOCK)
    assert (entry.intent, entry.direction, entry.confidence, entry.size, entry.price) == ("open", 1, 0.7, 0.1, 100.0)
    assert signals.close([_row(end_minute=32, probability=0.9)], CLOCK) == [], "in a position: no second entry"
    [exit_] = signals.close([_row(end_minute=33, probability=0.5, close=103.0, high=103.0)], CLOCK)  # opens through the 2% target
    assert (exit_.intent, exit_.reason, exit_.direction, exit_.price) == ("close", "take_profit", -1, 103.0)
    assert signals.close([_row(end_minute=34, probability=0.9)], CLOCK) == [], "the buy side cools down for 10 minutes"
    [short] = signals.close([_row(end_minute=35, probability=0.2)], CLOCK)  # the other side is free
    assert (short.direction, short.confidence) == (-1, 0.8)
    for minute in (36, 37, 38):
        done = signals.close([_row(end_minute=minute, probability=0.5)], CLOCK)
    assert [s.reason for s in done] == ["time"], "held three bars: it leaves at the next open"
    assert signals.close([_row(end_minute=50, probability=0.9)], CLOCK) == [], "two trades this session already"
    assert len(signals.close([_row(end_minute=51, probability=0.9, session=19802)], CLOCK)) == 1, "a new session date resets the count"
    restored = decode_state(encode_state(signals), Signals)
    assert restored.book.positions == signals.book.positions == 1
    assert np.array_equal(restored.book.counters, signals.book.counters)


def test_the_policy_ranks_the_universe_and_the_kill_switch_stops_entries_only():
    signals = Signals(msgspec.structs.replace(POLICY, top_pct=50.0, cooldown_minutes=0, max_trades_per_day=10),
                      ("AAA", "BBB", "CCC", "DDD"), 252.0)  # fmt: skip
    rows = [_row("AAA", probability=0.65), _row("BBB", probability=0.9), _row("CCC", probability=0.62), _row("DDD", probability=0.5)]
    [best, second] = signals.close(rows, CLOCK)
    assert {best.scored.bar.ticker, second.scored.bar.ticker} == {"BBB", "AAA"}, "ceil(50% of 4) = 2, the most confident"
    signals.killed = True
    assert signals.close([_row("CCC", end_minute=32, probability=0.95), _row("BBB", end_minute=32)], CLOCK) == []  # BBB fills at 100
    exits = signals.close([_row("BBB", end_minute=33, close=90.0, low=90.0)], CLOCK)
    assert [s.reason for s in exits] == ["stop_loss"], "a killed model still says when to get out"


def test_listed_expiries_strikes_and_contract_months():
    tuesday = (date(2024, 3, 19) - EPOCH).days
    assert EPOCH.fromordinal(EPOCH.toordinal() + listed_expiry(CLOCK, tuesday, 0)) == date(2024, 3, 19)
    assert EPOCH.fromordinal(EPOCH.toordinal() + listed_expiry(CLOCK, tuesday, 1)) == date(2024, 3, 22)  # the Friday
    good_friday = (date(2024, 3, 25) - EPOCH).days  # the week of Good Friday 2024-03-29: Thursday expiry
    assert EPOCH.fromordinal(EPOCH.toordinal() + listed_expiry(CLOCK, good_friday, 2)) == date(2024, 3, 28)
    assert EPOCH.fromordinal(EPOCH.toordinal() + listed_expiry(CLOCK, tuesday, 80)) == date(2024, 7, 19)  # third Friday
    assert (on_grid(412.37, 412.0), on_grid(23.26, 23.0), on_grid(1234.0, 1230.0)) == (410.0, 23.5, 1230.0)
    assert contract_month("ES", (date(2024, 3, 1) - EPOCH).days, "front") == date(2024, 3, 1)
    assert contract_month("ES", (date(2024, 3, 11) - EPOCH).days, "front") == date(2024, 6, 1), "rolled in expiry week"
    assert contract_month("ES", (date(2024, 3, 1) - EPOCH).days, "back") == date(2024, 6, 1)
    assert contract_month("CL", (date(2024, 3, 1) - EPOCH).days, "front") == date(2024, 3, 1)
    expiry_week = (date(2024, 3, 12) - EPOCH).days  # Tuesday before the third Friday (March 15th)
    assert contract_month("ES", expiry_week, "front", "calendar") == date(2024, 3, 1), "held to its expiry"
    assert contract_month("ES", expiry_week + 3, "front", "calendar") == date(2024, 3, 1)
    assert contract_month("ES", expiry_week + 4, "front", "calendar") == date(2024, 6, 1), "the day after expiry"


def _signal(probability=0.7, direction=1, intent="open", ticker="SPY"):
    from engine.signals import Signal

    return Signal(_row(ticker, probability=probability), direction, intent, "entry", 100.0, 0.1, 99.0, 102.0, probability)


def _option_signal(probability=0.7, *, sessions=0, strike="OTM_5", daily=False):
    """The entry an option policy's kernel decides at the close of the minute bar ending 09:31 in New York on 2024-03-19,
    or of that day's daily bar."""
    policy = msgspec.structs.replace(POLICY, expiry_sessions=sessions, strike_score=strike_score(strike), side=0)
    row = _row(probability=probability)
    bar = row.bar
    if daily:
        bar = msgspec.structs.replace(bar, start=_ns(2024, 3, 19, 13, 30), end=_ns(2024, 3, 19, 20, 0))
    opened, closed = CLOCK.session_clock(bar.start, bar.end, not daily)
    row = msgspec.structs.replace(row, bar=bar, opened=opened, closed=closed)
    [signal] = Signals(policy, ("SPY",), 252.0).close([row], CLOCK)
    return signal


def test_alerts_carry_the_instrument_and_their_id_comes_from_model_and_bar():
    signal = _signal()
    stock = build_alert(signal, StockSettings(ticker="SPY"), LINEAGE, CLOCK, emitted_at=signal.scored.bar.end + 5)
    assert stock.alert_id == alert_id("m", "SPY", signal.scored.bar.end, "open") == "m:SPY:20240319T133100Z:open"
    assert (stock.action, stock.quantity, stock.entry_price, stock.stop_loss) == ("BUY", 100, 100.0, 99.0)
    call = _option_signal()
    option = build_alert(call, OptionSettings(underlying="SPY", default_dte=0, default_strike="OTM_5"), LINEAGE, CLOCK,
                         emitted_at=call.scored.bar.end)  # fmt: skip
    assert (option.option_type, option.expiration, option.volatility_source) == ("call", date(2024, 3, 19), "realised")
    assert option.strike >= 100.0 and option.strike == round(option.strike) and 0 < option.premium < 2  # 45 delta: at or above the spot
    put = build_alert(_option_signal(probability=0.2), OptionSettings(underlying="SPY"), LINEAGE, CLOCK, emitted_at=0)
    assert (put.option_type, put.action) == ("put", "BUY"), "a down signal buys a put"
    with pytest.raises(ValueError, match="without its contract"):
        build_alert(signal, OptionSettings(underlying="SPY"), LINEAGE, CLOCK, emitted_at=0)
    future = build_alert(signal, FutureSettings(contract="ES"), LINEAGE, CLOCK, emitted_at=0)
    assert (future.contract_month, future.contract_code) == ("2024-06", "ESM24")  # 2024-03-19 is past the March roll
    assert msgspec.json.decode(msgspec.json.encode(future)) ["contract_code"] == "ESM24"


def test_conflicts_are_decided_by_the_rule_and_the_decision_is_recorded():
    a = build_alert(_signal(0.7), StockSettings(ticker="SPY"), LINEAGE, CLOCK, emitted_at=0)
    b = msgspec.structs.replace(a, model_id="n", alert_id="n:1", confidence=0.9)
    c = msgspec.structs.replace(a, model_id="o", alert_id="o:1", confidence=0.65, action="SELL")
    closing = msgspec.structs.replace(a, model_id="p", alert_id="p:1", intent="close")
    kept, decision = resolve("first-wins", [b, a, closing], order=["m", "n"])
    assert [x.alert_id for x in kept] == ["p:1", a.alert_id] and "first-wins" in kept[1].resolution
    kept, _ = resolve("highest-confidence", [a, b, c])
    assert [x.model_id for x in kept] == ["n"]
    kept, decision = resolve("ensemble", [a, b, c])
    assert kept[0].action == "BUY" and math.isclose(kept[0].confidence, 0.8) and "2 of 3" in decision
    assert resolve("ensemble", [a]) == ([a], None)


def test_a_model_unpublished_in_flight_lets_its_peers_through_the_conflict_step():
    from types import SimpleNamespace

    from flows.steps import ConflictStep, Decided, PolicyStep

    row = Scored("gone", Bar(ticker="SPY", start=0, end=60, open=1.0, high=1.0, low=1.0, close=1.0), 0.9, 10, 19801, 0.0, 1.0, 0.2,
                 False, 0, 2)  # fmt: skip
    decided, _ = PolicyStep(SimpleNamespace(models={}), None).on_batch([row])
    assert decided == [Decided("SPY", 60, 2, [])]
    conflicts = ConflictStep("first-wins", (), None)
    kept = [build_alert(_signal(0.7), StockSettings(ticker="SPY"), LINEAGE, CLOCK, emitted_at=0)]  # the model that stayed
    out, _ = conflicts.on_batch([Decided("SPY", 60, 2, kept), *decided])
    assert out == kept and not conflicts.state.pending, "the group is released, not left waiting for the gone model"


@settings(max_examples=200, deadline=None)
@given(
    times=st.lists(st.integers(0, 600 * SECOND), min_size=1, max_size=100),
    lateness=st.sampled_from([0, 2 * SECOND]),
    idle=st.sampled_from([0, 5 * SECOND]),
)
def test_the_source_clock_speaks_once_a_minute_idle_behind_the_source(times, lateness, idle):
    NOW = _ns(2026, 12, 3, 12, 0)  # the wall clock when the replay runs: after its data
    reader = Reader("data", lateness=lateness, idle=idle)
    base = _ns(2024, 3, 19, 14, 0)
    latest, last = -1, None
    for at in times:
        latest = max(latest, base + at)
        reader.accept("tick", Tick(ticker="SPY", ts=base + at, price=10.0, size=1.0), NOW)
        item = reader.clock(NOW)
        if item is not None:
            watermark = item[1]
            assert watermark == latest - idle, "the clock runs idle behind the source's time"
            assert last is None or (watermark - lateness) // NS_PER_MINUTE > (last - lateness) // NS_PER_MINUTE, "once a minute"
            last = watermark
        assert last is not None and (last - lateness) // NS_PER_MINUTE == (latest - idle - lateness) // NS_PER_MINUTE, (
            "every minute that ended lateness + idle before the source's time has been announced"
        )


def test_a_tick_too_far_ahead_is_dead_lettered_as_future_and_the_clock_stays():
    now, base = _ns(2026, 12, 3, 12, 0), _ns(2024, 3, 19, 14, 0)
    for mode, wall in (("data", now), ("wall", base)):  # a replay after its data; a live feed in step with the wall clock
        reader = Reader(mode, max_ahead=60 * SECOND)
        assert reader.accept("tick", Tick(ticker="SPY", ts=base, price=10.0, size=1.0), wall)[0] == "tick"
        kind, letter, _ = reader.accept("tick", Tick(ticker="SPY", ts=base + 61 * SECOND, price=10.0, size=1.0), wall)
        assert kind == "dead" and letter.reason == "future" and "60.0 s allowed" in letter.detail
        assert reader.latest == base, "event time did not move"
        assert reader.accept("tick", Tick(ticker="SPY", ts=base + 59 * SECOND, price=10.0, size=1.0), wall)[0] == "tick"
    replay = Reader("data")  # a replay of data stamped after today (a synthetic market) is not held against the wall clock
    assert replay.accept("tick", Tick(ticker="SPY", ts=_ns(2096, 1, 2, 15, 0), price=10.0, size=1.0), now)[0] == "tick"


def test_an_option_alert_names_the_contract_its_policy_chose_not_the_instruments_default():
    """A sweep row that chose dte_target and strike_selection is traded live with them, as the backtest priced it."""
    settings = OptionSettings(underlying="SPY", default_dte=0, default_strike="ATM")
    default = build_alert(_option_signal(strike="ATM"), settings, LINEAGE, CLOCK, emitted_at=0)
    signal = _option_signal(sessions=10, strike="OTM_10")
    chosen = build_alert(signal, settings, LINEAGE, CLOCK, emitted_at=0)
    session = (date(2024, 3, 19) - date(1970, 1, 1)).days
    assert default.expiration == date(2024, 3, 19)
    assert (chosen.expiration - date(1970, 1, 1)).days == listed_expiry(CLOCK, session, 10) == signal.expiry
    assert chosen.strike == signal.strike > default.strike, "out of the money: a call's strike above the spot"
    years = years_to_expiry(CLOCK, session, signal.scored.bar.end, signal.expiry)
    assert chosen.strike == on_grid(option_strike(1, 100.0, strike_score("OTM_10"), years, 0.2), 100.0), "the listed strike of the delta"


def test_an_order_decided_at_a_sessions_close_buys_the_expiry_counted_from_the_session_it_fills_in():
    """A daily bar's 0DTE order fills at the next open: its option lives through that session, not the one already over."""
    tuesday, wednesday = (date(2024, 3, 19) - EPOCH).days, (date(2024, 3, 20) - EPOCH).days
    close = _ns(2024, 3, 19, 20, 0)  # 16:00 in New York
    assert contract_expiry(CLOCK, close, 0) == (wednesday, CLOCK.ordinal(wednesday) + 1.0)
    assert contract_expiry(CLOCK, close - NS_PER_MINUTE, 0)[0] == tuesday, "a minute before the close: this session's"
    friday_close = _ns(2024, 3, 22, 20, 0)
    assert contract_expiry(CLOCK, friday_close, 0)[0] == (date(2024, 3, 25) - EPOCH).days, "over the weekend"
    assert contract_expiry(CLOCK, _ns(2024, 3, 28, 20, 0), 0)[0] == (date(2024, 4, 1) - EPOCH).days, "over Good Friday"
    assert _option_signal(daily=True).expiry == wednesday


@pytest.mark.parametrize(("first", "change"), [(date(2013, 10, 30), date(2013, 11, 4)), (date(2014, 3, 5), date(2014, 3, 10))])
def test_minute_bars_built_from_ticks_across_a_daylight_saving_change_keep_their_spacing_and_sessions(first, change):
    """Case 19: ticks replayed across 2013-11-03 and 2014-03-09 make one-minute bars on whole minutes of UTC, inside the
    session that opens at 09:30 in New York (13:30 UTC in summer time, 14:30 in winter), local hours 9 to 15 on both sides:
    no hour missing or doubled, and the bars research resamples from the same ticks."""
    from research.synthetic import generate

    bars, ticks = generate(["SPY"], "1m", 6, US, seed=3, start=first, ticks=True)["SPY"]
    builder = BarBuilder("SPY", "1m", CLOCK, 0)
    built = []
    for ts, price, size in zip(ticks["ts"].tolist(), ticks["price"].tolist(), ticks["size"].tolist(), strict=True):
        builder.add(ts, price, size)
        built += builder.advance(ts)
    built += builder.close_all()
    starts = [bar.start for bar in built]
    assert starts == bars.start.tolist() and len(starts) > 6 * 380, "the bars research resamples from the same ticks"
    assert all(b > a for a, b in zip(starts, starts[1:])) and all(start % NS_PER_MINUTE == 0 for start in starts)
    opens = {}
    for bar in built:
        session = CLOCK.session(bar.start)[0]
        bounds = CLOCK.session_bounds(session)
        assert bounds[0] <= bar.start and bar.end <= bounds[1], "inside its session"
        opens[EPOCH + timedelta(days=session)] = datetime.fromtimestamp(bounds[0] / 1e9, UTC)
    assert len(opens) == 6 and {moment.minute for moment in opens.values()} == {30}
    summer, winter = (min(opens), change) if first.month == 10 else (change, min(opens))
    assert (opens[summer].hour, opens[winter].hour) == (13, 14)
    hours = set((local_clock(np.array(starts), US.timezone)[1] // 60).tolist())
    assert hours == set(range(9, 16)), "exchange-local hours, what allowed_hours reads: none shifted by the change"


def test_session_boundaries_are_the_exchanges_hours_and_dates_not_utc():
    """Case 18: a feed from 04:00 to 20:00 New York makes a daily bar of the regular session only, and minute bars of
    every minute it trades, as research's resampler buckets them (of the session's minutes only for a model whose
    history was imported with regular hours); allowed hours are New York hours on both sides of a
    daylight-saving change, in the live clock and research's alike; the daily trade count resets at the session date,
    which for CME Globex starts the evening before, not at UTC midnight."""
    ticks = [_ns(2024, 3, 19, 4, 0) + minute * NS_PER_MINUTE + SECOND for minute in range(4 * 60, 20 * 60)]  # New York is UTC-4
    daily, minutes = BarBuilder("SPY", "1d", CLOCK, SECOND), BarBuilder("SPY", "1m", CLOCK, SECOND)
    inside = [ts for ts in ticks if daily.add(ts, 10.0, 1.0) == ACCEPTED]
    assert (inside[0], inside[-1]) == (_ns(2024, 3, 19, 13, 30) + SECOND, _ns(2024, 3, 19, 19, 59) + SECOND) and len(inside) == 390
    assert all(minutes.add(ts, 10.0, 1.0) == ACCEPTED for ts in ticks)
    built = [bar.start for bar in minutes.advance(_ns(2024, 3, 20, 4, 0))]
    assert built == np.unique(np.array(ticks) // NS_PER_MINUTE * NS_PER_MINUTE).tolist()
    assert len(np.unique(bucket_keys(np.array(ticks), "1m", US))) == len(built), "research buckets the same minutes"
    regular = BarBuilder("SPY", "1m", CLOCK, SECOND, regular_hours=True)  # a model whose history holds regular hours only
    assert [ts for ts in ticks if regular.add(ts, 10.0, 1.0) == ACCEPTED] == inside
    [session_bar] = daily.advance(_ns(2024, 3, 20, 4, 0))
    assert (session_bar.start, session_bar.end) == (_ns(2024, 3, 19, 13, 30), _ns(2024, 3, 19, 20, 0))

    winter, summer = _ns(2024, 3, 8, 14, 45), _ns(2024, 3, 11, 13, 45)  # 09:45 New York both: UTC-5, then UTC-4
    assert CLOCK.local(winter)[1] // 60 == CLOCK.local(summer)[1] // 60 == 9
    assert (local_clock(np.array([winter, summer]), US.timezone)[1] // 60).tolist() == [9, 9]

    cme = ExchangeClock(CALENDARS["cme_globex"])
    policy = msgspec.structs.replace(POLICY, max_trades_per_day=1, cooldown_minutes=0, hold_bars=1)
    signals = Signals(policy, ("ES",), 252.0)
    evening, after_midnight, next_evening = _ns(2024, 3, 18, 23, 30), _ns(2024, 3, 19, 1, 30), _ns(2024, 3, 19, 22, 30)
    sessions = [cme.session(end - NS_PER_MINUTE)[0] for end in (evening, after_midnight, next_evening)]
    tuesday = (date(2024, 3, 19) - EPOCH).days
    assert sessions == [tuesday, tuesday, tuesday + 1], "Globex's Tuesday session opens Monday 17:00 Chicago"
    entries = []
    for end, session in zip((evening, after_midnight, next_evening), sessions, strict=True):
        bar = Bar(ticker="ES", start=end - NS_PER_MINUTE, end=end, open=5000.0, high=5000.0, low=5000.0, close=5000.0)
        row = Scored("m", bar, 0.9, cme.local(end)[1] // 60, session, 0.0, 1.0, 0.2, False, end, 1)
        entries += [signal.scored.bar.end for signal in signals.close([row], cme) if signal.intent == "open"]
    assert entries == [evening, next_evening], "past UTC midnight is the same session: its one trade is taken"


def test_the_session_clock_of_bars_outside_a_daytime_sessions_hours():
    """An hourly bar 15:30 to 16:30 ends with the session over (a 0DTE option held into it expires there); a bar after
    the close has none of the session left, one before the open all of it; the live and research clocks agree."""
    tuesday = (date(2024, 3, 19) - EPOCH).days
    base = CLOCK.ordinal(tuesday)
    bars = {"hourly": (_ns(2024, 3, 19, 19, 30), _ns(2024, 3, 19, 20, 30)), "after": (_ns(2024, 3, 19, 20, 5), _ns(2024, 3, 19, 20, 6)),
            "before": (_ns(2024, 3, 19, 12, 0), _ns(2024, 3, 19, 12, 1)), "midnight": (_ns(2024, 3, 20, 3, 59), _ns(2024, 3, 20, 4, 0))}  # fmt: skip
    expected = {"hourly": (1 - 30 / 390, 1.0), "after": (1.0, 1.0), "before": (0.0, 0.0), "midnight": (1.0, 1.0)}
    for name, (start, end) in bars.items():
        opened, closed = CLOCK.session_clock(start, end, True)
        assert (opened - base, closed - base) == pytest.approx(expected[name]), name
        batch = calendar.session_clock(np.array([start]), np.array([end]), US, intraday=True)
        assert (float(batch[0][0]), float(batch[1][0])) == pytest.approx(expected[name]), name
