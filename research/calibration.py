"""Calibration: turning tree probabilities into honest ones, and measuring how honest they are.

Two calibrators are fitted on out-of-fold probabilities: isotonic regression (a
monotone piecewise-linear map) and a sigmoid on the logit (Platt scaling). The one
with the lower Brier score on the later half of the out-of-fold rows, after fitting on
the earlier half, is refitted on all of them: chosen out of sample and in time order.
Both are plain numbers (`engine.scoring.Calibration`), exported as ONNX nodes.

The isotonic curve is kept at knots at least `KNOT_SPACING` apart (read off the fitted
steps at quantiles of the probabilities). Its slope then never exceeds 1 /
`KNOT_SPACING`, so the float32 rounding of the trees (ONNX Runtime and XGBoost differ
by up to 2.4e-7) moves a calibrated probability by at most 5e-6: within the export's
1e-5 check. Raw isotonic steps, as steep as the data is dense, would not be.
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss, roc_auc_score

from engine.scoring import Calibration

__all__ = ["fit", "choose", "apply", "brier", "expected_calibration_error", "reliability", "quality", "EPSILON"]

EPSILON = 1e-6
"""Probabilities are clipped this far from 0 and 1 before taking a logit."""
KNOT_SPACING = 0.05


def logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, EPSILON, 1.0 - EPSILON)
    return np.log(clipped / (1.0 - clipped))


def fit(method: str, p: np.ndarray, y: np.ndarray) -> Calibration:
    """Fit one calibrator (``isotonic`` or ``sigmoid``) to probabilities ``p`` and outcomes ``y``."""
    if method == "isotonic":
        curve = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        knots = _spaced(np.quantile(p, np.linspace(0.0, 1.0, 41)))
        values = curve.predict(knots)
        if len(knots) == 2 and knots[1] - knots[0] < KNOT_SPACING:
            values[:] = float(np.mean(y))  # the probabilities barely vary: a level, not a slope
        return Calibration(method="isotonic", x=knots.tolist(), y=values.tolist())
    regression = LogisticRegression(C=1e6).fit(logit(p)[:, None], y)
    return Calibration(method="sigmoid", a=-float(regression.coef_[0, 0]), b=-float(regression.intercept_[0]))


def _spaced(candidates: np.ndarray) -> np.ndarray:
    """The sorted candidates thinned to `KNOT_SPACING` apart, keeping the first and the last."""
    kept = [candidates[0]]
    for knot in candidates[1:]:
        if knot - kept[-1] >= KNOT_SPACING:
            kept.append(knot)
    if candidates[-1] > kept[-1]:
        if len(kept) > 1 and candidates[-1] - kept[-1] < KNOT_SPACING:
            kept.pop()
        kept.append(candidates[-1])
    return np.asarray(kept)


def apply(calibration: Calibration, p: np.ndarray) -> np.ndarray:
    """Calibrated probabilities, as the exported graph computes them."""
    if calibration.method == "isotonic":
        return np.interp(p, calibration.x, calibration.y)
    return 1.0 / (1.0 + np.exp(calibration.a * logit(p) + calibration.b))


def choose(p: np.ndarray, y: np.ndarray) -> tuple[Calibration, dict[str, float]]:
    """The calibrator with the lower later-half Brier score, refitted on all rows; and the scores.

    A sigmoid cannot be fitted to one outcome: where the first half has only one (long
    runs of one label, as a model evaluated hourly on weekly labels gives), it is not a
    candidate, and isotonic, which can, is scored alone.
    """
    half = len(p) // 2
    methods = ("isotonic", "sigmoid") if len(np.unique(y[:half])) > 1 else ("isotonic",)
    scores = {method: brier(apply(fit(method, p[:half], y[:half]), p[half:]), y[half:]) for method in methods}
    best = min(scores, key=scores.get)
    return fit(best, p, y), scores


def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def reliability(p: np.ndarray, y: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Per probability decile: mean predicted, observed frequency and count (the calibration curve)."""
    index = np.minimum((p * bins).astype(int), bins - 1)
    table = []
    for b in range(bins):
        inside = index == b
        if inside.any():
            table.append({"low": b / bins, "high": (b + 1) / bins, "predicted": float(p[inside].mean()),
                          "observed": float(y[inside].mean()), "count": int(inside.sum())})  # fmt: skip
    return table


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Count-weighted mean gap between predicted and observed frequency over the deciles."""
    table = reliability(p, y, bins)
    return sum(row["count"] * abs(row["predicted"] - row["observed"]) for row in table) / max(1, len(p))


def quality(p: np.ndarray, y: np.ndarray) -> dict[str, object]:
    """AUC, log loss, Brier score, expected calibration error and the reliability table."""
    both = len(np.unique(y)) == 2
    return {
        "rows": int(len(p)),
        "auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "log_loss": float(log_loss(y, np.clip(p, EPSILON, 1 - EPSILON), labels=[0, 1])),
        "brier": brier(p, y),
        "ece": expected_calibration_error(p, y),
        "reliability": reliability(p, y),
    }
