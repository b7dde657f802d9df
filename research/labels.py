"""Labels: what a strategy's model learns to predict, computed from the bars that follow.

A label at bar t looks forward, so it is the one thing in research allowed to: the
trade it describes enters at the next bar's open (as the backtest fills a signal at
bar t) and leaves ``horizon_bars`` bars later at that bar's open. The label is 1
when that trade, in the strategy's direction and net of ``cost_bps`` for the round
trip, makes money. The last ``horizon_bars + 1`` bars have no label (NaN).

The rows of a model evaluated inside its bars are its evaluation intervals
(``closes`` marks the ones that close a bar): its trade enters at the next
interval's open and leaves at the open of the first interval ``horizon_bars`` bars
later, as its time stop does (`engine.book`).
"""

from __future__ import annotations

import numpy as np

from engine.bars import Bars
from engine.packs import Label

__all__ = ["forward_returns", "label"]


def forward_returns(bars: Bars, horizon: int, closes: np.ndarray | None = None) -> np.ndarray:
    """Return from the next row's open to the open ``horizon`` bars after it; NaN where the future is unknown."""
    n = len(bars)
    result = np.full(n, np.nan)
    if n < 2:
        return result
    if closes is None:  # every row is a bar
        exits = np.arange(1, n) + horizon
    else:
        bar = np.concatenate([[0], np.cumsum(closes)[:-1]])  # each row's bar: the closes before it
        exits = np.searchsorted(bar, bar[1:] + horizon, side="left")  # the first row of the bar ``horizon`` on
    known = exits < n
    result[: n - 1][known] = bars.open[exits[known]] / bars.open[1:][known] - 1.0
    return result


def label(bars: Bars, recipe: Label, closes: np.ndarray | None = None) -> np.ndarray:
    """1.0 where the strategy's trade from row t pays its costs, 0.0 where not, NaN where unknown."""
    direction = 1.0 if recipe.direction == "long" else -1.0
    net = direction * forward_returns(bars, recipe.horizon_bars, closes) - recipe.cost_bps / 10_000
    return np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
