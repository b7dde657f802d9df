"""The paper broker: alerts in, orders filled against the market data that follows them, an account out.

An entry alert becomes an order, a close alert an order against the position its
model opened. An order fills only on data that starts at or after the alert's
timestamp (the close of the bar it was decided at), never on the bar it was decided
on. Two fill conventions:

- ``backtest`` fills as the research backtest does, through the same rules of
  `engine.policy`: entries by the model's entry type on the next bar (`entry_fill`),
  with the policy's slippage; stop and target resting from the fill (`exit_levels`,
  `exit_on_bar`); a time stop at the next open; the policy's commission on the
  committed capital each way; sizes as the policy's share of equity, fractional.
  Under it a replay's trades are the backtest's: the parity convention.
- ``market`` fills as a broker would: a market order at the next quote's ask (buys)
  or bid (sells) where the store holds quotes, else the next trade, else the next
  bar's open, ``slippage_bps`` (or ``slippage_ticks``) worse; a limit touched fills
  with ``limit_fill_probability`` (seeded per order, so a run is deterministic); an
  order takes at most ``participation`` of a bar's volume and fills the rest on the
  following bars until its ``valid_until``; whole shares and contracts; fees per
  instrument.

Instruments: stocks; options at the Black-Scholes premium of the alert's contract at
fill time (`engine.options`, the alert's volatility), settled at intrinsic value at
their expiry; futures with a multiplier, a tick size, initial margin held against
cash and per-contract fees, in the contract month the alert names, rolled to the
next one by the model's rule (`engine.alerts.contract_month`) while held. A roll
sells the old contract and buys the new one at the bar's close: under the market
convention it pays both legs' slippage and fees, under the backtest convention
nothing (the research backtest trades one continuous series).

The account (cash, positions, realised and unrealised P&L, exposure) is marked at
every bar end into an equity curve. Everything is a plain value (`Account`), so a
paper account survives a restart as a file, and an alert id seen once is never
acted on again.
"""

from __future__ import annotations

import hashlib
import math
import random
from typing import Annotated, Literal

import msgspec

from engine.alerts import contract_code, contract_month, nanoseconds
from engine.calendar import EPOCH, ExchangeClock
from engine.models import FutureSettings, InstrumentSettings
from engine.options import option_price, years_to_expiry
from engine.policy import (
    ENTRY_TYPES,
    EXIT_EXPIRY,
    EXIT_NONE,
    EXIT_REASONS,
    EXIT_STOP,
    EXIT_TAKE,
    Policy,
    entry_fill,
    exit_levels,
    exit_on_bar,
    fill_price,
)
from engine.schemas import Alert, Bar, FutureAlert, OptionAlert, Tick

__all__ = ["Fees", "FillSettings", "Fill", "Position", "Order", "Trade", "Account", "Broker", "Roll", "rolls_of", "FUTURE_MULTIPLIERS"]

NonNegative = Annotated[float, msgspec.Meta(ge=0.0)]
FUTURE_MULTIPLIERS = {
    "ES": 50.0, "MES": 5.0, "NQ": 20.0, "MNQ": 2.0, "YM": 5.0, "MYM": 0.5, "RTY": 50.0, "M2K": 5.0, "CL": 1000.0, "MCL": 100.0,
    "GC": 100.0, "MGC": 10.0, "SI": 5000.0, "NG": 10000.0, "ZN": 1000.0, "ZB": 1000.0, "ZF": 1000.0, "ZT": 2000.0, "6E": 125000.0,
}  # fmt: skip
"""Dollars per point of the common futures roots; another root needs ``multiplier`` in the fill settings."""


class Fees(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the ``market`` convention charges per fill (a retail broker's schedule by default)."""

    per_share: NonNegative = 0.005
    minimum: NonNegative = 1.0
    """The least a stock fill costs."""
    per_option_contract: NonNegative = 0.65
    per_future_contract: NonNegative = 2.25


class FillSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How the paper broker fills: recorded with every paper run, overridable per run (``--fill name=value``)."""

    convention: Literal["backtest", "market"] = "market"
    slippage_bps: Annotated[float, msgspec.Meta(ge=0.0, le=1000.0)] | None = None
    """Market orders and stops, this much worse; unset: the policy's slippage."""
    slippage_ticks: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    """Futures: this many ticks worse, on top of the bps."""
    tick_size: Annotated[float, msgspec.Meta(gt=0.0)] = 0.25
    """A futures contract's price increment."""
    limit_fill_probability: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    """The chance a limit touched but not crossed fills (a queue behind it)."""
    participation: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 1.0
    """The most of a bar's volume one order may take; the rest waits for the next bars."""
    fees: Fees = Fees()
    cash: Annotated[float, msgspec.Meta(gt=0.0)] = 100_000.0
    initial_margin: Annotated[float, msgspec.Meta(gt=0.0, le=1.0)] = 0.1
    """Futures: the share of a position's notional held against cash."""
    multiplier: Annotated[float, msgspec.Meta(gt=0.0)] | None = None
    """Futures: dollars per point; unset: `FUTURE_MULTIPLIERS` by root."""
    option_multiplier: Annotated[float, msgspec.Meta(gt=0.0)] = 100.0
    lateness_ms: Annotated[int, msgspec.Meta(ge=0)] = 1000
    """A market order fills on a tick no earlier than this after the alert's bar end (when the flow decided it)."""
    seed: int = 0


class Fill(msgspec.Struct, frozen=True, kw_only=True):
    """One execution."""

    alert_id: str
    model: str
    ticker: str
    instrument: str
    """What was traded: the ticker, an option contract or a futures contract code."""
    side: int
    """+1 bought, -1 sold."""
    quantity: float
    price: float
    fee: float
    at: int
    """Event time of the data it filled on (ns)."""
    reference: float
    """The alert's price at an entry, the underlying's at an exit: what the fill is measured against."""
    reason: str


class Position(msgspec.Struct, kw_only=True):
    """An open trade of one model in one ticker."""

    model: str
    ticker: str
    instrument: str
    direction: int
    """The model's view: +1 long the ticker, -1 short (an option bought on a down view is a put, held long)."""
    sign: int
    """Of its P&L in its own price: the direction for the ticker itself, +1 for an option bought."""
    quantity: float
    entry_price: float
    entry_at: int
    entry_alert: str
    multiplier: float
    committed: float
    """The cash (or margin) the entry took, for the return on committed capital."""
    fees: float
    stop: float
    target: float
    entered_bar: int
    """Start of the bar it filled on: stops are not checked against the open of that bar."""
    mark: float
    underlying: float
    kind: int = 0
    """+1 a call, -1 a put, 0 the ticker or future itself."""
    strike: float = math.nan
    expiry: int = -1
    """Option expiry as a day number."""
    volatility: float = math.nan
    margin: float = 0.0
    contract: str = ""
    """A future's root (ES), with ``month`` (YYYY-MM) the contract held: what a roll moves on."""
    month: str = ""


class Order(msgspec.Struct, kw_only=True):
    """An alert waiting for the data that fills it."""

    alert: Alert
    direction: int
    """Of the order: +1 buys, -1 sells (an option close sells the contract)."""
    after: int
    """The first event time it may fill at (ns)."""
    valid_until: int
    wanted: float
    """Units still to fill; NaN: sized at the first fill."""
    filled: float = 0.0


class Trade(msgspec.Struct, frozen=True, kw_only=True):
    """A round trip the broker closed."""

    model: str
    ticker: str
    instrument: str
    direction: int
    quantity: float
    entry_at: int
    entry_price: float
    exit_at: int
    exit_price: float
    reason: str
    pnl: float
    """Dollars, after fees."""
    net_return: float
    """On the committed capital, after fees: the backtest's `Trade.net_return`."""
    fees: float
    entry_alert: str
    exit_alert: str | None


class Account(msgspec.Struct, kw_only=True):
    """A paper account as a value: what a restart reloads."""

    cash: float
    settings: FillSettings
    positions: dict[str, Position] = {}
    orders: list[Order] = []
    fills: list[Fill] = []
    trades: list[Trade] = []
    equity: list[tuple[int, float, float]] = []
    """(bar end, equity, exposure as a share of equity) at every bar end."""
    seen: list[str] = []
    """Alert ids acted on, in arrival order."""
    notes: list[str] = []
    """Alerts not acted on, with why (no position to close, nothing affordable, expired unfilled)."""

    @property
    def realised(self) -> float:
        return sum(trade.pnl for trade in self.trades)


_RESTING = frozenset({EXIT_REASONS[EXIT_STOP], EXIT_REASONS[EXIT_TAKE], EXIT_REASONS[EXIT_EXPIRY]})
"""Exits the broker acts on itself, from the fill on: a close alert for one only confirms it."""


Roll = tuple[str, str]
"""How a model's futures roll: the contract it trades (``front`` or ``back``) and the rule (``volume`` or ``calendar``)."""


def rolls_of(instruments: dict[str, InstrumentSettings]) -> dict[str, Roll]:
    """Each model's roll from its instrument settings: futures on the front or back month roll; a specific month is held."""
    return {model: (settings.contract_month, settings.roll_strategy) for model, settings in instruments.items()
            if isinstance(settings, FutureSettings) and settings.contract_month != "specific"}  # fmt: skip


def _key(model: str, ticker: str) -> str:
    return f"{model}|{ticker}"


class Broker:
    """Fills a model's alerts against the bars (and ticks) that follow them; ``account`` is its whole state."""

    def __init__(self, policies: dict[str, Policy], clock: ExchangeClock, account: Account, rolls: dict[str, Roll] | None = None) -> None:
        self.policies = policies
        self.clock = clock
        self.account = account
        self.settings = account.settings
        self.rolls = rolls or {}
        """Model -> how its futures roll (`rolls_of`); a model absent holds its contract."""
        self._seen = set(account.seen)

    @classmethod
    def open(cls, policies: dict[str, Policy], clock: ExchangeClock, settings: FillSettings, rolls: dict[str, Roll] | None = None) -> Broker:
        """A fresh account with the settings' cash."""
        return cls(policies, clock, Account(cash=settings.cash, settings=settings), rolls)

    # -- alerts ------------------------------------------------------------------

    def knows(self, alert_id: str) -> bool:
        """True for an alert id acted on before."""
        return alert_id in self._seen

    def on_alert(self, alert: Alert) -> bool:
        """Queue an alert's order; False (and nothing done) for an id acted on before. A model the broker does not trade raises."""
        if alert.alert_id in self._seen:
            return False
        if alert.model_id not in self.policies:
            raise KeyError(f"{alert.model_id}: not a model of this paper run")
        self._seen.add(alert.alert_id)
        self.account.seen.append(alert.alert_id)
        key = _key(alert.model_id, alert.ticker)
        after = nanoseconds(alert.timestamp)
        if alert.intent == "close":
            position = self.account.positions.get(key)
            if position is None:
                self._note(alert, "no open position to close (already left at its stop or target, or never filled)")
                return True
            if alert.reason in _RESTING:
                self._note(alert, f"the position's own {alert.reason} order acts on it at the broker")  # resting since its fill
                return True
            self.account.orders.append(Order(alert=alert, direction=-position.sign, after=after, valid_until=nanoseconds(alert.valid_until),
                                             wanted=position.quantity))  # fmt: skip
            return True
        waiting = [o for o in self.account.orders if _key(o.alert.model_id, o.alert.ticker) == key]
        leaving = any(o.alert.intent == "close" for o in waiting)  # a time stop leaves at the open, before this entry fills
        if any(o.alert.intent == "open" for o in waiting) or (key in self.account.positions and not leaving):
            self._note(alert, "already in a position or an order on this ticker")
            return True
        direction = 1 if alert.action == "BUY" else -1
        if isinstance(alert, OptionAlert):
            direction = 1  # an option is bought to open, a call or a put
        self.account.orders.append(Order(alert=alert, direction=direction, after=after, valid_until=nanoseconds(alert.valid_until),
                                         wanted=math.nan))  # fmt: skip
        return True

    # -- market data -------------------------------------------------------------

    def on_bar(self, bar: Bar, ticks: list[Tick] | None = None) -> None:
        """One bar of one ticker, with the ticks inside it when the store has them: fills, stops, marks."""
        account = self.account
        waiting = sorted((o for o in account.orders if o.alert.ticker == bar.ticker), key=lambda o: o.alert.intent != "close")
        for order in waiting:  # exits first: a time stop frees the ticker for an entry at the same open
            if bar.start < order.after:
                continue  # the bar it was decided on, or earlier: never fill on data before the alert
            if bar.start >= order.valid_until:
                self._drop(order, "expired unfilled at its valid_until")
                continue
            if order.alert.intent == "open":
                self._enter(order, bar, ticks)
            else:
                self._exit(order, bar, ticks)
        for key, position in list(account.positions.items()):
            if position.ticker != bar.ticker:
                continue
            self._inside(key, position, bar)

    def mark(self, at: int) -> None:
        """Record the equity and exposure at ``at`` (a bar end), after every ticker's bar of it."""
        equity = self.equity()
        exposure = sum(abs(p.quantity * p.multiplier * p.mark) for p in self.account.positions.values())
        self.account.equity.append((at, equity, exposure / equity if equity > 0 else math.inf))

    def equity(self) -> float:
        value = self.account.cash
        for p in self.account.positions.values():
            if p.margin > 0.0:  # a future: nothing paid for it, its P&L is what counts
                value += p.sign * p.quantity * p.multiplier * (p.mark - p.entry_price)
            else:
                value += p.sign * p.quantity * p.multiplier * p.mark
        return value

    # -- entries -----------------------------------------------------------------

    def _enter(self, order: Order, bar: Bar, ticks: list[Tick] | None) -> None:
        alert, settings = order.alert, self.settings
        policy = self.policies[alert.model_id]
        direction = 1 if alert.action == "BUY" else -1  # the view on the underlying
        if isinstance(alert, OptionAlert):
            direction = 1 if alert.option_type == "call" else -1
        underlying, at = self._entry_price(order, direction, policy, bar, ticks)
        if underlying != underlying:
            if bar.end >= order.valid_until:
                self._drop(order, "expired unfilled at its valid_until (its limit or stop was not reached)")
            return
        kind, price, strike, expiry, volatility, multiplier, instrument = 0, underlying, math.nan, -1, math.nan, 1.0, alert.ticker
        contract = month = ""
        if isinstance(alert, OptionAlert):
            kind, strike, volatility = direction, alert.strike, alert.volatility or math.nan
            expiry = (alert.expiration - EPOCH).days
            if volatility != volatility:
                self._drop(order, "no volatility to price the option with")
                return
            session, _ = self.clock.session(at)
            years = years_to_expiry(self.clock, session, at, expiry)
            price = option_price(kind, underlying, strike, years, volatility)
            if not price > 0.0 or years <= 0.0 or session > expiry:  # as the policy kernel lets such an order lapse
                self._drop(order, "its contract expired before a bar came to fill it, or is worth nothing")
                return
            price = fill_price(price, 1, self._slippage(policy)) if policy.entry_type != ENTRY_TYPES["limit"] else price
            multiplier = settings.option_multiplier
            instrument = f"{alert.underlying} {alert.expiration:%Y-%m-%d} {alert.option_type[0].upper()} {strike:g}"
        elif isinstance(alert, FutureAlert):
            multiplier = self._multiplier(alert.contract)
            instrument = alert.contract_code or f"{alert.contract} {alert.contract_month}"
            contract, month = alert.contract, alert.contract_month
        sign = 1 if kind != 0 else direction
        quantity = self._size(order, price, multiplier, bar)
        if quantity <= 0.0:
            if bar.end >= order.valid_until:
                self._drop(order, "nothing affordable or no volume left before its valid_until")
            return
        future = isinstance(alert, FutureAlert)
        notional = quantity * multiplier * price
        margin = notional * settings.initial_margin if future else 0.0
        fee = self._fee(alert, quantity, notional, policy)
        if not future and sign > 0 and notional + fee > self.account.cash + 1e-9 and settings.convention == "market":
            self._drop(order, f"cash {self.account.cash:,.2f} does not cover {notional + fee:,.2f}")
            return
        if future and margin + fee > self.available() + 1e-9:
            self._drop(order, f"margin {margin:,.2f} is more than the {self.available():,.2f} available")
            return
        self.account.cash -= fee + (0.0 if future else sign * notional)
        stop, target = exit_levels(direction, underlying, policy.stop_loss, policy.take_profit)
        key = _key(alert.model_id, alert.ticker)
        held = self.account.positions.get(key)
        if held is not None:  # a partial fill before: one position at the average price
            total = held.quantity + quantity
            held.entry_price = (held.entry_price * held.quantity + price * quantity) / total
            held.quantity, held.committed, held.fees, held.margin = total, held.committed + notional, held.fees + fee, held.margin + margin
        else:
            self.account.positions[key] = Position(
                model=alert.model_id, ticker=alert.ticker, instrument=instrument, direction=direction, sign=sign, quantity=quantity,
                entry_price=price, entry_at=at, entry_alert=alert.alert_id, multiplier=multiplier, committed=notional, fees=fee,
                stop=stop, target=target, entered_bar=bar.start, mark=price, underlying=underlying, kind=kind, strike=strike,
                expiry=expiry, volatility=volatility, margin=margin, contract=contract, month=month,
            )  # fmt: skip
        self.account.fills.append(Fill(alert_id=alert.alert_id, model=alert.model_id, ticker=alert.ticker, instrument=instrument,
                                       side=sign, quantity=quantity, price=price, fee=fee, at=at, reference=alert.entry_price,
                                       reason="entry"))  # fmt: skip
        order.filled += quantity
        if order.filled >= order.wanted - 1e-12:
            self.account.orders.remove(order)

    def _entry_price(self, order: Order, direction: int, policy: Policy, bar: Bar, ticks: list[Tick] | None) -> tuple[float, int]:
        """(the underlying's fill price on this bar for the order's entry type, when); NaN if it does not fill here."""
        settings = self.settings
        reference = order.alert.entry_price
        options = isinstance(order.alert, OptionAlert)
        slippage = 0.0 if options else self._slippage(policy)
        if settings.convention == "backtest" or policy.entry_type != ENTRY_TYPES["market"]:
            price = entry_fill(policy.entry_type, direction, reference, bar.open, bar.high, bar.low, slippage)
            if price == price and settings.convention == "market" and policy.entry_type == ENTRY_TYPES["limit"] and price == reference:
                if self._draw(order, bar) >= settings.limit_fill_probability:
                    return math.nan, bar.start  # touched, but the queue ahead of it took the volume
            return price, bar.start
        price, at = self._market(order, direction, bar, ticks)
        return fill_price(price, direction, slippage) + direction * self._tick_slippage(order.alert), at

    def _market(self, order: Order, direction: int, bar: Bar, ticks: list[Tick] | None) -> tuple[float, int]:
        """(price, when) a market order in ``direction`` meets: the next quote's ask or bid, else the next trade, else the open."""
        quote = self._first_tick(order, ticks)
        if quote is not None:
            side_price = quote.ask if direction > 0 else quote.bid
            price = side_price if side_price is not None else quote.price
            if price is not None:
                return price, quote.ts
        return bar.open, bar.start

    def _first_tick(self, order: Order, ticks: list[Tick] | None) -> Tick | None:
        """The first tick with a price at least ``lateness_ms`` after the alert's bar end: when the flow had decided it."""
        after = order.after + self.settings.lateness_ms * 1_000_000
        for tick in ticks or ():
            if tick.ts >= after and (tick.price is not None or tick.bid is not None or tick.ask is not None):
                return tick
        return None

    def _draw(self, order: Order, bar: Bar) -> float:
        digest = hashlib.sha256(f"{self.settings.seed}:{order.alert.alert_id}:{bar.start}".encode()).digest()
        return random.Random(digest).random()  # per order and bar: the same run gives the same fills in any order

    def _slippage(self, policy: Policy) -> float:
        """The fractional slippage of a market order."""
        if self.settings.convention == "backtest" or self.settings.slippage_bps is None:
            return policy.slippage
        return self.settings.slippage_bps / 10_000.0

    def _tick_slippage(self, alert: Alert) -> float:
        if self.settings.convention == "market" and isinstance(alert, FutureAlert):
            return self.settings.slippage_ticks * self.settings.tick_size
        return 0.0

    def _multiplier(self, root: str) -> float:
        if self.settings.multiplier is not None:
            return self.settings.multiplier
        return FUTURE_MULTIPLIERS[root]  # checked when the run starts (`check`)

    def _size(self, order: Order, price: float, multiplier: float, bar: Bar) -> float:
        """Units to fill now: the alert's share of equity (whole units on ``market``), at most ``participation`` of the bar's volume."""
        settings = self.settings
        if order.wanted != order.wanted:  # the first fill sizes the whole order on the equity of the moment
            size = order.alert.position_size if order.alert.position_size is not None else 0.0
            order.wanted = size * self.equity() / (price * multiplier)
            if settings.convention == "market":
                order.wanted = math.floor(order.wanted + 1e-9)
        left = order.wanted - order.filled
        if settings.convention == "market" and settings.participation < 1.0:
            left = min(left, math.floor(settings.participation * bar.volume))
        return max(left, 0.0)

    def _fee(self, alert: Alert, quantity: float, notional: float, policy: Policy) -> float:
        fees = self.settings.fees
        if self.settings.convention == "backtest":
            return policy.commission * notional
        if isinstance(alert, OptionAlert):
            return fees.per_option_contract * quantity
        if isinstance(alert, FutureAlert):
            return fees.per_future_contract * quantity
        return max(fees.per_share * quantity, fees.minimum)

    def available(self) -> float:
        """Cash not held as futures margin."""
        return self.account.cash - sum(p.margin for p in self.account.positions.values())

    # -- exits -------------------------------------------------------------------

    def _exit(self, order: Order, bar: Bar, ticks: list[Tick] | None) -> None:
        alert = order.alert
        key = _key(alert.model_id, alert.ticker)
        position = self.account.positions.get(key)
        if position is None:
            self._drop(order, "its position left before the order filled")
            return
        policy = self.policies[alert.model_id]
        underlying, at = self._market(order, -position.direction, bar, ticks) if self.settings.convention == "market" else (bar.open, bar.start)
        price = self._value(position, underlying, at)
        price = fill_price(price, -position.sign, self._slippage(policy))
        self._close(key, position, price, underlying, at, alert.reason, alert.alert_id)
        self.account.orders.remove(order)

    def _inside(self, key: str, position: Position, bar: Bar) -> None:
        """A resting stop or target against the bar, an option's expiry at its close, then the mark."""
        policy = self.policies[position.model]
        reason, level = exit_on_bar(position.direction, position.stop, position.target, bar.open, bar.high, bar.low,
                                    bar.start > position.entered_bar)  # fmt: skip
        if reason != EXIT_NONE:
            at = bar.start if level == bar.open else bar.end
            price = self._value(position, level, bar.start if level == bar.open else bar.end)
            price = fill_price(price, -position.sign, self._slippage(policy))
            self._close(key, position, price, level, at, EXIT_REASONS[reason], None)
            return
        if position.contract and position.model in self.rolls:
            self._roll(position, bar)
        position.underlying = bar.close
        position.mark = self._value(position, bar.close, bar.end)
        if position.kind != 0 and self._years(position, bar.end) <= 0.0:
            self._close(key, position, position.mark, bar.close, bar.end, EXIT_REASONS[EXIT_EXPIRY], None)  # intrinsic value, no spread to cross

    def _roll(self, position: Position, bar: Bar) -> None:
        """Move a held future to the contract its model's rule trades at this bar's session, when that is another."""
        which, rule = self.rolls[position.model]
        session, _ = self.clock.session(bar.end)
        month = contract_month(position.contract, session, which, rule)
        if f"{month:%Y-%m}" == position.month:
            return
        market = self.settings.convention == "market"
        slippage = self._slippage(self.policies[position.model]) if market else 0.0
        sold, bought = fill_price(bar.close, -position.sign, slippage), fill_price(bar.close, position.sign, slippage)
        fee = self._exit_fee(position) if market else 0.0  # each leg: the per-contract fee
        code = contract_code(position.contract, month)
        for instrument, side, price in ((position.instrument, -position.sign, sold), (code, position.sign, bought)):
            self.account.fills.append(Fill(alert_id=f"{position.entry_alert}:roll:{month:%Y-%m}", model=position.model, ticker=position.ticker,
                                           instrument=instrument, side=side, quantity=position.quantity, price=price, fee=fee, at=bar.end,
                                           reference=bar.close, reason="roll"))  # fmt: skip
        # One series of prices carries both contracts: the legs' spread moves the entry, so the trade's P&L pays it.
        position.entry_price += bought - sold
        position.fees += 2 * fee
        self.account.cash -= 2 * fee
        position.instrument, position.month = code, f"{month:%Y-%m}"

    def _years(self, position: Position, at: int) -> float:
        session, _ = self.clock.session(at)
        return years_to_expiry(self.clock, session, at, position.expiry)

    def _value(self, position: Position, underlying: float, at: int) -> float:
        """The position's price per unit when its underlying is at ``underlying`` at ``at``."""
        if position.kind == 0:
            return underlying
        return option_price(position.kind, underlying, position.strike, self._years(position, at), position.volatility)

    def _close(self, key: str, position: Position, price: float, underlying: float, at: int, reason: str, alert_id: str | None) -> None:
        account = self.account
        policy = self.policies[position.model]
        notional = position.quantity * position.multiplier * price
        fee = policy.commission * position.committed if self.settings.convention == "backtest" else self._exit_fee(position)
        gain = position.sign * position.quantity * position.multiplier * (price - position.entry_price)
        if position.margin > 0.0:
            account.cash += gain - fee
        else:
            account.cash += position.sign * notional - fee
        pnl = gain - position.fees - fee
        account.trades.append(Trade(model=position.model, ticker=position.ticker, instrument=position.instrument,
                                    direction=position.direction, quantity=position.quantity, entry_at=position.entry_at,
                                    entry_price=position.entry_price, exit_at=at, exit_price=price, reason=reason, pnl=pnl,
                                    net_return=pnl / position.committed if position.committed > 0 else 0.0,
                                    fees=position.fees + fee, entry_alert=position.entry_alert, exit_alert=alert_id))  # fmt: skip
        account.fills.append(Fill(alert_id=alert_id or f"{position.entry_alert}:{reason}", model=position.model, ticker=position.ticker,
                                  instrument=position.instrument, side=-position.sign, quantity=position.quantity, price=price, fee=fee,
                                  at=at, reference=underlying, reason=reason))  # fmt: skip
        del account.positions[key]

    def _exit_fee(self, position: Position) -> float:
        fees = self.settings.fees
        if position.kind != 0:
            return fees.per_option_contract * position.quantity
        if position.margin > 0.0:
            return fees.per_future_contract * position.quantity
        return max(fees.per_share * position.quantity, fees.minimum)

    def _drop(self, order: Order, why: str) -> None:
        self.account.orders.remove(order)
        self._note(order.alert, why)

    def _note(self, alert: Alert, why: str) -> None:
        self.account.notes.append(f"{alert.alert_id}: {why}")


