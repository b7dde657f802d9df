"""A model's live track record: opening alerts paired with the close alerts that follow them, at the alerts' prices."""

from __future__ import annotations

import math
from datetime import timedelta

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from replay.track import figures, live
from tests.flows.test_redis import NOW, _alert


def _at(minutes: int, intent: str, price: float, action: str = "BUY", ticker: str = "SPY", model: str = "m"):
    alert = _alert(minutes, model)
    return msgspec.structs.replace(alert, alert_id=f"{model}:{ticker}:{minutes}:{intent}", timestamp=NOW + timedelta(minutes=minutes),
                                   ticker=ticker, intent=intent, action=action, entry_price=price,
                                   reason="entry" if intent == "open" else "take_profit")  # fmt: skip


def test_round_trips_pair_each_open_with_the_next_close_of_its_ticker_in_time_order():
    alerts = [
        _at(0, "open", 100.0), _at(5, "close", 110.0, "SELL"),  # long: +10%
        _at(5, "open", 110.0, "SELL"), _at(9, "close", 99.0, "BUY"),  # a short reopened at the close's bar: +10%
        _at(1, "open", 50.0, ticker="QQQ"), _at(3, "close", 45.0, "SELL", ticker="QQQ"),  # -10%
        _at(4, "close", 60.0, "SELL", ticker="IWM"),  # a close without an opening in the history: no round trip
        _at(20, "open", 200.0, ticker="DIA"),  # still open
    ]
    record = live(reversed(alerts))  # in any order
    assert record["alerts"] == 8 and record["open"] == ["DIA"] and record["last_alert_at"] == NOW + timedelta(minutes=20)
    read = record["figures"]
    assert read.trades == 3 and math.isclose(read.win_rate, 2 / 3) and math.isclose(read.average_return, 0.1 / 3)
    assert math.isclose(read.best, 0.1) and math.isclose(read.worst, -0.1)
    assert record["account_return"] is None  # the alerts do not say what share of equity they committed
    sized = [msgspec.structs.replace(alert, position_size=0.5) for alert in alerts]  # each trade commits half the account
    assert math.isclose(live(sized)["account_return"], 1.05 * 1.05 * 0.95 - 1)


def test_no_trade_reads_as_nothing_to_read():
    record = live([])
    read = record["figures"]
    assert read.trades == 0 and math.isnan(read.win_rate) and math.isnan(read.average_return) and record["account_return"] == 0.0


@given(st.lists(st.floats(min_value=-0.99, max_value=10.0, allow_nan=False), min_size=1, max_size=50))
def test_the_figures_of_any_returns_are_consistent(returns):
    read = figures(returns)
    slack = 1e-12 * max(1.0, abs(read.average_return))  # a mean of equal returns may round a unit below them
    assert read.trades == len(returns) and read.worst - slack <= read.average_return <= read.best + slack
    assert 0.0 <= read.win_rate <= 1.0 and read.win_rate == sum(r > 0 for r in returns) / len(returns)
