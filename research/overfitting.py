"""How much of a sweep's best result is luck: deflated Sharpe, probability of backtest overfitting.

Both read the per-block return sums the backtest kernel keeps, so they cost nothing
extra to collect. References: Bailey and López de Prado, "The Deflated Sharpe Ratio"
(2014), and Bailey, Borwein, López de Prado and Zhu, "The Probability of Backtest
Overfitting" (2015), combinatorially symmetric cross-validation (CSCV).
"""

from __future__ import annotations

import math
from itertools import combinations
from statistics import NormalDist

import numpy as np

__all__ = ["deflated_sharpe", "probability_of_overfitting", "block_sharpe"]

_NORMAL = NormalDist()
_EULER_GAMMA = 0.5772156649015329


def deflated_sharpe(sharpe: float, trials_variance: float, trials: int, bars: int, skew: float, kurtosis: float) -> float:
    """Probability that a per-bar Sharpe ``sharpe`` beats the best of ``trials`` luck-only configurations.

    ``trials_variance`` is the variance of the per-bar Sharpe across the configurations
    tried; skew and kurtosis (not excess) are of the configuration's own bar returns.
    """
    if trials < 2 or bars < 2:
        return float("nan")
    spread = math.sqrt(max(trials_variance, 0.0))
    expected_best = spread * (
        (1 - _EULER_GAMMA) * _NORMAL.inv_cdf(1 - 1 / trials) + _EULER_GAMMA * _NORMAL.inv_cdf(1 - 1 / (trials * math.e))
    )
    denominator = 1 - skew * sharpe + (kurtosis - 1) / 4 * sharpe**2
    if denominator <= 0:
        return float("nan")
    return _NORMAL.cdf((sharpe - expected_best) * math.sqrt(bars - 1) / math.sqrt(denominator))


def block_sharpe(sums: np.ndarray) -> np.ndarray:
    """Per-bar Sharpe from (sum, sum of squares, count) rows, summed over the last-but-one axis."""
    total, squares, count = sums[..., 0], sums[..., 1], sums[..., 2]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        variance = (squares - count * mean * mean) / (count - 1)
        result = mean / np.sqrt(variance)
    return np.where(np.isfinite(result), result, 0.0)


def probability_of_overfitting(blocks: np.ndarray) -> float:
    """CSCV probability that the in-sample best configuration ranks below the median out of sample.

    ``blocks`` has shape (configurations, S, 3): each configuration's per-block return
    sums over S equal time blocks (S even). Every half of the blocks serves once as
    the in-sample set and its complement as the out-of-sample set. NaN (undefined) for
    fewer than two configurations or when none of them traded.
    """
    configurations, count, _ = blocks.shape
    if configurations < 2 or count < 2 or not blocks[:, :, 1].any():
        return float("nan")  # undefined: nothing to choose between, or no configuration traded (every return zero)
    logits = []
    for chosen in combinations(range(count), count // 2):
        inside = np.zeros(count, bool)
        inside[list(chosen)] = True
        best = int(np.argmax(block_sharpe(blocks[:, inside].sum(axis=1))))
        outside = block_sharpe(blocks[:, ~inside].sum(axis=1))
        rank = (outside < outside[best]).sum() + 0.5 * ((outside == outside[best]).sum() - 1) + 1
        relative = rank / (configurations + 1)
        logits.append(math.log(relative / (1 - relative)))
    return float(np.mean(np.array(logits) <= 0))
