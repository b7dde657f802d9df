"""Wire schemas: ticks and bars in, alerts out, all frozen msgspec Structs.

Market data carries event times as integer nanoseconds since the Unix epoch (UTC):
cheap to compare on the per-tick path. Alerts carry timezone-aware UTC datetimes,
because people and other programs read them.

Schema evolution (the msgspec rules): a new field must have a default, and no field
is renamed or removed while a stream may still hold messages that carry it.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from typing import Annotated, Literal, TypeVar, Union

import msgspec

from engine.errors import DecodeError
from engine.snapshot import state

__all__ = [
    "LARGEST",
    "Tick",
    "Bar",
    "Lineage",
    "StockAlert",
    "OptionAlert",
    "FutureAlert",
    "Alert",
    "encode_json",
    "encode_msgpack",
    "decode_json",
    "decode_msgpack",
]

LATEST_NS = 7_258_118_400 * 1_000_000_000
"""2200-01-01 UTC: event times stop before it, well inside what datetimes, numpy and the calendars can hold
(a tick stamped 10**30 would otherwise reach the calendar and overflow there)."""
Nanoseconds = Annotated[int, msgspec.Meta(ge=0, lt=LATEST_NS, description="nanoseconds since the Unix epoch (UTC), before 2200")]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
Probability = Annotated[float, msgspec.Meta(ge=0, le=1)]
Sha256 = Annotated[str, msgspec.Meta(pattern=r"^[0-9a-f]{64}\Z")]
Ticker = Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9^][A-Za-z0-9._\-/^=:]{0,31}\Z",
                                      description="1 to 32 of letters, digits and . _ - / ^ = : (BRK.B, ES=F, ^GSPC, EUR/USD)")]
TradeId = Annotated[str, msgspec.Meta(pattern=r"^[\x21-\x7e]{1,64}\Z", description="1 to 64 printable ASCII characters, no spaces")]


LARGEST = 1e15
"""The largest magnitude a price, size or volume may have: beyond every market's, and far enough from float overflow that
squares and products of them (variances, price x volume) stay finite."""


def _require_finite(struct: msgspec.Struct, fields: tuple[str, ...]) -> None:
    # JSON cannot carry NaN but msgpack can, and one NaN (or an overflow to infinity) poisons an EMA forever.
    for name in fields:
        value = getattr(struct, name)
        if value is not None and not (math.isfinite(value) and abs(value) < LARGEST):
            raise ValueError(f"`{name}` must be a finite number below 1e15 in size, got {value!r}")


class Tick(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One market event: a trade (price, size), a quote (bid/ask), or both."""

    ticker: Ticker
    ts: Nanoseconds
    price: float | None = None
    size: NonNegative | None = None
    bid: float | None = None
    ask: float | None = None
    bid_size: NonNegative | None = None
    ask_size: NonNegative | None = None
    trade_id: TradeId | None = None
    implied_volatility: Annotated[float, msgspec.Meta(gt=0)] | None = None
    """Annualised implied volatility of the ticker's options, when the feed carries one (prices option alerts)."""

    def __post_init__(self) -> None:
        _require_finite(self, ("price", "size", "bid", "ask", "bid_size", "ask_size", "implied_volatility"))
        if self.price is None and (self.bid is None or self.ask is None):
            raise ValueError("a tick needs a trade `price` or both `bid` and `ask`")

    @property
    def is_trade(self) -> bool:
        return self.price is not None

    @property
    def is_quote(self) -> bool:
        return self.bid is not None and self.ask is not None


@state
class Bar(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """OHLCV over the half-open event-time interval [start, end)."""

    ticker: Ticker
    start: Nanoseconds
    end: Nanoseconds
    open: float
    high: float
    low: float
    close: float
    volume: NonNegative = 0.0
    trades: Annotated[int, msgspec.Meta(ge=0)] = 0
    vwap: float | None = None
    implied_volatility: Annotated[float, msgspec.Meta(gt=0)] | None = None

    def __post_init__(self) -> None:
        _require_finite(self, ("open", "high", "low", "close", "volume", "vwap", "implied_volatility"))
        if self.end <= self.start:
            raise ValueError(f"`end` ({self.end}) must be after `start` ({self.start})")


@state
class Lineage(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The content hashes that tie a result or an alert to exactly what produced it."""

    pack_sha: Sha256
    indicator_set_sha: Sha256
    model_config_sha: Sha256
    policy_sha: Sha256
    data_sha: Sha256 | None = None
    artifact_sha: Sha256 | None = None


class _AlertBase(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="instrument"
):
    alert_id: Annotated[str, msgspec.Meta(min_length=1)]
    timestamp: datetime
    model_id: Annotated[str, msgspec.Meta(min_length=1)]
    action: Literal["BUY", "SELL", "HOLD"]
    ticker: Ticker
    quantity: NonNegative
    confidence: Probability
    position_size: Annotated[float, msgspec.Meta(ge=0.0)] | None = None
    """The share of equity the policy commits to the trade (`engine.policy.position_size`)."""
    entry_price: float
    stop_loss: float | None = None
    take_profit: float | None = None
    urgency: Literal["immediate", "day", "good_till"] = "day"
    valid_until: datetime
    lineage: Lineage
    received_at: datetime
    """When the data that closed the signal's bar reached the flow."""
    emitted_at: datetime
    """When the flow handed the alert to the sink."""
    intent: Literal["open", "close"] = "open"
    """Opens a position, or closes the one an earlier alert of the model opened."""
    reason: str = "entry"
    """``entry``, or why a position closes: stop_loss, take_profit, time."""
    resolution: str | None = None
    """How the conflict rule decided, when several models signalled this ticker at this bar."""
    bar_state: Literal["closed", "provisional"] = "closed"
    """``provisional`` when a model evaluated inside its bars decided on the bar so far (`timestamp` is the end of the
    evaluation interval), ``closed`` at a bar's close."""

    def __post_init__(self) -> None:
        _require_finite(self, ("entry_price", "stop_loss", "take_profit"))
        for name in ("timestamp", "valid_until", "received_at", "emitted_at"):
            if getattr(self, name).tzinfo is None:
                raise ValueError(f"`{name}` must carry a timezone (UTC)")


@state
class StockAlert(_AlertBase, frozen=True, tag="stock"):
    """A signal on a stock or ETF: buy or sell `quantity` shares."""


@state
class OptionAlert(_AlertBase, frozen=True, tag="option"):
    """A signal on an option contract of `underlying`."""

    underlying: Ticker
    option_type: Literal["call", "put"]
    strike: Annotated[float, msgspec.Meta(gt=0)]
    expiration: date
    contracts: Annotated[int, msgspec.Meta(ge=0)]
    premium: NonNegative | None = None
    """Black-Scholes estimate of one option's price (per share) at the signal."""
    volatility: NonNegative | None = None
    volatility_source: Literal["implied", "realised"] | None = None
    """Whether ``volatility`` came from the feed's implied volatility or, absent one, the underlying's realised one."""


@state
class FutureAlert(_AlertBase, frozen=True, tag="future"):
    """A signal on a futures contract, naming the contract month per the roll strategy."""

    contract: Annotated[str, msgspec.Meta(min_length=1)]
    contract_month: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])\Z")]
    contracts: Annotated[int, msgspec.Meta(ge=0)]
    contract_code: str | None = None
    """The exchange symbol, root + month code + year (ESH27)."""


Alert = Union[StockAlert, OptionAlert, FutureAlert]

T = TypeVar("T")
"""Type of the decoded message."""

_json_encoder = msgspec.json.Encoder()
_msgpack_encoder = msgspec.msgpack.Encoder()
_decoders: dict[tuple[str, object], msgspec.json.Decoder | msgspec.msgpack.Decoder] = {}
_DECODER_TYPES = {"JSON": msgspec.json.Decoder, "msgpack": msgspec.msgpack.Decoder}


def encode_json(message: msgspec.Struct) -> bytes:
    """Encode a message as JSON."""
    return _json_encoder.encode(message)


def encode_msgpack(message: msgspec.Struct) -> bytes:
    """Encode a message as msgpack."""
    return _msgpack_encoder.encode(message)


def decode_json(data: bytes | str, kind: type[T]) -> T:
    """Decode JSON into ``kind`` (``Tick``, ``Bar``, ``Alert``, ...), or raise one `DecodeError`."""
    return _decode("JSON", data, kind)


def decode_msgpack(data: bytes, kind: type[T]) -> T:
    """Decode msgpack into ``kind`` (``Tick``, ``Bar``, ``Alert``, ...), or raise one `DecodeError`."""
    return _decode("msgpack", data, kind)


def _decode(form: str, data: bytes | str, kind: type[T]) -> T:
    decoder = _decoders.get((form, kind))
    if decoder is None:  # one decoder per (format, type), built once and reused
        decoder = _decoders[form, kind] = _DECODER_TYPES[form](kind)
    try:
        return decoder.decode(data)
    except msgspec.DecodeError as error:
        name = "Alert" if kind is Alert else getattr(kind, "__name__", str(kind))
        raise DecodeError(f"invalid {name} {form}: {error}") from None
