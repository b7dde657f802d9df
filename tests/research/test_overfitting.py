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


def test_pbo_is_undefined_when_no_configuration_traded():
    assert np.isnan(probability_of_overfitting(_blocks(np.zeros((40, 2000)))))  # once 1.0: "the winner is likely luck"


def test_the_winner_of_a_halved_noise_sweep_deflates_as_much_as_over_all_trials():
    """256 pure-noise configurations halved four times: judged against the survivors alone, the winner's deflated Sharpe
    came out near 0.87; against every trial (each at its last round) it is what a full sweep gives."""
    from research.leaderboard import _last_rounds
    import pyarrow as pa

    rng = np.random.default_rng(3)
    noise = rng.standard_normal((256, 4000)) * 0.01
    rows, alive = [], np.arange(256)
    for rung, stop in ((1, 800), (2, 1600), (3, 2400), (4, 3200), (0, 4000)):
        part = noise[alive, :stop]
        rows += [{"config": int(c), "rung": rung, "mean": float(m), "std": float(s)}
                 for c, m, s in zip(alive, part.mean(axis=1), part.std(axis=1, ddof=1))]  # fmt: skip
        if rung:
            order = np.argsort(-(part.mean(axis=1) / part.std(axis=1, ddof=1)), kind="stable")
            alive = np.sort(alive[order[: -(-len(alive) // 2)]])
    table = pa.Table.from_pylist(rows)
    last = _last_rounds(table)
    assert last.num_rows == 256 and sorted(last.column("config").to_pylist()) == list(range(256))
    per_bar = lambda t: np.asarray(t.column("mean")) / np.asarray(t.column("std"))  # noqa: E731
    survivors = table.filter(pa.compute.equal(table.column("rung"), 0))
    best = per_bar(survivors).max()
    over_all = deflated_sharpe(best, float(np.var(per_bar(last), ddof=1)), 256, 4000, 0.0, 3.0)
    over_survivors = deflated_sharpe(best, float(np.var(per_bar(survivors), ddof=1)), 256, 4000, 0.0, 3.0)
    assert over_all < over_survivors and over_all < 0.8, (over_all, over_survivors)
