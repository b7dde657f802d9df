"""Screening of one ticker's ticks before they reach a bar or an indicator.

A tick that passes the schema can still be wrong: a zero or negative price, a trade
of no size, a crossed quote, the same trade delivered twice, or a bad print far from
where the ticker trades. `TickScreen.check` names the reason, so the flow can send
the tick to the dead-letter stream and count it; it never raises.

Duplicates are recognised by the trade id when the feed has one, otherwise by the
whole tick: many distinct trades share a millisecond, so the time alone is no key.
Outliers are judged against an exponentially weighted reference price and its
typical move: a print more than ``OUTLIER_MOVES`` typical moves (and at least
``outlier_jump``) away is held out. When ``CONFIRM`` such prints in a row agree with
each other, the market has moved (a split, a gap on news) and the new level is
adopted; ``check`` then reports `LEVEL_SHIFT`, which is counted. Where the new
level is a split, the bar across it starts the features afresh by the bar rule
research applies too (`engine.features.restarts`).

A crossed quote (bid above ask) is refused; a locked one (bid equal to ask) happens
in fast or thin markets and is kept, reported as `LOCKED_QUOTE` so that it is counted.
"""

from __future__ import annotations

import math
from collections import deque

from engine.snapshot import state

__all__ = ["TickScreen", "LEVEL_SHIFT", "LOCKED_QUOTE", "RESTARTED", "FLAGS", "REMARKS", "OUTLIER_MOVES", "CONFIRM"]

LEVEL_SHIFT = "level_shift"
LOCKED_QUOTE = "locked_quote"
FLAGS = frozenset((LEVEL_SHIFT, LOCKED_QUOTE))
"""What `TickScreen.check` reports of a tick it accepts."""
RESTARTED = "features_restarted"
REMARKS = frozenset((*FLAGS, "ohlc_repaired", RESTARTED))
"""What a ticker's counts hold of input kept with a remark, not refused: these flags, bars whose range was repaired, and
bars that start a model's features afresh (after a long hole, or at a jump of the price level: `engine.features.restarts`)."""
OUTLIER_MOVES = 12.0
CONFIRM = 3
_DECAY = 0.05  # weight of the newest print in the reference and its typical move: about the last 20 prints
_WARM = 20


@state
class TickScreen:
    """Per-ticker checks of trades and quotes: a reason to refuse a tick, or None."""

    __slots__ = (
        "negative_prices", "outlier_jump", "memory", "_seen", "_arrivals", "_reference", "_move", "_prints", "_suspects",
    )  # fmt: skip

    def __init__(self, *, negative_prices: bool = False, outlier_jump: float = 0.05, memory: int = 2_000_000_000) -> None:
        self.negative_prices = negative_prices
        """Futures spreads and some commodities trade below zero; equities and FX never do."""
        self.outlier_jump = outlier_jump
        """The smallest relative move that can count as a bad print, whatever the recent volatility."""
        self.memory = memory
        """Nanoseconds of event time a tick's identity is remembered for duplicate detection."""
        self._seen: set[object] = set()
        self._arrivals: deque[tuple[int, object]] = deque()  # (event time, identity) in arrival order, to forget
        self._reference = math.nan
        self._move = 0.0
        self._prints = 0
        self._suspects: list[float] = []

    def check(self, ts: int, price: float | None, size: float | None, bid: float | None, ask: float | None,
              identity: object) -> str | None:  # fmt: skip
        """The reason to refuse this tick; a flag of `FLAGS` for one accepted with a remark (a new price level, a locked
        quote); or None to accept it."""
        if price is not None and (price == 0.0 or (price < 0.0 and not self.negative_prices)):
            return "bad_price"
        locked = False
        if bid is not None and ask is not None:
            if not self.negative_prices and (bid <= 0.0 or ask <= 0.0):
                return "bad_price"
            if bid > ask:
                return "crossed_quote"
            locked = bid == ask
        if price is not None and (size is None or size <= 0.0):
            return "bad_size"
        if identity in self._seen:
            return "duplicate"
        self._seen.add(identity)
        arrivals = self._arrivals
        arrivals.append((ts, identity))
        horizon = ts - self.memory
        while arrivals[0][0] < horizon:
            self._seen.discard(arrivals.popleft()[1])
        verdict = self._judge(price) if price is not None else None
        return LOCKED_QUOTE if locked and verdict is None else verdict

    def _judge(self, price: float) -> str | None:
        reference = self._reference
        if reference != reference:
            self._reference = price
            self._prints = 1
            return None
        move = abs(math.log(abs(price / reference))) if price * reference > 0.0 else math.inf
        limit = max(self.outlier_jump, OUTLIER_MOVES * self._move) if self._prints >= _WARM else self.outlier_jump
        if move > limit:
            suspects = self._suspects
            if suspects and abs(math.log(abs(price / suspects[-1]))) > self.outlier_jump:
                suspects.clear()
            suspects.append(price)
            if len(suspects) < CONFIRM:
                return "outlier"
            suspects.clear()
            self._reference, self._move, self._prints = price, 0.0, 1
            return LEVEL_SHIFT
        self._suspects.clear()
        self._move += _DECAY * (move - self._move)
        self._reference += _DECAY * (price - reference)
        self._prints += 1
        return None
