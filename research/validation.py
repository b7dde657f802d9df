"""Honest validation: purged walk-forward folds and calibrated out-of-fold probabilities.

The history splits into a development part and a final holdout (20% by default)
that the sweep never sees. The development part is cut into ``folds + 1`` equal
blocks; fold k trains on everything before block k + 1 and predicts block k + 1
(walk-forward: a model never trains on its future). Training samples whose label
window reaches into the test block are purged, and an embargo of a few more bars
keeps slowly decaying features from leaking across the cut. The holdout is
predicted by one model trained on the whole development part, purged the same way.

A probability at bar t therefore depends only on bars up to t: changing the data
after t changes nothing before t, which the test suite proves. Calibration keeps
that: each test block is calibrated on the out-of-fold rows before its fold's cut,
so the first block, with none, has no calibrated probability, and the sweep's
development window starts at the second.

**One probability scale.** The sweep chooses thresholds on these probabilities and
the trained model emits its own live, so both come from one procedure: the
classifier of `classifier` (XGBoost, the same fixed settings), raw out-of-fold
probabilities from `fold_probabilities`, then `calibrate` (isotonic or sigmoid, chosen
by `research.calibration.choose` on the raw out-of-fold rows, and the final model on
the development rows for the holdout). The sweep runs it at `SWEEP_POINT`
(`out_of_fold`); training runs the same two steps with its grid search between them.
"""

from __future__ import annotations

import msgspec
import numpy as np
import xgboost

from engine.errors import ConfigError
from engine.scoring import Calibration
from research import calibration

__all__ = [
    "Split", "walk_forward", "purge_in_rows", "out_of_fold", "fold_probabilities", "calibrate", "classifier", "Probabilities",
    "SWEEP_POINT", "FIXED", "MIN_ROWS",
]  # fmt: skip

FIXED = {"subsample": 0.8, "colsample_bytree": 0.8, "min_child_weight": 5, "tree_method": "hist"}
"""The classifier's settings that no grid searches: small, regularised trees, fast enough to refit per fold."""
SWEEP_POINT = {"n_estimators": 100, "max_depth": 3, "learning_rate": 0.1}
"""The grid point the sweep's probabilities come from: a point of training's default grid (`research.training.GRID`)."""
MIN_ROWS = 50
"""Labelled rows a fit (or a calibration) needs, with both outcomes among them."""


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


def classifier(point: dict[str, float], *, seed: int, threads: int) -> xgboost.XGBClassifier:
    """The XGBoost classifier of one grid point (``n_estimators``, ``max_depth``, ``learning_rate``)."""
    return xgboost.XGBClassifier(
        n_estimators=int(point["n_estimators"]), max_depth=int(point["max_depth"]), learning_rate=float(point["learning_rate"]),
        random_state=seed, n_jobs=threads, **FIXED,
    )  # fmt: skip


def _learnable(matrix: np.ndarray, outcomes: np.ndarray, end: int) -> np.ndarray | None:
    """The usable rows before ``end``, or None when they are too few to learn from."""
    usable = np.isfinite(outcomes[:end]) & np.isfinite(matrix[:end]).all(axis=1)
    return usable if _enough(outcomes[:end][usable]) else None


def _enough(outcomes: np.ndarray) -> bool:
    """At least `MIN_ROWS` known outcomes, with both among them: what a fit or a calibration needs."""
    return len(outcomes) >= MIN_ROWS and len(np.unique(outcomes)) >= 2


def fold_probabilities(
    matrix: np.ndarray, outcomes: np.ndarray, splits: list[Split], sizes: list[int], depth: int, rate: float, *, seed: int, threads: int,
) -> dict[int, np.ndarray]:
    """Raw out-of-fold probabilities per forest size (NaN outside the test blocks), from one fit of the largest per fold.

    XGBoost grows trees in the same order whatever the forest's size, so a smaller forest
    is read off the larger with ``iteration_range``: the same numbers as its own fit.
    """
    matrix = np.asarray(matrix, dtype=np.float32)  # what the exported graph scores live
    sizes = sorted(sizes)
    values = {size: np.full(len(outcomes), np.nan) for size in sizes}
    for split in splits:
        usable = _learnable(matrix, outcomes, split.train_end)
        if usable is None:
            continue  # too little history to learn from yet
        model = classifier({"n_estimators": sizes[-1], "max_depth": depth, "learning_rate": rate}, seed=seed, threads=threads)
        model.fit(matrix[: split.train_end][usable], outcomes[: split.train_end][usable].astype(int))
        test = slice(split.test_start, split.test_end)
        for size in sizes:
            values[size][test] = _scored(model, matrix[test], (0, size))
    return values


def _scored(model: xgboost.XGBClassifier, rows: np.ndarray, trees: tuple[int, int] = (0, 0)) -> np.ndarray:
    """``model``'s probability of each row whose features are all warm, NaN for the others.

    A block still warming up everywhere is not handed to XGBoost, which would only warn
    of an empty dataset: its rows stay NaN, as the warm-up shares report them.
    """
    scores = np.full(len(rows), np.nan)
    warm = np.isfinite(rows).all(axis=1)
    if warm.any():
        scores[warm] = model.predict_proba(rows[warm], iteration_range=trees)[:, 1]
    return scores


class Probabilities(msgspec.Struct, kw_only=True):
    """One grid point's calibrated probabilities, the calibrator, and the final model that scores the holdout."""

    classifier: object
    """Fitted on the development rows, purged before the holdout: the model that is exported."""
    calibrator: Calibration
    calibration_scores: dict[str, float]
    """Later-half Brier score of each calibrator (`research.calibration.choose`)."""
    out_of_fold: np.ndarray
    """Raw out-of-fold probabilities (NaN outside the test blocks)."""
    holdout: np.ndarray
    """The final model's raw probabilities of the holdout rows (NaN where a feature is not warm)."""
    calibrated: np.ndarray
    """Every row's calibrated probability: out of fold in the test blocks after the first, the final model's on the holdout."""


def calibrate(
    matrix: np.ndarray, outcomes: np.ndarray, raw: np.ndarray, *, splits: list[Split], holdout_start: int, gap: int,
    point: dict[str, float], seed: int, threads: int,
) -> Probabilities:
    """Calibrate one grid point's raw out-of-fold probabilities, each block from its past, and fit its final model.

    A test block's calibrator is fitted on the out-of-fold rows its fold trained on
    (purged the same way), so a calibrated probability still depends only on its past:
    the first block, with no earlier out-of-fold rows, stays NaN. The holdout and the
    exported model use the calibrator of every out-of-fold row before the holdout's purge.
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    known = np.isfinite(raw) & np.isfinite(outcomes)
    calibrated = np.full(len(raw), np.nan)
    for split in splits:
        earlier = _calibrator(raw, outcomes, known, split.train_end)
        if earlier is not None:  # else too little out-of-fold history to calibrate on yet
            block = slice(split.test_start, split.test_end)
            calibrated[block] = calibration.apply(earlier[0], raw[block])
    end = max(0, holdout_start - gap)
    chosen = _calibrator(raw, outcomes, known, end)
    if chosen is None:
        raise ConfigError("data", f"{int(known[:end].sum())} out-of-fold rows with a known outcome are too few to calibrate on "
                                  f"(at least {MIN_ROWS}, with both outcomes)", "import more history")  # fmt: skip
    usable = _learnable(matrix, outcomes, end)
    if usable is None:
        raise ConfigError("data", f"the development rows before bar {end} are too few to fit the final model on "
                                  f"(at least {MIN_ROWS} labelled, with both outcomes)", "import more history")  # fmt: skip
    final = classifier(point, seed=seed, threads=threads)
    final.fit(matrix[:end][usable], outcomes[:end][usable].astype(int))
    holdout_raw = _scored(final, matrix[holdout_start:])
    calibrated[holdout_start:] = calibration.apply(chosen[0], holdout_raw)
    return Probabilities(classifier=final, calibrator=chosen[0], calibration_scores=chosen[1], out_of_fold=raw,
                         holdout=holdout_raw, calibrated=calibrated)  # fmt: skip


def _calibrator(raw: np.ndarray, outcomes: np.ndarray, known: np.ndarray, end: int) -> tuple[Calibration, dict[str, float]] | None:
    """`research.calibration.choose` on the known out-of-fold rows before ``end``; None when they are too few."""
    rows = known[:end]
    if not _enough(outcomes[:end][rows]):
        return None
    return calibration.choose(raw[:end][rows].astype(np.float64), outcomes[:end][rows])


def purge_in_rows(closes: np.ndarray, horizon: int, embargo: int) -> tuple[int, int]:
    """A label ``horizon`` and an ``embargo`` counted in bars of the model, as rows: as many as the longest bar holds
    (``closes`` marks the rows that close a bar; a model deciding at closes has a row per bar)."""
    per_bar = int(np.diff(np.flatnonzero(np.concatenate([[1], closes]))).max(initial=1))
    return horizon * per_bar, embargo * per_bar


def out_of_fold(
    features: np.ndarray, labels: np.ndarray, *, splits: list[Split], holdout_start: int, horizon: int,
    embargo: int = 0, seed: int = 0, threads: int = 1, point: dict[str, float] = SWEEP_POINT,
) -> Probabilities:
    """Calibrated probabilities of one grid point for every test block and the holdout, each from its own past only."""
    raw = fold_probabilities(features, labels, splits, [int(point["n_estimators"])], int(point["max_depth"]),
                             float(point["learning_rate"]), seed=seed, threads=threads)[int(point["n_estimators"])]  # fmt: skip
    return calibrate(features, labels, raw, splits=splits, holdout_start=holdout_start, gap=horizon + 1 + embargo, point=point,
                     seed=seed, threads=threads)  # fmt: skip
