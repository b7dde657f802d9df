"""Calibration: the choice by Brier score, a slope the export can reproduce, honest error measures, the ONNX nodes."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.scoring import INPUT, OUTPUT, Calibration
from research import calibration
from research.calibration import KNOT_SPACING
from research.export import to_onnx


def _outcomes(p: np.ndarray, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random(len(p)) < p).astype(float)


def test_the_calibrator_with_the_lower_later_half_brier_is_chosen():
    truth = np.random.default_rng(1).random(4000)
    outcomes = _outcomes(truth)
    overconfident = np.clip(0.5 + 1.8 * (truth - 0.5), 0.01, 0.99)
    chosen, scores = calibration.choose(overconfident, outcomes)
    assert set(scores) == {"isotonic", "sigmoid"} and chosen.method == min(scores, key=scores.get)
    fixed = calibration.apply(chosen, overconfident)
    assert calibration.brier(fixed, outcomes) < calibration.brier(overconfident, outcomes)
    assert calibration.expected_calibration_error(fixed, outcomes) < calibration.expected_calibration_error(overconfident, outcomes)


def test_a_first_half_of_one_outcome_is_calibrated_by_isotonic_alone():
    """Long runs of one label (an hourly model of weekly labels): the sigmoid cannot be fitted to the first half."""
    p = np.linspace(0.3, 0.7, 200)
    outcomes = np.r_[np.zeros(100), _outcomes(p[100:])]
    chosen, scores = calibration.choose(p, outcomes)
    assert set(scores) == {"isotonic"} and chosen.method == "isotonic"


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), rows=st.integers(50, 3000), spread=st.floats(0.01, 0.5))
def test_isotonic_knots_keep_the_slope_the_export_can_reproduce(seed, rows, spread):
    rng = np.random.default_rng(seed)
    p = np.clip(0.5 + spread * rng.standard_normal(rows), 0.001, 0.999)
    fitted = calibration.fit("isotonic", p, _outcomes(p, seed))
    x, y = np.array(fitted.x), np.array(fitted.y)
    assert np.all(np.diff(y) >= 0) and x[0] == p.min() and x[-1] == p.max()
    slopes = np.diff(y) / np.maximum(np.diff(x), 1e-300)
    assert len(x) == 1 or np.max(slopes) <= 1 / KNOT_SPACING + 1e-9


def test_a_calibrated_forecast_has_a_small_calibration_error():
    p = np.random.default_rng(2).random(20_000)
    honest = calibration.quality(p, _outcomes(p))
    assert honest["ece"] < 0.02 and 0.7 < honest["auc"] < 0.9
    assert sum(row["count"] for row in honest["reliability"]) == len(p)
    assert calibration.quality(p**3, _outcomes(p))["ece"] > 0.1


@pytest.mark.parametrize("method", ["isotonic", "sigmoid"])
def test_the_exported_graph_applies_the_calibrator_as_numpy_does(method):
    import onnxruntime

    rng = np.random.default_rng(3)
    x = rng.standard_normal((3000, 4)).astype(np.float32)
    y = (x[:, 0] + rng.standard_normal(3000) > 0).astype(int)
    model = xgboost.XGBClassifier(n_estimators=30, max_depth=3, random_state=0, n_jobs=1).fit(x[:1500], y[:1500])
    raw = model.predict_proba(x[1500:])[:, 1].astype(np.float64)
    fitted = calibration.fit(method, raw, y[1500:].astype(float))
    session = onnxruntime.InferenceSession(to_onnx(model, 4, fitted))
    exported = session.run([OUTPUT], {INPUT: x})[0][:, 0]
    native = calibration.apply(fitted, model.predict_proba(x)[:, 1].astype(np.float64))
    assert np.max(np.abs(exported - native)) <= 1e-5


def test_a_constant_calibrator_exports():
    import onnxruntime

    x = np.zeros((10, 2), dtype=np.float32)
    model = xgboost.XGBClassifier(n_estimators=2, max_depth=1, n_jobs=1).fit(np.r_[x, x + 1], [0] * 10 + [1] * 10)
    flat = Calibration(method="isotonic", x=[0.4], y=[0.3])
    exported = onnxruntime.InferenceSession(to_onnx(model, 2, flat)).run([OUTPUT], {INPUT: x})[0][:, 0]
    assert np.allclose(exported, 0.3)
