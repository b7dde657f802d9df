from datetime import UTC, date, datetime

import msgspec
import pytest

from engine.errors import DecodeError
from engine.schemas import (
    Alert,
    Bar,
    FutureAlert,
    Lineage,
    OptionAlert,
    StockAlert,
    Tick,
    decode_json,
    decode_msgpack,
    encode_json,
    encode_msgpack,
)

SHA = "ab" * 32
NOW = datetime(2024, 3, 1, 15, 30, tzinfo=UTC)
COMMON = dict(
    alert_id="a1", timestamp=NOW, model_id="spy_stock_days_1d", action="BUY", ticker="SPY", quantity=100.0,
    confidence=0.71, entry_price=510.25, stop_loss=500.0, take_profit=530.0, urgency="day", valid_until=NOW,
    lineage=Lineage(pack_sha=SHA, indicator_set_sha=SHA, model_config_sha=SHA, policy_sha=SHA, artifact_sha=SHA),
    received_at=NOW, emitted_at=NOW,
)  # fmt: skip
ALERTS = [
    StockAlert(**COMMON),
    OptionAlert(**COMMON, underlying="SPY", option_type="call", strike=515.0, expiration=date(2024, 3, 1), contracts=2),
    FutureAlert(**COMMON, contract="6EH4", contract_month="2024-03", contracts=1),
]


@pytest.mark.parametrize("alert", ALERTS, ids=lambda a: type(a).__name__)
@pytest.mark.parametrize(("encode", "decode"), [(encode_json, decode_json), (encode_msgpack, decode_msgpack)])
def test_alerts_round_trip_through_the_union(alert, encode, decode):
    assert decode(encode(alert), Alert) == alert


def test_alert_carries_its_instrument_tag():
    assert msgspec.json.decode(encode_json(ALERTS[1]))["instrument"] == "option"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"confidence": 1.5}, r"Expected `float` <= 1.*\$\.confidence"),
        ({"action": "HODL"}, r"Invalid enum value 'HODL' - at `\$\.action`"),
        ({"urgency": "now"}, r"\$\.urgency"),
        ({"emitted_at": "2024-03-01T15:30:00"}, "`emitted_at` must carry a timezone"),
    ],
)
def test_bad_alert_is_one_clear_error(change, message):
    document = msgspec.json.decode(encode_json(ALERTS[0])) | change
    with pytest.raises(DecodeError, match=message):
        decode_json(msgspec.json.encode(document), Alert)


def test_tick_and_bar_round_trip():
    tick = Tick(ticker="SPY", ts=1, price=1.5, size=10.0, bid=1.4, ask=1.6, bid_size=3.0, ask_size=4.0, trade_id="t")
    bar = Bar(ticker="SPY", start=0, end=60_000_000_000, open=1, high=2, low=0.5, close=1.5, volume=10, trades=3, vwap=1.2)
    for message in (tick, bar):
        assert decode_json(encode_json(message), type(message)) == message
        assert decode_msgpack(encode_msgpack(message), type(message)) == message
    assert Tick(ticker="X", ts=1, bid=1.0, ask=1.1).is_quote and not Tick(ticker="X", ts=1, price=1.0).is_quote


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b'{"ticker":"SPY","ts":1}', "a tick needs a trade `price` or both `bid` and `ask`"),
        (b'{"ticker":"SPY","ts":-1,"price":1}', r"Expected `int` >= 0 - at `\$.ts`"),
        (b'{"ticker":"SPY","ts":1,"price":1,"venue":"X"}', "unknown field `venue`"),
        (b'{"ticker":"SPY","ts":1,"price":1', "truncated"),
        (b'{"ticker":"SPY","ts":1,"price":1,"size":-5}', r"\$.size"),
    ],
)
def test_bad_tick_is_one_clear_error(payload, message):
    with pytest.raises(DecodeError, match=message):
        decode_json(payload, Tick)


def test_non_finite_prices_are_refused_from_msgpack():
    payload = msgspec.msgpack.encode({"ticker": "SPY", "ts": 1, "price": float("nan")})
    with pytest.raises(DecodeError, match="`price` must be a finite number"):
        decode_msgpack(payload, Tick)
    bar = {"ticker": "SPY", "start": 0, "end": 1, "open": 1, "high": float("inf"), "low": 1, "close": 1}
    with pytest.raises(DecodeError, match="`high` must be a finite number"):
        decode_msgpack(msgspec.msgpack.encode(bar), Bar)


@pytest.mark.parametrize("field", ["price", "size", "bid", "ask"])
def test_a_magnitude_no_market_trades_at_is_refused_naming_the_field(field):
    """Case 35: 1e200 is finite, but its square is not; it would poison every variance it reached."""
    tick = {"ticker": "SPY", "ts": 1, "price": 10.0, "size": 1.0, "bid": 9.9, "ask": 10.1, field: 1e200}
    with pytest.raises(DecodeError, match=f"`{field}` must be a finite number below 1e15"):
        decode_json(msgspec.json.encode(tick), Tick)
    assert decode_json(msgspec.json.encode({**tick, field: 9.99e14 if field != "bid" else 10.0}), Tick)


def test_bar_end_must_follow_start():
    with pytest.raises(DecodeError, match="`end` .* must be after `start`"):
        decode_json(b'{"ticker":"A","start":5,"end":5,"open":1,"high":1,"low":1,"close":1}', Bar)


@pytest.mark.parametrize(
    ("field", "value"),
    [("ts", 10**30), ("ts", -1), ("ticker", "SPY\nSPY:forged 1"), ("ticker", "../../x"), ("ticker", "A" * 33), ("ticker", ""),
     ("trade_id", "9" * 65), ("trade_id", "a b"), ("trade_id", "")],
)
def test_a_tick_out_of_bounds_is_refused_naming_its_field(field, value):
    with pytest.raises(DecodeError, match=field):
        decode_json(msgspec.json.encode({"ticker": "SPY", "ts": 1_700_000_000_000_000_000, "price": 1.0, field: value}), Tick)


def test_real_ticker_spellings_decode():
    for ticker in ("SPY", "BRK.B", "BRK-B", "ES=F", "^GSPC", "EUR/USD", "btc_usd", "6E:CME"):
        assert decode_json(msgspec.json.encode({"ticker": ticker, "ts": 1, "price": 1.0}), Tick).ticker == ticker
