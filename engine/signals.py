"""Signals: one model's live policy over its universe, from scored bars to entries and exits.

The backtest kernel applies the same rules (`engine.policy`) to whole histories; this
is their live form, one bar close at a time, with the state a trader's desk keeps:

- **Exits first.** A trade entered at a bar's close fills at the next bar's open by
  its entry type (a limit or stop order that does not fill is cancelled). From then
  on each bar is checked against the stop-loss and take-profit, and a trade held
  ``hold_bars`` bars is closed by time. Exits are signalled whatever else happens,
  the kill switch included: a trader must hear that a position should be closed.
- **Entries** at the close, in allowed hours, when the probability passes the
  threshold; the universe's candidates are ranked by confidence ``|p - 0.5|`` and
  the best ``ceil(top_pct% x N)`` fill the free slots of ``max_positions``. A ticker
  in a position, a (ticker, side) in its cooldown, a model past its trades for the
  session date, or a killed model gives no entry.

Cooldowns and counts run on event time and session dates, never the wall clock, so
a replay at any speed and a resumed run take the same decisions. The whole state is
plain values, so the dataflow can snapshot it.
"""

from __future__ import annotations

import math

import msgspec

from engine.policy import (
    EXIT_REASONS,
    EXIT_TIME,
    entry_direction,
    entry_fill,
    exit_levels,
    exit_on_bar,
    hour_allowed,
)

__all__ = ["Scored", "Signal", "Signals"]


class Scored(msgspec.Struct, frozen=True, array_like=True):
    """One model's view of one closed bar of one ticker."""

    model: str
    ticker: str
    start: int
    end: int
    open: float
    high: float
    low: float
    close: float
    probability: float
    """Calibrated probability; NaN while the features warm up."""
    hour: int
    """Exchange-local hour of the bar's start, as the sweep reads it."""
    session: int
    """The bar's session date (day number)."""
    volatility: float
    """Annualised volatility known at the close (implied when the feed gives one, else realised); NaN if unknown."""
    implied: bool
    received_at: int
    """Wall-clock nanoseconds at which the data that closed the bar arrived."""
    peers: int
    """How many models scored a bar of this ticker ending at ``end`` (the conflict step waits for them all)."""


class Signal(msgspec.Struct, frozen=True, array_like=True):
    """An entry or an exit the policy decided at a bar's close."""

    scored: Scored
    direction: int
    """+1 buys, -1 sells; an exit's direction is that of the order that closes the trade."""
    intent: str
    """``open`` or ``close``."""
    reason: str
    """``entry`` or an exit reason (stop_loss, take_profit, time)."""
    stop: float
    target: float
    confidence: float
    """The probability behind the order's side: ``p`` for a one-sided model or a buy, ``1 - p`` for a two-sided sell."""


class _Position(msgspec.Struct, array_like=True):
    direction: int
    reference: float  # the signal bar's close: the limit or stop price
    entry: float = math.nan  # NaN until the next bar fills it
    stop: float = math.nan
    target: float = math.nan
    held: int = 0


class Signals:
    """The policy state of one model over its universe: positions, cooldowns, trades per session."""

    __slots__ = ("parameters", "cooldown", "max_trades", "positions", "cooldowns", "session", "trades", "killed")

    def __init__(self, parameters: dict[str, float], *, cooldown_minutes: int, max_trades_per_day: int) -> None:
        self.parameters = {name: float(value) for name, value in parameters.items()}
        self.cooldown = cooldown_minutes * 60_000_000_000
        self.max_trades = max_trades_per_day
        self.positions: dict[str, _Position] = {}
        self.cooldowns: dict[tuple[str, int], int] = {}  # (ticker, side) -> event time it ends
        self.session = -1
        self.trades = 0
        self.killed = False

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)

    def close(self, rows: list[Scored], universe: int) -> list[Signal]:
        """The exits and entries at one bar close of the universe (``rows``: the tickers that had a bar)."""
        signals = [signal for row in rows if (signal := self._exit(row)) is not None] if self.positions else []
        if self.killed:
            return signals
        p = self.parameters
        session = max([row.session for row in rows])
        if session != self.session:
            self.session, self.trades = session, 0
        candidates = []
        hours, threshold, side = int(p["hours_mask"]), p["threshold"], int(p["side"])
        for row in rows:
            if row.probability != row.probability or not hour_allowed(row.hour, hours):
                continue
            direction = entry_direction(row.probability, threshold, side)
            if direction == 0 or row.ticker in self.positions or self.cooldowns.get((row.ticker, direction), -1) > row.end:
                continue
            candidates.append((-abs(row.probability - 0.5), row.ticker, direction, row))
        if not candidates:  # most bar closes: nothing to rank
            return signals
        candidates.sort(key=lambda c: (c[0], c[1]))
        room = min(
            math.ceil(p["top_pct"] / 100.0 * universe - 1e-9),
            int(p["max_positions"]) - len(self.positions),
            self.max_trades - self.trades,
        )
        for _, ticker, direction, row in candidates[: max(room, 0)]:
            stop, target = exit_levels(direction, row.close, p["stop_loss"], p["take_profit"])
            self.positions[ticker] = _Position(direction, row.close)
            self.cooldowns[ticker, direction] = row.end + self.cooldown
            self.trades += 1
            signals.append(Signal(row, direction, "open", "entry", stop, target, self._confidence(row.probability, direction)))
        return signals

    def _exit(self, row: Scored) -> Signal | None:
        position = self.positions.get(row.ticker)
        if position is None:
            return None
        p = self.parameters
        first = position.entry != position.entry
        if first:  # the bar after the signal: the order fills at its open, or is cancelled
            fill = entry_fill(int(p["entry_type"]), position.direction, position.reference, row.open, row.high, row.low, p["slippage"])
            if fill != fill:
                del self.positions[row.ticker]
                return None
            position.entry = fill
            position.stop, position.target = exit_levels(position.direction, fill, p["stop_loss"], p["take_profit"])
        position.held += 1
        reason, _ = exit_on_bar(position.direction, position.stop, position.target, row.open, row.high, row.low, not first)
        if reason == 0 and p["hold_bars"] > 0 and position.held >= p["hold_bars"]:
            reason = EXIT_TIME
        if reason == 0:
            return None
        del self.positions[row.ticker]
        confidence = self._confidence(row.probability, position.direction) if row.probability == row.probability else 0.0
        return Signal(row, -position.direction, "close", EXIT_REASONS[reason], position.stop, position.target, confidence)

    def _confidence(self, probability: float, direction: int) -> float:
        return probability if self.parameters["side"] != 0 or direction > 0 else 1.0 - probability
