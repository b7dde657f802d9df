"""Signals: one model's live policy over its universe, from scored bars to entries and exits.

The policy is `engine.book`'s kernel, the one the sweep and the backtest run; this is
its live driver. At each bar close of the universe it lays the tickers' scored bars
out in universe order (NaN for a ticker without a bar), runs one `engine.book.step`
and turns the step's events into `Signal`s:

- **Exits** are signalled whatever else happens, the kill switch included: a trader
  must hear that a position should be closed. A stop or target reached inside the
  bar is signalled at its close, at the level; a time stop at the close before the
  open it leaves at.
- **Entries** at the close, for the next bar's open, with the size, stop and target
  the policy gave them; an option's with the contract the kernel chose
  (`engine.options.contract_expiry`'s expiry, the listed strike of the rule's
  delta), and its exits with the contract it holds.

Cooldowns and counts run on event time and session dates, never the wall clock, so
a replay at any speed and a resumed run take the same decisions.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np

from engine.book import CLOSE, EVENT_COLUMNS, Book, live_step
from engine.calendar import ExchangeClock
from engine.options import contract_expiry
from engine.policy import EXIT_REASONS, Policy
from engine.schemas import Bar
from engine.snapshot import state

__all__ = ["Scored", "Signal", "Signals"]


@state
class Scored(msgspec.Struct, frozen=True, array_like=True):
    """One model's view of one closed bar of one ticker."""

    model: str
    bar: Bar
    """The bar as the builder closed it: the same shape from the builder to the policy."""
    probability: float
    """Calibrated probability; NaN while the features warm up."""
    hour: int
    """Exchange-local hour of the bar's end, as the sweep reads it."""
    session: int
    """The bar's session date (day number)."""
    opened: float
    closed: float
    """The session clock (`engine.calendar.session_clock`) at the bar's open and close: what an option decays on."""
    volatility: float
    """Annualised volatility known at the close (implied when the feed gives one, else realised); NaN if unknown."""
    implied: bool
    received_at: int
    """Wall-clock nanoseconds at which the data that closed the bar arrived."""
    peers: int
    """How many models scored a bar of this ticker ending at ``end`` (the conflict step waits for them all)."""
    closes: bool = True
    """False at an evaluation point inside a bar of the model's cadence: ``bar`` is then the evaluation interval, scored
    on the features of the bar so far (provisional); True at the bar's close."""


class Signal(msgspec.Struct, frozen=True, array_like=True):
    """An entry or an exit the policy decided at a bar's close."""

    scored: Scored
    direction: int
    """+1 buys, -1 sells; an exit's direction is that of the order that closes the trade."""
    intent: str
    """``open`` or ``close``."""
    reason: str
    """``entry`` or an exit reason (stop_loss, take_profit, time, expiry)."""
    price: float
    """The underlying's price: the close an entry is decided at, the level a stop or target leaves at."""
    size: float
    """The share of equity the trade commits."""
    stop: float
    target: float
    confidence: float
    """The probability behind the order's side: ``p`` for a one-sided model or a buy, ``1 - p`` for a two-sided sell."""
    strike: float = math.nan
    """An option's listed strike: the one bought, or the one held for an exit; NaN for the ticker itself."""
    expiry: int = -1
    """An option's expiry as a day number; -1 for the ticker itself."""


@state(derived=("_config", "_index", "_events"))
class Signals:
    """The live policy state of one model over its universe: the kernel's book, and the last bar seen of each ticker."""

    __slots__ = ("policy", "universe", "book", "latest", "_config", "_index", "_events", "_per_year")

    def __init__(self, policy: Policy, universe: tuple[str, ...], sessions_per_year: float) -> None:
        self.policy = policy
        self.universe = universe
        self.book = Book(policy.max_positions, len(universe))
        self.latest: dict[str, Scored] = {}  # an exit of a ticker with no bar at this close is dated by its last one
        self._per_year = sessions_per_year
        self.rebuild()

    def rebuild(self) -> None:
        """Derive the kernel's configuration row, the universe's index and the events buffer from the policy and universe."""
        self._config = self.policy.row()
        self._index = {ticker: i for i, ticker in enumerate(self.universe)}
        # A slot can leave at the open, take a new fill and leave again inside the bar, and take an entry at the close.
        self._events = np.zeros((3 * self.policy.max_positions + 1, EVENT_COLUMNS))

    @property
    def killed(self) -> bool:
        return self.book.killed

    @killed.setter
    def killed(self, on: bool) -> None:
        self.book.killed = on

    def close(self, rows: list[Scored], clock: ExchangeClock) -> list[Signal]:
        """The exits and entries at one bar close of the universe (``rows``: the tickers that had a bar, on ``clock``'s calendar)."""
        n = len(self.universe)
        nan = math.nan
        columns = np.full((6, n), nan)  # open, high, low, close, probability, volatility
        index = self._index
        for row in rows:
            bar = row.bar
            i = index[bar.ticker]
            columns[0, i], columns[1, i], columns[2, i], columns[3, i] = bar.open, bar.high, bar.low, bar.close
            columns[4, i], columns[5, i] = row.probability, row.volatility
            self.latest[bar.ticker] = row
        first = rows[0]
        end = first.bar.end
        expiry, expires = -1, nan
        if self.policy.expiry_sessions >= 0:
            expiry, expires = contract_expiry(clock, end, self.policy.expiry_sessions)
        written = live_step(*self.book.arrays(), self._config, columns[0], columns[1], columns[2], columns[3], columns[4],
                            first.hour, first.session, end, int(first.closes), first.opened, first.closed, self._per_year, expires, float(expiry),
                            columns[5], self._events)  # fmt: skip
        signals = []
        for kind, ticker, direction, price, reason, stop, target, size, confidence, strike, day in self._events[:written].tolist():
            name = self.universe[int(ticker)]
            row = self.latest[name]
            if row.bar.end != end:  # an exit on a bar the ticker did not have: dated by this close, priced by its last
                bar = msgspec.structs.replace(row.bar, start=first.bar.start, end=end)
                row = msgspec.structs.replace(row, bar=bar, hour=first.hour, session=first.session, received_at=first.received_at)
            contract = int(day) if day == day else -1
            if kind == CLOSE:
                signals.append(Signal(row, int(direction), "close", EXIT_REASONS[int(reason)], price if price == price else row.bar.close,
                                      size, stop, target, confidence, strike, contract))  # fmt: skip
            else:
                signals.append(Signal(row, int(direction), "open", "entry", price, size, stop, target, confidence, strike, contract))
        return signals
