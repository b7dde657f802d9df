"""A plain per-configuration backtest loop, the reference the compiled kernel is pinned to.

It reads like the rules in `research.backtest`'s docstring, one bar and one trade at a
time, in Python floats with the same formulas in the same order, so its numbers must
equal the kernel's exactly. It also anchors the sweep benchmark.
"""

from __future__ import annotations

import math

import numpy as np

from engine.options import option_price, option_strike
from engine.policy import (
    ENTRY_TYPES,
    EXIT_END,
    EXIT_EXPIRY,
    EXIT_TIME,
    entry_direction,
    entry_fill,
    exit_levels,
    exit_on_bar,
    fill_price,
)
from research.backtest import BLOCKS, METRICS, PARAMETERS, Market, summarise


def backtest_loop(market: Market, config: np.ndarray) -> tuple[np.ndarray, list[tuple], np.ndarray]:
    """(metrics row, trades as (ticker, direction, entry bar, entry, exit bar, exit, reason, net, strike), block sums)."""
    c = dict(zip(PARAMETERS, config.tolist()))
    bars, tickers = market.close.shape
    per_bar = max(1, math.ceil(c["top_pct"] / 100.0 * tickers - 1e-9))
    size, commission, slippage = c["position_size"], c["commission"], c["slippage"]
    fee = size * commission
    hold, slots = int(c["hold_bars"]), int(c["max_positions"])
    mask, side, entry_type = int(c["hours_mask"]), int(c["side"]), int(c["entry_type"])
    expiry_sessions = int(c["expiry_sessions"])
    options = expiry_sessions >= 0
    open_, high, low, close = market.open, market.high, market.low, market.close
    opened, closed, per_year = market.opened, market.closed, market.sessions_per_year
    positions: list[dict | None] = [None] * slots
    orders: list[tuple[int, int, float, float]] = []
    trades: list[tuple] = []
    returns = np.zeros(bars)
    exposed = 0

    def leave(s: int, t: int, price: float, reason: int) -> float:
        trade = positions[s]
        positions[s] = None
        net = trade["sign"] * (price - trade["entry"]) / trade["entry"] - 2.0 * commission
        trades.append((trade["ticker"], trade["direction"], trade["entry_bar"], trade["entry"], t, price, reason, net, trade["strike"]))
        return trade["weight"] * (price - trade["last"]) - fee

    def price_of(trade: dict, spot: float, clock: float) -> float:
        if not trade["kind"]:
            return spot
        return option_price(trade["kind"], spot, trade["strike"], (trade["expiry"] - clock) / per_year, trade["volatility"])

    for t in range(bars):
        r = 0.0
        for s, trade in enumerate(positions):
            if trade and trade["kind"] and opened[t] >= trade["expiry"]:
                r += leave(s, t, trade["last"], EXIT_EXPIRY)
            elif trade and t >= trade["due"] and not math.isnan(open_[t, trade["ticker"]]):
                quote = price_of(trade, float(open_[t, trade["ticker"]]), float(opened[t]))
                r += leave(s, t, fill_price(quote, -trade["sign"], slippage), EXIT_TIME)
        for i, d, reference, volatility in orders:
            if math.isnan(open_[t, i]):
                continue
            price = entry_fill(entry_type, d, reference, float(open_[t, i]), float(high[t, i]), float(low[t, i]),
                               0.0 if options else slippage)
            if math.isnan(price) or None not in positions:
                continue
            stop, target = exit_levels(d, price, c["stop_loss"], c["take_profit"])  # on the underlying
            trade = {"ticker": i, "direction": d, "sign": d, "entry_bar": t, "due": t + hold, "kind": 0, "strike": math.nan,
                     "stop": stop, "target": target}
            if options:
                expiry = math.floor(opened[t]) + expiry_sessions + 1.0
                years = (expiry - float(opened[t])) / per_year
                strike = option_strike(d, price, c["strike_score"], years, volatility)
                price = option_price(d, price, strike, years, volatility)
                if entry_type != ENTRY_TYPES["limit"]:
                    price = fill_price(price, 1, slippage)
                trade |= {"kind": d, "sign": 1, "strike": strike, "expiry": expiry, "volatility": volatility}
            positions[positions.index(None)] = trade | {"entry": price, "weight": size * trade["sign"] / price, "last": price}
            r -= fee
        orders = []
        if any(positions):
            exposed += 1
        for s, trade in enumerate(positions):
            if trade is None:
                continue
            i = trade["ticker"]
            if math.isnan(close[t, i]):
                if t == bars - 1:
                    r += leave(s, t, fill_price(trade["last"], -trade["sign"], slippage), EXIT_END)
                continue
            reason, level = exit_on_bar(trade["direction"], trade["stop"], trade["target"], float(open_[t, i]),
                                        float(high[t, i]), float(low[t, i]), trade["entry_bar"] < t)
            mark = price_of(trade, float(close[t, i]), float(closed[t]))
            if reason:
                gap = level == open_[t, i]  # a gap through the level fills at the open, with the open's time left
                level = price_of(trade, level, float(opened[t] if gap else closed[t]))
                r += leave(s, t, fill_price(level, -trade["sign"], slippage), reason)
            elif trade["kind"] and (trade["expiry"] - float(closed[t])) / per_year <= 0.0:
                r += leave(s, t, mark, EXIT_EXPIRY)
            elif t == bars - 1:
                r += leave(s, t, fill_price(mark, -trade["sign"], slippage), EXIT_END)
            else:
                r += trade["weight"] * (mark - trade["last"])
                trade["last"] = mark
        returns[t] = r
        if t == bars - 1 or not (mask >> int(market.hour[t])) & 1:
            continue
        leaving = {trade["ticker"] for trade in positions if trade and t + 1 >= trade["due"]}
        free = sum(trade is None for trade in positions) + len(leaving)
        held = {trade["ticker"] for trade in positions if trade}
        for i in market.ranking[t]:
            if len(orders) >= min(per_bar, free):
                break
            p = market.probability[t, i]
            if math.isnan(p) or math.isnan(close[t, i]):
                break
            if i in held and i not in leaving:
                continue
            volatility = float(market.volatility[t, i])
            if options and not volatility > 0.0:
                continue
            signal = entry_direction(float(p), c["threshold"], side)
            if signal:
                orders.append((int(i), signal, float(close[t, i]), volatility))
    wins = sum(trade[7] > 0.0 for trade in trades)
    profit, loss = _in_exit_order(trades)
    row = np.empty(len(METRICS))
    block_sums = np.empty((BLOCKS, 3))
    summarise(returns, len(trades), wins, profit, loss, exposed, market.periods_per_year, row, block_sums)
    return row, trades, block_sums


def _in_exit_order(trades: list[tuple]) -> tuple[float, float]:
    """Gross profit and gross loss, summed in exit order as the kernel books them."""
    profit = loss = 0.0
    for trade in trades:
        if trade[7] > 0.0:
            profit += trade[7]
        else:
            loss -= trade[7]
    return profit, loss
