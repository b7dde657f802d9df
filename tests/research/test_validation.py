"""Honest validation: folds are purged, and nothing before time t depends on data after t."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.bars import COLUMNS, Bars
from engine.calendar import session_days
from engine.features import feature_matrix, model_features
from engine.models import create_model
from engine.packs import load_pack
from packs import OFFICIAL
from research.labels import forward_returns, label
from research.synthetic import generate
from research.validation import _scored, out_of_fold, walk_forward
from tests.research.conftest import US


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(100, 5000), folds=st.integers(2, 8), horizon=st.integers(1, 30), embargo=st.integers(0, 20))
def test_training_labels_never_reach_into_their_test_block(rows, folds, horizon, embargo):
    splits, holdout = walk_forward(rows, folds=folds, horizon=horizon, embargo=embargo)
    assert holdout == rows - round(rows * 0.2)
    for split in splits:
        # The last training label looks at open[train_end - 1 + 1 + horizon], before the test block starts.
        assert split.train_end - 1 + horizon + 1 < split.test_start or split.train_end == 0
        assert split.test_start < split.test_end <= holdout
    assert [s.test_start for s in splits[1:]] == [s.test_end for s in splits[:-1]]


def test_labels_are_the_next_open_to_open_return_net_of_costs():
    bars = Bars("X", "1d", np.arange(5), np.arange(1, 6), [10, 10, 11, 12, 10], [1] * 5, [1] * 5, [1] * 5, [1] * 5)
    assert np.allclose(forward_returns(bars, 2)[:2], [12 / 10 - 1, 10 / 11 - 1])
    recipe = load_pack(OFFICIAL / "swingsigma").strategies["momentum_swing"].label
    assert np.isnan(label(bars, recipe)).all()  # horizon 5: no future long enough


def _pipeline(bars: Bars):
    pack = load_pack(OFFICIAL / "swingsigma")
    spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"})
    recipe = pack.strategies[spec.strategy].label
    session, _ = session_days(bars.start, US)
    features = feature_matrix(model_features(spec.features, spec.indicators), spec.indicators, bars, session)
    labels = label(bars, recipe)
    splits, holdout = walk_forward(len(bars), horizon=recipe.horizon_bars, embargo=5)
    probabilities = out_of_fold(features, labels, splits=splits, holdout_start=holdout, horizon=recipe.horizon_bars, embargo=5).calibrated
    return features, labels, probabilities


def test_changing_the_future_changes_nothing_before_it():
    # Features warm up over ~590 bars and a test block is calibrated on earlier out-of-fold rows: the first calibrated
    # development probabilities come in the fifth block, from bar 1,067 on; the cut falls in the sixth.
    bars, _ = generate(["SPY"], "1d", 2000, US, seed=11)["SPY"]
    features, labels, probabilities = _pipeline(bars)
    assert np.isfinite(probabilities).sum() > 600
    cut = 1400
    assert np.isfinite(probabilities[:cut - 5]).sum() > 300  # before the cut, there is something to compare
    horizon = 5
    rng = np.random.default_rng(0)
    shocked = Bars("SPY", "1d", bars.start, bars.end, *(
        np.r_[getattr(bars, c)[:cut], getattr(bars, c)[cut:] * np.exp(0.2 * rng.standard_normal(len(bars) - cut))]
        for c in COLUMNS[2:]
    ))  # fmt: skip
    shocked.high[:] = np.maximum.reduce([shocked.high, shocked.open, shocked.close])
    shocked.low[:] = np.minimum.reduce([shocked.low, shocked.open, shocked.close])
    features_after, labels_after, probabilities_after = _pipeline(shocked)
    before = slice(0, cut - horizon - 1)
    assert np.array_equal(features[:cut], features_after[:cut], equal_nan=True)
    assert np.array_equal(labels[before], labels_after[before], equal_nan=True)
    assert np.array_equal(probabilities[:cut - horizon], probabilities_after[:cut - horizon], equal_nan=True)
    assert not np.array_equal(probabilities[cut:], probabilities_after[cut:], equal_nan=True)  # the shock is seen


def test_a_block_still_warming_up_is_not_handed_to_xgboost():
    """Item 21 of the hardening issue: an empty dataset made XGBoost warn into the sweep's output."""

    class Untouchable:
        def predict_proba(self, rows, iteration_range):
            raise AssertionError(f"asked to score {len(rows)} rows")

    cold = np.full((5, 3), np.nan, dtype=np.float32)
    assert np.isnan(_scored(Untouchable(), cold)).all()
    half = cold.copy()
    half[3:] = 1.0

    class Half:
        def predict_proba(self, rows, iteration_range):
            assert len(rows) == 2
            return np.tile([0.3, 0.7], (len(rows), 1))

    np.testing.assert_array_equal(_scored(Half(), half), [np.nan, np.nan, np.nan, 0.7, 0.7])
