"""Policy rules: when a score becomes a trade, and when a trade ends.

These few compiled functions are the only place the rules live. The sweep's
backtest kernel inlines them, and the per-ticker pipeline of the live flow calls
them, so a backtest and a replay of the same bars take the same decisions.

The rules, in the order a bar meets them:

- **Entry** at a bar's close, only in an allowed exchange-local hour: in the
  strategy's direction when the probability that its trade pays reaches the
  threshold; a two-sided (up/down) model buys at the threshold and sells short at
  ``1 - threshold``. The order fills at the next bar's open, moved
  against the trader by the slippage.
- **Entry type**: a market order fills at the open; a limit order at the signal
  bar's close or better (the open when it gaps through), only if the bar trades
  there; a stop order at the close or worse, only if the bar trades through it.
  Limit fills do not slip: the order sets the price.
- **Stop-loss and take-profit** are fractions of the entry fill, watched against
  each bar's high and low from the entry bar on. A bar that opens beyond a level
  (a gap) exits at its open. When one bar touches both levels its path inside the
  bar is unknown; the stop is taken first, the pessimistic reading.
- **Time stop**: a trade still open ``hold_bars`` bars after its entry leaves at
  that bar's open.
- **Sizing**: an entry commits ``position_size`` of equity; with ``size_by_confidence``
  the share grows linearly with the order's confidence, from nothing at 0.5 to the
  whole of it at ``confidence_cap`` and above. Entries stop where the open trades
  would commit more than ``max_exposure``.
- **Options**: an option model buys a call on an up signal and a put on a down
  one (`engine.options` picks the strike and prices it). Slippage then applies to
  the premium. Stop-loss and take-profit stay on the underlying, so that they mean
  the same for every instrument of a pack; the option leaves at its value there. A
  contract still held when it expires settles at its intrinsic value.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated

import msgspec
import numpy as np

from engine._jit import helper
from engine.errors import ConfigError
from engine.snapshot import state

__all__ = [
    "EXIT_NONE",
    "Policy",
    "PARAMETERS",
    "SIDES",
    "EXIT_STOP",
    "EXIT_TAKE",
    "EXIT_TIME",
    "EXIT_END",
    "EXIT_EXPIRY",
    "EXIT_REASONS",
    "ALL_DAY",
    "hours_mask",
    "entry_direction",
    "hour_allowed",
    "fill_price",
    "ENTRY_TYPES",
    "entry_fill",
    "exit_levels",
    "exit_on_bar",
    "position_size",
]

SIDES = {"long": 1, "short": -1, "both": 0}
"""Which directions a configuration may trade, as the rules encode them."""

EXIT_NONE, EXIT_STOP, EXIT_TAKE, EXIT_TIME, EXIT_END, EXIT_EXPIRY = 0, 1, 2, 3, 4, 5
EXIT_REASONS = {EXIT_STOP: "stop_loss", EXIT_TAKE: "take_profit", EXIT_TIME: "time", EXIT_END: "end_of_data", EXIT_EXPIRY: "expiry"}
ALL_DAY = (1 << 24) - 1
ENTRY_TYPES = {"market": 0, "limit": 1, "stop": 2}


@state
class Policy(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything that decides a model's trades at a bar close: one value from the sweep grid to the live step.

    The compiled kernel (`engine.book`) reads it as a row of floats in field order
    (`PARAMETERS`); ``row`` and ``from_row`` convert, so a manifest, a sweep row and the
    live step hold the same numbers.
    """

    threshold: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    hours_mask: Annotated[int, msgspec.Meta(ge=1, le=ALL_DAY)]
    """The allowed exchange-local hours as a 24-bit set (`hours_mask`)."""
    side: Annotated[int, msgspec.Meta(ge=-1, le=1)]
    """+1 long only, -1 short only, 0 both (`SIDES`)."""
    top_pct: Annotated[float, msgspec.Meta(gt=0.0, le=100.0)]
    position_size: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)]
    """The share of equity an entry commits."""
    size_by_confidence: bool
    confidence_cap: Annotated[float, msgspec.Meta(gt=0.5, le=1.0)]
    max_exposure: Annotated[float, msgspec.Meta(gt=0.0, le=10.0)]
    """The most equity the open trades may commit together."""
    stop_loss: Annotated[float, msgspec.Meta(ge=0.0)]
    """A fraction of the entry; 0 is off."""
    take_profit: Annotated[float, msgspec.Meta(ge=0.0)]
    hold_bars: Annotated[int, msgspec.Meta(ge=1)]
    max_positions: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    entry_type: Annotated[int, msgspec.Meta(ge=0, le=2)]
    """`ENTRY_TYPES`: market, limit or stop."""
    slippage: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]
    commission: Annotated[float, msgspec.Meta(ge=0.0, lt=1.0)]
    strike_score: float
    """An option model's strike rule (`engine.options.strike_score`)."""
    expiry_sessions: Annotated[int, msgspec.Meta(ge=-1)]
    """An option model's sessions to expiry; -1 trades the underlying itself."""
    cooldown_minutes: Annotated[int, msgspec.Meta(ge=0)]
    """Event-time minutes after an entry before the same (ticker, side) may enter again."""
    max_trades_per_day: Annotated[int, msgspec.Meta(ge=1)]
    """Entries per session date, over the whole universe."""

    def row(self) -> np.ndarray:
        """The kernel's configuration row."""
        return np.array([float(getattr(self, name)) for name in PARAMETERS], dtype=np.float64)

    @classmethod
    def from_row(cls, row) -> Policy:
        """The policy of a kernel row (a sweep's configuration)."""
        return cls.from_parameters(dict(zip(PARAMETERS, np.asarray(row).tolist(), strict=True)))

    @classmethod
    def from_parameters(cls, parameters: dict, where: str = "policy.parameters") -> Policy:
        """The policy of a manifest's parameters by name; `ConfigError` naming the field when one is missing or out of range."""
        missing = [name for name in PARAMETERS if name not in parameters]
        if missing:
            raise ConfigError(where, f"missing {', '.join(missing)} (written before the one policy kernel)",
                              "train the model again (`sigma train SWEEP --rows N`)")  # fmt: skip
        values = dict(parameters)
        if isinstance(values["size_by_confidence"], float):  # a kernel row's 0.0 or 1.0
            values["size_by_confidence"] = values["size_by_confidence"] != 0.0
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as error:
            raise ConfigError(where, str(error), "correct the value or train the model again") from None


PARAMETERS = Policy.__struct_fields__
"""The kernel's configuration columns, in order."""


def hours_mask(hours: Iterable[int]) -> int:
    """A 24-bit set of allowed exchange-local hours; no hours means all day."""
    mask = 0
    for hour in hours:
        mask |= 1 << hour
    return mask or ALL_DAY


@helper
def entry_direction(probability: float, threshold: float, side: int) -> int:
    """+1 to buy, -1 to sell short, 0 to stay out.

    For one side, ``probability`` is that the strategy's trade in that direction pays
    (its label); for both sides (0), that the price rises, so a low one means sell.
    """
    if side > 0:
        return 1 if probability >= threshold else 0
    if side < 0:
        return -1 if probability >= threshold else 0
    if probability >= threshold:
        return 1
    if probability <= 1.0 - threshold:
        return -1
    return 0


@helper
def hour_allowed(hour: int, mask: int) -> bool:
    """True when the exchange-local ``hour`` is in the allowed set."""
    return (mask >> hour) & 1 == 1


@helper
def fill_price(price: float, direction: int, slippage: float) -> float:
    """The price a market order in ``direction`` (+1 buy, -1 sell) gets, ``slippage`` (a fraction) worse."""
    return price * (1.0 + direction * slippage)


@helper
def entry_fill(
    entry_type: int, direction: int, reference: float, open: float, high: float, low: float, slippage: float  # noqa: A002
) -> float:
    """The entry price of an order decided at a bar whose close was ``reference``, on the next bar; NaN if unfilled."""
    if entry_type == 0:
        return fill_price(open, direction, slippage)
    if entry_type == 1:
        if direction * (open - reference) <= 0.0:
            return open
        if (direction > 0 and low <= reference) or (direction < 0 and high >= reference):
            return reference
        return float("nan")
    if direction * (open - reference) >= 0.0:
        return fill_price(open, direction, slippage)
    if (direction > 0 and high >= reference) or (direction < 0 and low <= reference):
        return fill_price(reference, direction, slippage)
    return float("nan")


@helper
def position_size(size: float, by_confidence: bool, cap: float, confidence: float) -> float:
    """The share of equity an entry commits: ``size``, or with ``by_confidence`` its share from 0.5 (none) to ``cap`` (all)."""
    if not by_confidence:
        return size
    return size * min(max((confidence - 0.5) / (cap - 0.5), 0.0), 1.0)


@helper
def exit_levels(direction: int, entry: float, stop_loss: float, take_profit: float) -> tuple[float, float]:
    """(stop, target) prices of a trade entered at ``entry``; NaN for a level that is off (0)."""
    stop = entry * (1.0 - direction * stop_loss) if stop_loss > 0.0 else float("nan")
    target = entry * (1.0 + direction * take_profit) if take_profit > 0.0 else float("nan")
    return stop, target


@helper
def exit_on_bar(
    direction: int, stop: float, target: float, open: float, high: float, low: float, gap_check: bool  # noqa: A002
) -> tuple[int, float]:
    """(reason, price) when a bar reaches the trade's stop or target (NaN levels never do), else (0, NaN).

    ``gap_check`` is false on the entry bar, whose open is the entry itself.
    """
    if direction > 0:
        if gap_check and open <= stop:
            return EXIT_STOP, open
        if low <= stop:
            return EXIT_STOP, stop
        if gap_check and open >= target:
            return EXIT_TAKE, open
        if high >= target:
            return EXIT_TAKE, target
    else:
        if gap_check and open >= stop:
            return EXIT_STOP, open
        if high >= stop:
            return EXIT_STOP, stop
        if gap_check and open <= target:
            return EXIT_TAKE, open
        if low <= target:
            return EXIT_TAKE, target
    return EXIT_NONE, float("nan")
