"""Honest validation: purged walk-forward folds and out-of-fold probabilities.

The history splits into a development part and a final holdout (20% by default)
that the sweep never sees. The development part is cut into ``folds + 1`` equal
blocks; fold k trains on everything before block k + 1 and predicts block k + 1
(walk-forward: a model never trains on its future). Training samples whose label
window reaches into the test block are purged, and an embargo of a few more bars
keeps slowly decaying features from leaking across the cut. The holdout is
predicted by one model trained on the whole development part, purged the same way.

A probability at bar t therefore depends only on bars up to t: changing the data
after t changes nothing before t, which the test suite proves.
"""

from __future__ import annotations

import msgspec
import numpy as np
import xgboost

__all__ = ["Split", "walk_forward", "out_of_fold", "BASELINE"]

BASELINE = {
    "objective": "binary:logistic",
    "eval_metric": "logloss",
    "tree_method": "hist",
    "max_depth": 3,
    "eta": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 5,
    "nthread": 2,
}
"""The baseline classifier's settings: small, regularised trees, fast enough to refit per fold."""
ROUNDS = 150


class Split(msgspec.Struct, frozen=True):
    """One walk-forward fold: train on rows ``[0, train_end)``, predict rows ``[test_start, test_end)``."""

    train_end: int
    test_start: int
    test_end: int


def walk_forward(rows: int, *, folds: int = 5, horizon: int, embargo: int = 0, holdout: float = 0.2) -> tuple[list[Split], int]:
    """Purged walk-forward folds over the development part of ``rows`` bars, and where the holdout starts."""
    holdout_start = rows - int(round(rows * holdout))
    edges = np.linspace(0, holdout_start, folds + 2).astype(int)
    gap = horizon + 1 + embargo  # a label at row i is known only at row i + horizon + 1
    splits = [Split(max(0, int(start) - gap), int(start), int(end)) for start, end in zip(edges[1:-1], edges[2:])]
    return splits, holdout_start


def _fit_predict(features, labels, train_end, predict, seed):
    rows = slice(0, train_end)
    usable = np.isfinite(labels[rows]) & np.isfinite(features[rows]).all(axis=1)
    if usable.sum() < 50 or len(np.unique(labels[rows][usable])) < 2:
        return np.full(predict.stop - predict.start, np.nan)  # too little history to learn from yet
    train = xgboost.DMatrix(features[rows][usable], label=labels[rows][usable])
    booster = xgboost.train({**BASELINE, "seed": seed}, train, num_boost_round=ROUNDS)
    block = features[predict]
    result = booster.predict(xgboost.DMatrix(block)).astype(np.float64)
    result[~np.isfinite(block).all(axis=1)] = np.nan  # no score where a feature is not warm yet
    return result


def out_of_fold(
    features: np.ndarray, labels: np.ndarray, *, splits: list[Split], holdout_start: int, horizon: int,
    embargo: int = 0, seed: int = 0,
) -> np.ndarray:
    """Baseline XGBoost probabilities for every test block and the holdout (NaN elsewhere), each from its own past only."""
    values = np.full(len(labels), np.nan)
    for split in splits:
        window = slice(split.test_start, split.test_end)
        values[window] = _fit_predict(features, labels, split.train_end, window, seed)
    if holdout_start < len(labels):
        window = slice(holdout_start, len(labels))
        values[window] = _fit_predict(features, labels, max(0, holdout_start - horizon - 1 - embargo), window, seed)
    return values
