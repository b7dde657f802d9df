"""A plain per-configuration backtest loop, the reference the compiled kernel is pinned to.

It reads like the rules in `research.backtest`'s docstring, one bar and one trade at a
time, in Python floats with the same formulas in the same order, so its numbers must
equal the kernel's exactly. It also anchors the sweep benchmark.
"""

from __future__ import annotations

import math

import numpy as np

from engine.policy import EXIT_END, EXIT_TIME, entry_direction, entry_fill, exit_levels, exit_on_bar, fill_price
from research.backtest import BLOCKS, METRICS, PARAMETERS, Market, summarise


def backtest_loop(market: Market, config: np.ndarray) -> tuple[np.ndarray, list[tuple], np.ndarray]:
    """(metrics row, trades as (ticker, direction, entry bar, entry, exit bar, exit, reason, net), block sums)."""
    c = dict(zip(PARAMETERS, config.tolist()))
    bars, tickers = market.close.shape
    per_bar = max(1, math.ceil(c["top_pct"] / 100.0 * tickers - 1e-9))
    size, commission, slippage = c["position_size"], c["commission"], c["slippage"]
    fee = size * commission
    hold, slots = int(c["hold_bars"]), int(c["max_positions"])
    mask, side, entry_type = int(c["hours_mask"]), int(c["side"]), int(c["entry_type"])
    open_, high, low, close = market.open, market.high, market.low, market.close
    positions: list[dict | None] = [None] * slots
    orders: list[tuple[int, int, float]] = []
    trades: list[tuple] = []
    returns = np.zeros(bars)
    exposed = 0

    def leave(s: int, t: int, price: float, reason: int) -> float:
        trade = positions[s]
        positions[s] = None
        net = trade["direction"] * (price - trade["entry"]) / trade["entry"] - 2.0 * commission
        trades.append((trade["ticker"], trade["direction"], trade["entry_bar"], trade["entry"], t, price, reason, net))
        return trade["weight"] * (price - trade["last"]) - fee

    for t in range(bars):
        r = 0.0
        for s, trade in enumerate(positions):
            if trade and t >= trade["due"] and not math.isnan(open_[t, trade["ticker"]]):
                r += leave(s, t, fill_price(float(open_[t, trade["ticker"]]), -trade["direction"], slippage), EXIT_TIME)
        for i, d, reference in orders:
            if math.isnan(open_[t, i]):
                continue
            price = entry_fill(entry_type, d, reference, float(open_[t, i]), float(high[t, i]), float(low[t, i]), slippage)
            if math.isnan(price) or None not in positions:
                continue
            stop, target = exit_levels(d, price, c["stop_loss"], c["take_profit"])
            s = positions.index(None)
            positions[s] = {"ticker": i, "direction": d, "entry_bar": t, "entry": price, "stop": stop, "target": target,
                            "due": t + hold, "weight": size * d / price, "last": price}
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
                    r += leave(s, t, fill_price(trade["last"], -trade["direction"], slippage), EXIT_END)
                continue
            reason, level = exit_on_bar(trade["direction"], trade["stop"], trade["target"], float(open_[t, i]),
                                        float(high[t, i]), float(low[t, i]), trade["entry_bar"] < t)
            if reason == 0 and t == bars - 1:
                reason, level = EXIT_END, float(close[t, i])
            if reason:
                r += leave(s, t, fill_price(level, -trade["direction"], slippage), reason)
            else:
                r += trade["weight"] * (float(close[t, i]) - trade["last"])
                trade["last"] = float(close[t, i])
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
            signal = entry_direction(float(p), c["threshold"], side)
            if signal:
                orders.append((int(i), signal, float(close[t, i])))
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
