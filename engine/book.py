"""A model's book over its universe: the one policy kernel of the sweep, the backtest and the live flow.

`step` applies the rules of `engine.policy` to one bar of the universe (every
ticker's bar that starts at one time; NaN for a ticker without one). The sweep and
`sigma backtest` call it in a compiled loop over a history (`research.backtest`);
the live flow's policy step calls it at each bar close of the model's universe
(`engine.signals`). Nothing else decides a trade, so what the leaderboard ranks is
what alerts live. One step, in this order:

1. **The open.** An option past its expiry settles at its last mark; a trade whose
   time stop is due leaves at the open; the orders decided at the previous close
   fill by their entry type (`engine.policy.entry_fill`) or lapse (an option order also when its contract has
   expired or is worth nothing by then).
2. **Inside the bar.** Stop-loss, then take-profit, against the high and low.
3. **The close.** Open trades are marked to the close; an option that expires
   there settles at its intrinsic value; on the history's last bar everything left
   closes (backtests only).
4. **The decision.** Trades whose time stop falls due at the next open are
   announced. Then, unless the kill switch is on: tickers whose probability passes
   the threshold in the model's direction, in an allowed hour, not in a position,
   not in a cooldown of that side, are ranked by confidence ``|p - 0.5|`` (ties in
   universe order); the best ``ceil(top_pct% x N)`` take the free slots of
   ``max_positions`` while the session's ``max_trades_per_day`` and the
   ``max_exposure`` last. Each entry is sized (`engine.policy.position_size`) and
   starts its (ticker, side) cooldown of ``cooldown_minutes`` of event time. An
   option entry names its contract here, as its alert does: the listed expiry the
   caller gives (`engine.options.contract_expiry`) and the listed strike of the
   rule's delta at the close; it fills at that contract's premium at the open.

The state is a handful of fixed-size arrays (`Book`), so a compiled loop runs many
configurations at once and the live flow snapshots it as plain values. Every
decision and exit of a step is written to ``events`` (what the live flow alerts);
every finished round trip to ``log`` (what a backtest lists).
"""

from __future__ import annotations

import math

import numpy as np

from engine._jit import helper, kernel
from engine.options import on_grid, option_price, option_strike
from engine.policy import (
    ENTRY_TYPES,
    EXIT_END,
    EXIT_EXPIRY,
    EXIT_NONE,
    EXIT_TIME,
    PARAMETERS,
    entry_direction,
    entry_fill,
    exit_levels,
    exit_on_bar,
    fill_price,
    hour_allowed,
    position_size,
)
from engine.snapshot import state

__all__ = ["Book", "empty", "step", "skip", "live_step", "rank", "OPEN", "CLOSE", "EVENT_COLUMNS", "LOG_COLUMNS"]

# Configuration row columns, by name (`engine.policy.PARAMETERS`).
(_THRESHOLD, _HOURS, _SIDE, _TOP, _SIZE, _BY_CONFIDENCE, _CONFIDENCE_CAP, _EXPOSURE, _STOP, _TAKE, _HOLD, _MAXPOS, _ENTRY,
 _SLIP, _COMMISSION, _STRIKE, _EXPIRY, _COOLDOWN, _DAILY) = range(len(PARAMETERS))  # fmt: skip
_LIMIT = ENTRY_TYPES["limit"]
_NS_PER_MINUTE = 60_000_000_000

# A slot holds one open trade. Integer columns: ticker (-1 when free), direction, the sign of its P&L in its price
# (the direction for the ticker itself, +1 for an option bought), the step it entered, the step its time stop is due,
# its option kind (+1 call, -1 put, 0 the ticker itself), whether its time stop was announced.
_TICKER, _DIRECTION, _SIGN, _ENTERED, _DUE, _KIND, _ANNOUNCED = range(7)
# Float columns: entry price, the underlying's stop and target, weight (size * sign / entry: its return per unit of
# price move), last mark, an option's strike, expiry (on the session clock) and volatility, the committed size, the
# option's expiry as a day number.
_ENTRY_PRICE, _STOP_PRICE, _TARGET_PRICE, _WEIGHT, _LAST, _STRIKE_PRICE, _EXPIRES, _SIGMA, _COMMITTED, _EXPIRY_DAY = range(10)
# An order decided at a close waits for the next open: ticker and direction; reference price, volatility, size, and an
# option's contract as the decision chose it: strike, expiry on the session clock and as a day number.
_ORDER_TICKER, _ORDER_DIRECTION = range(2)
_ORDER_REFERENCE, _ORDER_VOLATILITY, _ORDER_SIZE, _ORDER_STRIKE, _ORDER_EXPIRES, _ORDER_EXPIRY_DAY = range(6)
# Per ticker: in a position (0/1), the event time its long and its short cooldown end.
_HOLDING, _COOLDOWN_LONG, _COOLDOWN_SHORT = range(3)
# Counters: open trades, orders waiting, the session the daily count is of, entries that session, steps taken, killed,
# bars of the model's cadence closed (the steps of a model evaluated inside its bars are more: `step`'s ``closes``).
_OPEN, _ORDERS, _SESSION, _TODAY, _STEPS, _KILLED, _BARS = range(7)

OPEN, CLOSE = 1, 2
"""Kinds of event: an entry decided at the close, an exit."""
EVENT_COLUMNS = 11
"""An event row: kind, ticker, direction of its order (+1 buy, -1 sell), price (the underlying's: the close an
entry is decided at, the level an exit leaves at), exit reason, stop, target, size, confidence, and an option's
contract: strike and expiry day (NaN for the ticker itself)."""
LOG_COLUMNS = 11
"""A round trip: ticker, direction, entry step, entry price, exit step, exit price, reason, net return, strike, size,
expiry day (the last two NaN for the ticker itself)."""


@state(revision=3)  # 2: an order holds its option contract, a slot its expiry day; 3: time stops count bars
class Book:
    """The policy state of one model over ``tickers`` tickers with ``slots`` (max_positions) trade slots."""

    __slots__ = ("slot_ints", "slot_floats", "order_ints", "order_floats", "tickers", "counters", "tally")

    def __init__(self, slots: int, tickers: int) -> None:
        (self.slot_ints, self.slot_floats, self.order_ints, self.order_floats, self.tickers, self.counters,
         self.tally) = empty(slots, tickers)  # fmt: skip

    def arrays(self) -> tuple:
        """The state in `step`'s argument order."""
        return self.slot_ints, self.slot_floats, self.order_ints, self.order_floats, self.tickers, self.counters, self.tally

    @property
    def killed(self) -> bool:
        return bool(self.counters[_KILLED])

    @killed.setter
    def killed(self, on: bool) -> None:
        self.counters[_KILLED] = on

    @property
    def positions(self) -> int:
        """Trades open and orders waiting to fill."""
        return int(self.counters[_OPEN] + self.counters[_ORDERS])


@helper
def empty(slots: int, tickers: int) -> tuple:
    """A book with no trade, no order and no cooldown, as `step`'s state arrays."""
    slot_ints = np.zeros((slots, 7), np.int64)
    slot_ints[:, _TICKER] = -1
    never = np.iinfo(np.int64).min
    ticker_state = np.zeros((tickers, 3), np.int64)
    ticker_state[:, _COOLDOWN_LONG] = never
    ticker_state[:, _COOLDOWN_SHORT] = never
    counters = np.zeros(7, np.int64)
    counters[_SESSION] = never
    tally = np.zeros(5)  # trades, winners, gross profit, gross loss, bars with a trade open
    return slot_ints, np.zeros((slots, 10)), np.zeros((slots, 2), np.int64), np.zeros((slots, 6)), ticker_state, counters, tally


@helper
def rank(probability, close, ranking) -> float:
    """Fill ``ranking`` with the tickers by falling confidence (ties in universe order, missing last); returns the best."""
    n = probability.shape[0]
    confidence = np.empty(n)
    best = -1.0
    for i in range(n):
        p = probability[i]
        c = abs(p - 0.5) if p == p and close[i] == close[i] else -1.0
        confidence[i] = c
        best = max(best, c)
    order = np.argsort(-confidence, kind="mergesort")  # stable
    for i in range(n):
        ranking[i] = order[i]
    return best


@helper
def _confidence(probability: float, direction: int, side: int) -> float:
    """The probability behind an order's side: ``p``, or ``1 - p`` for a two-sided model's sell."""
    return probability if side != 0 or direction > 0 else 1.0 - probability


@helper
def _event(events, count, kind, ticker, direction, price, reason, stop, target, size, confidence, strike, expiry) -> int:
    if count < events.shape[0]:
        events[count, 0] = kind
        events[count, 1] = ticker
        events[count, 2] = direction
        events[count, 3] = price
        events[count, 4] = reason
        events[count, 5] = stop
        events[count, 6] = target
        events[count, 7] = size
        events[count, 8] = confidence
        events[count, 9] = strike
        events[count, 10] = expiry
    return count + 1


@helper
def _leave(s, t, price, reason, commission, slot_ints, slot_floats, tickers, counters, tally, log) -> float:
    """Close slot ``s`` at ``price`` on step ``t``: book and log the trade; returns its share of the bar's return."""
    i = slot_ints[s, _TICKER]
    size = slot_floats[s, _COMMITTED]
    share = slot_floats[s, _WEIGHT] * (price - slot_floats[s, _LAST]) - size * commission
    entry = slot_floats[s, _ENTRY_PRICE]
    net = slot_ints[s, _SIGN] * (price - entry) / entry - 2.0 * commission
    row = int(tally[0])
    if row < log.shape[0]:
        log[row, 0] = i
        log[row, 1] = slot_ints[s, _DIRECTION]
        log[row, 2] = slot_ints[s, _ENTERED]
        log[row, 3] = entry
        log[row, 4] = t
        log[row, 5] = price
        log[row, 6] = reason
        log[row, 7] = net
        log[row, 8] = slot_floats[s, _STRIKE_PRICE]
        log[row, 9] = size
        log[row, 10] = slot_floats[s, _EXPIRY_DAY]
    tally[0] += 1.0
    if net > 0.0:
        tally[1] += 1.0
        tally[2] += net
    else:
        tally[3] -= net
    slot_ints[s, _TICKER] = -1
    tickers[i, _HOLDING] = 0
    counters[_OPEN] -= 1
    return share


@helper
def step(slot_ints, slot_floats, order_ints, order_floats, tickers, counters, tally, config,
         open_, high, low, close, probability, ranking, volatility, row, best, hour, session, end, closes, opened, closed,
         sessions_per_year, expires, expiry_day, last, log, events, written):  # fmt: skip
    """One bar of the universe through the policy; returns (the portfolio's return over the bar, events written in all).

    Row ``row`` of ``open_`` to ``volatility`` holds the universe's values at this bar
    (NaN for a ticker without one; a backtest passes its whole history, the live flow
    one row); ``ranking`` and ``best`` come from `rank`; ``hour`` is the bar's
    exchange-local hour, ``session`` its session date, ``end`` its end (event time, ns),
    ``closes`` 1 when it closes a bar of the model's cadence (0 at an evaluation point
    inside one: time stops count the model's bars, not its evaluations),
    ``opened`` and ``closed`` the session clock at its open and close; ``expires`` and
    ``expiry_day`` the expiry of the option an entry decided at this close buys
    (`engine.options.contract_expiry`: on the session clock and as a day number; NaN
    when the model trades the ticker itself); ``last`` closes everything at the close
    (the end of a backtest's history). Events go to ``events`` from row ``written`` on.
    """
    t = counters[_STEPS]
    counters[_STEPS] = t + 1
    bar = counters[_BARS]  # this step's bar of the model's cadence; the next step's is counters[_BARS]
    counters[_BARS] = bar + closes
    if session != counters[_SESSION]:
        counters[_SESSION] = session
        counters[_TODAY] = 0
    threshold = config[_THRESHOLD]
    slots = slot_ints.shape[0]
    if counters[_OPEN] == 0 and counters[_ORDERS] == 0 and _no_entry(counters, config, best, hour, session):
        return 0.0, written  # no trade, no order, and no entry possible: most bars of a sweep (see `skip`)
    n_tickers = close.shape[1]
    side = np.int64(config[_SIDE])
    stop_loss = config[_STOP]
    take_profit = config[_TAKE]
    entry_type = np.int64(config[_ENTRY])
    slippage = config[_SLIP]
    commission = config[_COMMISSION]
    options = config[_EXPIRY] >= 0.0
    underlying_slippage = 0.0 if options else slippage  # an option's slippage is on its premium
    r = 0.0
    # 1. The open: expired options settle at their last mark, time stops leave, then the previous close's orders fill.
    if counters[_OPEN] > 0:
        for s in range(slots):
            i = slot_ints[s, _TICKER]
            if i < 0:
                continue
            kind = slot_ints[s, _KIND]
            if kind != 0 and opened >= slot_floats[s, _EXPIRES]:
                if slot_ints[s, _ANNOUNCED] == 0:
                    written = _event(events, written, CLOSE, i, -slot_ints[s, _DIRECTION], open_[row, i], EXIT_EXPIRY,
                                     slot_floats[s, _STOP_PRICE], slot_floats[s, _TARGET_PRICE], slot_floats[s, _COMMITTED],
                                     0.0, slot_floats[s, _STRIKE_PRICE], slot_floats[s, _EXPIRY_DAY])  # fmt: skip
                r += _leave(s, t, slot_floats[s, _LAST], EXIT_EXPIRY, commission, slot_ints, slot_floats, tickers, counters, tally, log)
            elif bar >= slot_ints[s, _DUE] and open_[row, i] == open_[row, i]:
                price = open_[row, i]
                if kind != 0:
                    price = option_price(kind, price, slot_floats[s, _STRIKE_PRICE],
                                         (slot_floats[s, _EXPIRES] - opened) / sessions_per_year, slot_floats[s, _SIGMA])  # fmt: skip
                price = fill_price(price, -slot_ints[s, _SIGN], slippage)
                r += _leave(s, t, price, EXIT_TIME, commission, slot_ints, slot_floats, tickers, counters, tally, log)
    for k in range(counters[_ORDERS]):
        i = order_ints[k, _ORDER_TICKER]
        if open_[row, i] != open_[row, i]:
            continue  # no bar for this ticker: the order lapses
        d = order_ints[k, _ORDER_DIRECTION]
        price = entry_fill(entry_type, d, order_floats[k, _ORDER_REFERENCE], open_[row, i], high[row, i], low[row, i], underlying_slippage)
        if price != price or counters[_OPEN] == slots:
            continue  # unfilled, or its slot's trade could not leave (no bar for that ticker)
        underlying = price
        if options:  # the contract the decision named, at its premium now
            price = option_price(d, underlying, order_floats[k, _ORDER_STRIKE],
                                 (order_floats[k, _ORDER_EXPIRES] - opened) / sessions_per_year, order_floats[k, _ORDER_VOLATILITY])  # fmt: skip
            if not price > 0.0 or opened >= order_floats[k, _ORDER_EXPIRES]:
                continue  # its contract expired before a bar came to fill it, or is worth nothing: it lapses
            if entry_type != _LIMIT:
                price = fill_price(price, 1, slippage)
        s = 0
        while slot_ints[s, _TICKER] >= 0:
            s += 1
        size = order_floats[k, _ORDER_SIZE]
        slot_floats[s, _STOP_PRICE], slot_floats[s, _TARGET_PRICE] = exit_levels(d, underlying, stop_loss, take_profit)
        if options:
            slot_ints[s, _KIND] = d
            slot_ints[s, _SIGN] = 1  # long the premium, a call or a put
            slot_floats[s, _EXPIRES] = order_floats[k, _ORDER_EXPIRES]
            slot_floats[s, _STRIKE_PRICE] = order_floats[k, _ORDER_STRIKE]
            slot_floats[s, _SIGMA] = order_floats[k, _ORDER_VOLATILITY]
            slot_floats[s, _EXPIRY_DAY] = order_floats[k, _ORDER_EXPIRY_DAY]
        else:
            slot_ints[s, _KIND] = 0
            slot_ints[s, _SIGN] = d
            slot_floats[s, _STRIKE_PRICE] = math.nan
            slot_floats[s, _EXPIRY_DAY] = math.nan
        slot_ints[s, _TICKER] = i
        slot_ints[s, _DIRECTION] = d
        slot_ints[s, _ENTERED] = t
        slot_ints[s, _DUE] = bar + np.int64(config[_HOLD])
        slot_ints[s, _ANNOUNCED] = 0
        slot_floats[s, _ENTRY_PRICE] = price
        slot_floats[s, _WEIGHT] = size * slot_ints[s, _SIGN] / price
        slot_floats[s, _LAST] = price
        slot_floats[s, _COMMITTED] = size
        tickers[i, _HOLDING] = 1
        counters[_OPEN] += 1
        r -= size * commission
    counters[_ORDERS] = 0
    # 2-3. Inside the bar: stops and targets; then mark to the close (an expiring option settles there).
    if counters[_OPEN] > 0:
        tally[4] += 1.0
        for s in range(slots):
            i = slot_ints[s, _TICKER]
            if i < 0:
                continue
            sign = slot_ints[s, _SIGN]
            if close[row, i] != close[row, i]:
                if last:  # the ticker has no last bar: leave at its last mark
                    price = fill_price(slot_floats[s, _LAST], -sign, slippage)
                    r += _leave(s, t, price, EXIT_END, commission, slot_ints, slot_floats, tickers, counters, tally, log)
                continue
            direction = slot_ints[s, _DIRECTION]
            reason, level = exit_on_bar(direction, slot_floats[s, _STOP_PRICE], slot_floats[s, _TARGET_PRICE],
                                        open_[row, i], high[row, i], low[row, i], slot_ints[s, _ENTERED] < t)  # fmt: skip
            underlying = level
            kind = slot_ints[s, _KIND]
            if kind == 0:
                mark = close[row, i]
                expired = False
            else:  # an option's level is reached at the open (a gap) or, pessimistically, at the close's time to expiry
                strike, sigma, held = slot_floats[s, _STRIKE_PRICE], slot_floats[s, _SIGMA], slot_floats[s, _EXPIRES]
                years = (held - closed) / sessions_per_year
                if reason != EXIT_NONE:
                    at = (held - opened) / sessions_per_year if level == open_[row, i] else years
                    level = option_price(kind, level, strike, at, sigma)
                mark = option_price(kind, close[row, i], strike, years, sigma)
                expired = years <= 0.0
            if reason != EXIT_NONE:
                price = fill_price(level, -sign, slippage)
            elif expired:
                reason, price, underlying = EXIT_EXPIRY, mark, close[row, i]  # settles at its intrinsic value, no spread to cross
            elif last:
                reason, price, underlying = EXIT_END, fill_price(mark, -sign, slippage), close[row, i]
            if reason != EXIT_NONE:
                if reason != EXIT_END and slot_ints[s, _ANNOUNCED] == 0:
                    p = probability[row, i]
                    written = _event(events, written, CLOSE, i, -direction, underlying, reason, slot_floats[s, _STOP_PRICE],
                                     slot_floats[s, _TARGET_PRICE], slot_floats[s, _COMMITTED],
                                     _confidence(p, direction, side) if p == p else 0.0, slot_floats[s, _STRIKE_PRICE],
                                     slot_floats[s, _EXPIRY_DAY])  # fmt: skip
                r += _leave(s, t, price, reason, commission, slot_ints, slot_floats, tickers, counters, tally, log)
            else:
                r += slot_floats[s, _WEIGHT] * (mark - slot_floats[s, _LAST])
                slot_floats[s, _LAST] = mark
    if last:
        return r, written
    # 4. The decision at the close, for the next bar's open: time stops due then are announced, then the entries.
    free = slots - counters[_OPEN]
    exposure = 0.0
    for s in range(slots):
        i = slot_ints[s, _TICKER]
        if i < 0:
            continue
        if counters[_BARS] >= slot_ints[s, _DUE]:
            free += 1  # leaves at the next open, before the new orders fill
            if slot_ints[s, _ANNOUNCED] == 0:
                slot_ints[s, _ANNOUNCED] = 1
                p = probability[row, i]
                direction = slot_ints[s, _DIRECTION]
                written = _event(events, written, CLOSE, i, -direction, close[row, i], EXIT_TIME, slot_floats[s, _STOP_PRICE],
                                 slot_floats[s, _TARGET_PRICE], slot_floats[s, _COMMITTED],
                                 _confidence(p, direction, side) if p == p else 0.0, slot_floats[s, _STRIKE_PRICE],
                                 slot_floats[s, _EXPIRY_DAY])  # fmt: skip
        else:
            exposure += slot_floats[s, _COMMITTED]
    if _no_entry(counters, config, best, hour, session):
        return r, written
    room = min(max(1, math.ceil(config[_TOP] / 100.0 * n_tickers - 1e-9)), free, np.int64(config[_DAILY]) - counters[_TODAY])
    cooldown = np.int64(config[_COOLDOWN]) * _NS_PER_MINUTE
    orders = 0
    for position in range(n_tickers):
        if orders >= room:
            break
        i = ranking[row, position]
        p = probability[row, i]
        if p != p or close[row, i] != close[row, i]:
            break  # ranking puts missing values last
        if tickers[i, _HOLDING] != 0 and not _leaving(slot_ints, i, counters[_BARS]):
            continue
        if options and not volatility[row, i] > 0.0:
            continue  # an option cannot be priced without a volatility
        direction = entry_direction(p, threshold, side)
        if direction == 0:
            continue
        if tickers[i, _COOLDOWN_LONG if direction > 0 else _COOLDOWN_SHORT] > end:
            continue
        confidence = _confidence(p, direction, side)
        size = min(position_size(config[_SIZE], config[_BY_CONFIDENCE] != 0.0, config[_CONFIDENCE_CAP], confidence),
                   config[_EXPOSURE] - exposure)  # fmt: skip
        if size <= 1e-12:
            continue  # no exposure left for it
        exposure += size
        reference = close[row, i]
        strike = math.nan
        if options:  # the listed contract of the rule's delta, as the close and the time it has left there give it
            sigma = volatility[row, i]
            strike = on_grid(option_strike(direction, reference, config[_STRIKE], (expires - closed) / sessions_per_year, sigma),
                             reference)  # fmt: skip
        order_ints[orders, _ORDER_TICKER] = i
        order_ints[orders, _ORDER_DIRECTION] = direction
        order_floats[orders, _ORDER_REFERENCE] = reference
        order_floats[orders, _ORDER_VOLATILITY] = volatility[row, i]
        order_floats[orders, _ORDER_SIZE] = size
        order_floats[orders, _ORDER_STRIKE] = strike
        order_floats[orders, _ORDER_EXPIRES] = expires
        order_floats[orders, _ORDER_EXPIRY_DAY] = expiry_day
        orders += 1
        tickers[i, _COOLDOWN_LONG if direction > 0 else _COOLDOWN_SHORT] = end + cooldown
        stop, target = exit_levels(direction, reference, stop_loss, take_profit)
        written = _event(events, written, OPEN, i, direction, reference, 0, stop, target, size, confidence, strike,
                         expiry_day if options else math.nan)  # fmt: skip
    counters[_ORDERS] = orders
    counters[_TODAY] += orders
    return r, written


@helper
def _no_entry(counters, config, best, hour, session) -> bool:
    """True when no entry can be decided at a bar of ``session`` whose best confidence is ``best``, at ``hour``.

    The kill switch is on, no ticker passes the threshold, the hour is not allowed, or
    the session's ``max_trades_per_day`` are taken (a new session starts a new count).
    """
    # Every value is read before any test, so that `skip`'s loop reads them once, not at each bar.
    killed = counters[_KILLED] != 0
    floor = config[_THRESHOLD] - 0.5
    hours = np.int64(config[_HOURS])
    capped = counters[_TODAY] >= np.int64(config[_DAILY])
    today = counters[_SESSION]
    return killed or best < floor or not hour_allowed(hour, hours) or (capped and session == today)


@kernel
def skip(counters, config, best, hour, session, closes, t, bars) -> int:
    """The first bar from ``t`` (before ``bars``) whose `step` may do more than its fast exit; the steps skipped are counted,
    and the bars they close.

    A book with no trade and no order stays as it is through bars where no entry is
    possible: `step` would only count them and return 0. A backtest skips them here,
    with no step for each (``best``, ``hour`` and ``session`` are per bar). A kernel of
    its own, not inlined into the backtest's loop, so that its loop keeps its values in
    registers instead of reloading what the inlined `step` spills.
    """
    if counters[_OPEN] != 0 or counters[_ORDERS] != 0:
        return t
    first = t
    closed = 0
    while t < bars and _no_entry(counters, config, best[t], hour[t], session[t]):
        closed += closes[t]
        t += 1
    counters[_STEPS] += t - first
    counters[_BARS] += closed
    return t


@helper
def _leaving(slot_ints, i, bar) -> bool:
    """True when ticker ``i``'s trade reaches its time stop by bar ``bar``."""
    for s in range(slot_ints.shape[0]):
        if slot_ints[s, _TICKER] == i and bar >= slot_ints[s, _DUE]:
            return True
    return False


@kernel
def live_step(slot_ints, slot_floats, order_ints, order_floats, tickers, counters, tally, config,
              open_, high, low, close, probability, hour, session, end, closes, opened, closed, sessions_per_year, expires,
              expiry_day, volatility, events):  # fmt: skip
    """`step` at one live bar close of the universe, ranking first; returns the events written."""
    ranking = np.empty((1, close.shape[0]), np.int64)
    best = rank(probability, close, ranking[0])
    no_log = np.zeros((0, LOG_COLUMNS))
    _, written = step(slot_ints, slot_floats, order_ints, order_floats, tickers, counters, tally, config,
                      open_.reshape(1, -1), high.reshape(1, -1), low.reshape(1, -1), close.reshape(1, -1),
                      probability.reshape(1, -1), ranking, volatility.reshape(1, -1), 0, best, hour, session, end, closes,
                      opened, closed, sessions_per_year, expires, expiry_day, False, no_log, events, 0)  # fmt: skip
    return written
