"""Batch = incremental = reference on real market data, and warm-up means convergence."""

from __future__ import annotations

import numpy as np
import pytest

from engine.indicators import INDICATORS, TOLERANCE
from tests import market, reference


def _cases():
    return [
        pytest.param(name, series, id=f"{name}-{series}")
        for name, cls in INDICATORS.items()
        for series in market.series_for(cls)
    ]


def _load(name: str, series: str):
    cls = INDICATORS[name]
    data = {**market.BAR_SERIES, **market.TICK_SERIES}[series]()
    defaults = {p.name: p.default for p in cls.parameters}
    return cls, data, [data[column] for column in cls.inputs], defaults


def test_every_indicator_has_a_reference_and_real_series():
    assert set(reference.REFERENCES) == set(INDICATORS)
    for name, cls in INDICATORS.items():
        assert market.series_for(cls), name


@pytest.mark.parametrize(("name", "series"), _cases())
def test_batch_equals_incremental(name, series):
    cls, _, columns, params = _load(name, series)
    batch = market.run_batch(cls, columns, params)
    incremental = market.run_incremental(cls(**params), columns)
    assert batch.shape == incremental.shape
    np.testing.assert_array_equal(np.isnan(batch), np.isnan(incremental))
    np.testing.assert_allclose(batch, incremental, rtol=1e-9, atol=0.0, equal_nan=True)


@pytest.mark.parametrize(("name", "series"), _cases())
def test_matches_reference_after_warmup(name, series):
    cls, data, columns, params = _load(name, series)
    ours = market.run_batch(cls, columns, params)
    expected = reference.REFERENCES[name](data, **{k: v for k, v in params.items() if k != "tolerance"})  # ours alone
    warm = cls(**params).warmup - 1
    assert np.isnan(ours[:, :warm]).all(), "outputs must be NaN before warm-up"
    for output, mine, theirs in zip(cls.outputs, ours, expected, strict=True):
        mine, theirs = mine[warm:], np.asarray(theirs)[warm:]
        assert np.isfinite(mine).all(), f"{output} has gaps after warm-up"
        scale = np.nanmedian(np.abs(theirs))
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9 * scale, err_msg=output)


@pytest.mark.parametrize(("name", "series"), _cases())
def test_warmup_bars_converge_to_unlimited_history(name, series):
    """freqtrade's recursive analysis, before the fact: `warmup` bars are enough history."""
    cls, _, columns, params = _load(name, series)
    _assert_converged(cls, columns, params, 1e-6)


RECURSIVE = [name for name, cls in INDICATORS.items() if TOLERANCE in cls.parameters]


@pytest.mark.parametrize("tolerance", [1e-6, 1e-4, 1e-2])
@pytest.mark.parametrize(("name", "series"), [case for case in _cases() if case.values[0] in RECURSIVE])
def test_a_declared_tolerance_starts_sooner_and_holds(name, series, tolerance):
    """A looser seed tolerance gives the first value sooner, within a few tolerances of unlimited history."""
    cls, _, columns, params = _load(name, series)
    assert cls(**{**params, "tolerance": tolerance}).warmup < cls(**params).warmup
    _assert_converged(cls, columns, {**params, "tolerance": tolerance}, 10 * tolerance)


def _assert_converged(cls, columns, params, bound):
    warmup = cls(**params).warmup
    full = market.run_batch(cls, columns, params)
    n = columns[0].size
    session = columns[cls.inputs.index("session")] if cls.anchor == "session" else None
    checked = 0
    for t in np.linspace(min(2 * warmup, n - 1), n - 1, 40).astype(int):
        start = t - warmup + 1
        if session is not None:
            start = int(np.searchsorted(session, session[t]))  # the session's first bar
            if start == 0:
                continue  # the first session may begin before the data does
        short = market.run_batch(cls, [column[start : t + 1] for column in columns], params)[:, -1]
        for output, mine, truth, history in zip(cls.outputs, short, full[:, t], full, strict=True):
            scale = max(abs(truth), np.nanmedian(np.abs(history)))
            assert abs(mine - truth) <= bound * scale, f"{output} at bar {t}: {mine} vs {truth}"
        checked += 1
    assert checked >= 10
