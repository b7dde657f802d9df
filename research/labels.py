"""Labels: what a strategy's model learns to predict, computed from the bars that follow.

A label at bar t looks forward, so it is the one thing in research allowed to: the
trade it describes enters at the next bar's open (as the backtest fills a signal at
bar t) and leaves ``horizon_bars`` bars later at that bar's open. The label is 1
when that trade, in the strategy's direction and net of ``cost_bps`` for the round
trip, makes money. The last ``horizon_bars + 1`` bars have no label (NaN).
"""

from __future__ import annotations

import numpy as np

from engine.bars import Bars
from engine.packs import Label

__all__ = ["forward_returns", "label"]


def forward_returns(bars: Bars, horizon: int) -> np.ndarray:
    """Return from the next bar's open to the open ``horizon`` bars after it; NaN where the future is unknown."""
    result = np.full(len(bars), np.nan)
    if len(bars) > horizon + 1:
        entry = bars.open[1 : len(bars) - horizon]
        result[: len(entry)] = bars.open[1 + horizon :] / entry - 1.0
    return result


def label(bars: Bars, recipe: Label) -> np.ndarray:
    """1.0 where the strategy's trade from bar t pays its costs, 0.0 where not, NaN where unknown."""
    direction = 1.0 if recipe.direction == "long" else -1.0
    net = direction * forward_returns(bars, recipe.horizon_bars) - recipe.cost_bps / 10_000
    return np.where(np.isnan(net), np.nan, (net > 0).astype(np.float64))
