"""Deflated Sharpe and PBO behave as their papers say on cases whose answer is known."""

from __future__ import annotations

import numpy as np

from research.overfitting import (
    block_sharpe,
    deflated_sharpe,
    probability_of_overfitting,
)


def _blocks(returns: np.ndarray, count: int = 10) -> np.ndarray:
    parts = np.array_split(returns, count, axis=1)
    return np.stack([np.stack([p.sum(axis=1), (p * p).sum(axis=1), np.full(len(p), p.shape[1])], axis=1) for p in parts], axis=1)


def test_pure_noise_sweeps_overfit_and_a_real_edge_does_not():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((50, 2000)) * 0.01
    assert probability_of_overfitting(_blocks(noise)) > 0.3
    edge = noise.copy()
    edge[7] += 0.004  # one configuration truly earns
    assert probability_of_overfitting(_blocks(edge)) < 0.05


def test_more_trials_deflate_the_same_sharpe():
    few = deflated_sharpe(0.05, 0.0004, 10, 2000, 0.0, 3.0)
    many = deflated_sharpe(0.05, 0.0004, 1000, 2000, 0.0, 3.0)
    assert 0 < many < few < 1


def test_block_sharpe_matches_numpy():
    rng = np.random.default_rng(1)
    returns = rng.standard_normal((3, 500)) * 0.01 + 0.001
    sums = np.stack([returns.sum(axis=1), (returns**2).sum(axis=1), np.full(3, 500.0)], axis=1)
    assert np.allclose(block_sharpe(sums), returns.mean(axis=1) / returns.std(axis=1, ddof=1))
