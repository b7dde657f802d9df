"""Alerts: a policy signal dressed as the instrument a trader acts on, and the rule between models.

- **Identity.** An alert's id is made of the model, the ticker, the bar's end and the
  intent, so the same input always gives the same ids: the Redis sink writes an id
  once, however often a replay or a resumed run emits it.
- **Stocks** are bought or sold at the signal bar's close (an exit at the level it
  reached), with the size, stop and target of the policy.
- **Options**: an up signal buys a call, a down one a put; a close sells the contract. The expiration is the
  first listed expiry on or after the model's DTE target (in sessions): the session
  itself for 0DTE (index ETFs list daily expiries), Fridays up to 60 sessions out,
  the monthly third Friday beyond; a holiday moves an expiry to the session before.
  The strike carries the delta of the model's rule (`engine.options`), rounded to the
  listed grid; the premium is Black-Scholes at the feed's implied volatility or,
  absent one, the underlying's realised volatility, and the alert says which.
- **Futures** name the contract month of the roll: the front contract until its roll
  date (``volume``: the Monday of its expiry week, when volume moves to the next;
  ``calendar``: its expiry day), or the one after for ``back``. The index and rate futures cycle quarterly, the rest monthly.
- **Conflicts**: when several of a user's models signal an entry on one ticker at one
  bar close, ``first-wins`` keeps the first model in the user's order,
  ``highest-confidence`` the most confident, and ``ensemble`` the side with the larger
  summed confidence, at its mean confidence. The alert records the decision.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Literal

import msgspec

from engine.calendar import EPOCH, ExchangeClock, third_friday
from engine.models import (
    FutureSettings,
    InstrumentSettings,
    OptionSettings,
    StockSettings,
)
from engine.options import option_price, years_to_expiry
from engine.schemas import Alert, FutureAlert, Lineage, OptionAlert, StockAlert
from engine.signals import Signal

__all__ = ["alert_id", "nanoseconds", "next_bar_end", "contract_month", "contract_code", "build_alert", "resolve", "RULES"]

RULES = ("first-wins", "highest-confidence", "ensemble")
"""The conflict rules a user can choose."""
Rule = Literal["first-wins", "highest-confidence", "ensemble"]

_MONTH_CODES = "FGHJKMNQUVXZ"
_QUARTERLY = frozenset({"ES", "MES", "NQ", "MNQ", "YM", "MYM", "RTY", "M2K", "ZN", "ZB", "ZF", "ZT", "6E", "6J", "6B", "6A", "6C"})


def alert_id(model: str, ticker: str, bar_end: int, intent: str) -> str:
    """The alert's identity: the same (model, ticker, bar end, intent) always gives the same id."""
    return f"{model}:{ticker}:{_stamp(bar_end // 1_000_000_000)}:{intent}"


@functools.lru_cache(maxsize=1024)
def _stamp(seconds: int) -> str:
    # Every ticker's bar of a minute ends at the same second: a burst of alerts formats it once.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%SZ")


def contract_code(root: str, month: date) -> str:
    """The exchange's code of ``root``'s contract of ``month``: ES and March 2024 give ESH24."""
    return f"{root}{_MONTH_CODES[month.month - 1]}{month.year % 100:02d}"


def contract_month(root: str, day: int, position: Literal["front", "back"], roll: Literal["volume", "calendar"] = "volume") -> date:
    """First day of the contract month that ``position`` trades on session ``day`` for futures ``root``.

    ``roll`` ``volume`` moves to the next contract on the Monday of the expiry week,
    when volume does; ``calendar`` holds the expiring one until its expiry day.
    """
    step = 3 if root in _QUARTERLY else 1
    moment = EPOCH + timedelta(days=day)
    month = moment.year * 12 + moment.month - 1
    month += (2 - month) % step  # the cycle's next contract month: March, June, September, December (month 2 counting from 0)
    expiry = third_friday(date(month // 12, month % 12 + 1, 1))
    if day >= (expiry - 4 if roll == "volume" else expiry + 1):  # the Monday of the third Friday's week, or the day after it
        month += step
    if position == "back":
        month += step
    return date(month // 12, month % 12 + 1, 1)


def build_alert(
    signal: Signal,
    settings: InstrumentSettings,
    lineage: Lineage,
    clock: ExchangeClock,
    *,
    multiplier: int = 100,
    emitted_at: int,
) -> Alert:
    """The alert a trader acts on for ``signal``, as the model's instrument settings say.

    An option alert names the contract the policy kernel chose (the signal's strike and
    expiry, from the rule the sweep's row chose: ``dte_target``, ``strike_selection``),
    so that the alert, the backtest and the paper broker trade one contract.
    """
    row = signal.scored
    bar = row.bar
    common = {
        "alert_id": alert_id(row.model, bar.ticker, bar.end, signal.intent),
        "timestamp": _utc(bar.end),
        "model_id": row.model,
        "action": "BUY" if signal.direction > 0 else "SELL",
        "confidence": signal.confidence,
        "position_size": signal.size,
        "stop_loss": _number(signal.stop),
        "take_profit": _number(signal.target),
        "urgency": "immediate" if bar.end - bar.start < 86_400_000_000_000 else "day",
        "valid_until": _utc(next_bar_end(clock, row.session, bar)),
        "lineage": lineage,
        "received_at": _utc(row.received_at),
        "emitted_at": _utc(emitted_at),
        "intent": signal.intent,
        "reason": signal.reason,
        "bar_state": "closed" if row.closes else "provisional",
    }
    if isinstance(settings, StockSettings):
        return StockAlert(ticker=bar.ticker, quantity=settings.share_size, entry_price=signal.price, **common)
    if isinstance(settings, FutureSettings):
        if settings.contract_month == "specific":
            month = date.fromisoformat(f"{settings.specific_month}-01")
        else:
            month = contract_month(settings.contract, row.session, settings.contract_month, settings.roll_strategy)
        code = contract_code(settings.contract, month)
        return FutureAlert(ticker=bar.ticker, quantity=settings.contract_size, entry_price=signal.price, contract=settings.contract,
                           contract_month=f"{month:%Y-%m}", contracts=settings.contract_size, contract_code=code, **common)  # fmt: skip
    return _option_alert(signal, settings, clock, multiplier, common)


def _option_alert(signal: Signal, settings: OptionSettings, clock: ExchangeClock, multiplier: int, common: dict) -> OptionAlert:
    row = signal.scored
    bar = row.bar
    if signal.expiry < 0:
        raise ValueError(f"{row.model}: an option signal without its contract (the policy's expiry_sessions is not set)")
    kind = signal.direction if signal.intent == "open" else -signal.direction  # a close sells the contract it bought
    strike, expiry = signal.strike, signal.expiry
    volatility = row.volatility
    premium = None
    if volatility == volatility and volatility > 0:  # indicative: at the close, where the order fills at the next price
        premium = option_price(kind, bar.close, strike, years_to_expiry(clock, row.session, bar.end, expiry), volatility)
    common["action"] = "BUY" if signal.intent == "open" else "SELL"  # options are bought to open, sold to close
    return OptionAlert(
        ticker=bar.ticker,
        quantity=settings.contract_size * multiplier,
        entry_price=signal.price,
        underlying=bar.ticker,
        option_type="call" if kind > 0 else "put",
        strike=strike,
        expiration=EPOCH + timedelta(days=expiry),
        contracts=settings.contract_size,
        premium=premium,
        volatility=volatility if premium is not None else None,
        volatility_source=("implied" if row.implied else "realised") if premium is not None else None,
        **common,
    )


def next_bar_end(clock: ExchangeClock, session: int, bar) -> int:
    """When the bar after ``bar`` ends: an order decided at ``bar``'s close is good for that bar, across a session's end too."""
    length = bar.end - bar.start
    opens, closes = clock.session_bounds(session)
    if bar.end + length <= closes or length > closes - opens + 3_600_000_000_000:  # inside the session, or weekly and longer
        return bar.end + length
    following, following_close = _next_session(clock, session)
    return min(following + length, following_close)  # the next session's first bar, or the whole session for daily bars


@functools.lru_cache(maxsize=4096)
def _next_session(clock: ExchangeClock, session: int) -> tuple[int, int]:
    day = session + 1
    while not clock.trades(day):
        day += 1
    return clock.session_bounds(day)


def resolve(rule: Rule, alerts: Sequence[Alert], order: Sequence[str] = ()) -> tuple[list[Alert], str | None]:
    """The entries ``rule`` keeps among ``alerts`` (one ticker, one bar close) and the decision in words.

    ``order`` ranks models for first-wins (the user's order; unlisted models follow by id).
    Closing alerts always pass: each closes a position its own model opened.
    """
    entries = [alert for alert in alerts if alert.intent == "open"]
    kept = [alert for alert in alerts if alert.intent != "open"]
    if len(entries) < 2:
        return kept + entries, None
    rank = {model: i for i, model in enumerate(order)}
    entries.sort(key=lambda a: (rank.get(a.model_id, len(rank)), a.model_id))
    names = ", ".join(f"{a.model_id} {a.action} {a.confidence:.2f}" for a in entries)
    if rule == "first-wins":
        chosen = entries[0]
    elif rule == "highest-confidence":
        chosen = max(entries, key=lambda a: a.confidence)  # the first in order among equals
    else:
        sides = {action: [a for a in entries if a.action == action] for action in ("BUY", "SELL")}
        weight = {action: sum(a.confidence for a in group) for action, group in sides.items()}
        action = "BUY" if weight["BUY"] >= weight["SELL"] else "SELL"
        group = sides[action]
        chosen = max(group, key=lambda a: a.confidence)
        mean = sum(a.confidence for a in group) / len(group)
        decision = f"ensemble of {names}: {action} with {len(group)} of {len(entries)}, mean confidence {mean:.2f}"
        return kept + [_with(chosen, confidence=mean, resolution=decision)], decision
    decision = f"{rule} among {names}: {chosen.model_id}"
    return kept + [_with(chosen, resolution=decision)], decision


def _with(alert: Alert, **changes: object) -> Alert:
    return msgspec.structs.replace(alert, **changes)


_EPOCH_UTC = datetime(1970, 1, 1, tzinfo=UTC)


def _utc(ns: int) -> datetime:
    return _EPOCH_UTC + timedelta(microseconds=ns // 1000)


def nanoseconds(moment: datetime) -> int:
    """An alert's time (its ``timestamp``, ``valid_until``) back as event-time nanoseconds."""
    return (moment - _EPOCH_UTC) // timedelta(microseconds=1) * 1_000


def _number(value: float) -> float | None:
    return value if value == value else None
