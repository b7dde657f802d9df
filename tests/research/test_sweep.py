"""Sweeps: grids from the pack, caps, cancellation that keeps work, resume that redoes none, the leaderboard."""

from __future__ import annotations

import csv
import math

import msgspec
import numpy as np
import pyarrow.parquet as pq
import pytest

from cli import main
from engine.errors import ConfigError, NotFoundError
from engine.models import SweepRequest, create_model
from engine.options import strike_score
from research import leaderboard, sweep
from research.backtest import PARAMETERS, trades
from research.leaderboard import read_parts


def test_simple_grid_comes_from_the_pack_and_stays_within_45(swing):
    _, pack, spec = swing
    names, combinations = sweep.grid(pack, spec, SweepRequest(model=spec.name))
    assert names == ["threshold", "allowed_hours", "position_size_pct"]
    assert len(combinations) == 15 <= sweep.SIMPLE_CAP
    assert {c[0] for c in combinations} == {0.5, 0.55, 0.6, 0.65, 0.7}


def test_custom_grid_adds_the_pack_parameters_and_is_capped(swing):
    _, pack, spec = swing
    names, combinations = sweep.grid(pack, spec, SweepRequest(model=spec.name, mode="custom"))
    assert {"stop_loss", "take_profit", "max_positions", "hold_days", "entry_type"} <= set(names)
    assert "strike_selection" not in names  # a stock model has no strikes
    assert len(combinations) <= sweep.CAP
    wide = {"stop_loss": [0.01, 0.02, 0.03, 0.04, 0.05], "take_profit": [0.02, 0.04, 0.06, 0.08]}
    with pytest.raises(ConfigError) as caught:
        sweep.grid(pack, spec, SweepRequest(model=spec.name, mode="custom", overrides=wide))
    assert caught.value.field == "grid" and "--pro" in caught.value.fix
    assert len(sweep.grid(pack, spec, SweepRequest(model=spec.name, mode="custom", overrides=wide, pro=True))[1]) > sweep.CAP
    names, combinations = sweep.grid(pack, spec, SweepRequest(model=spec.name, mode="custom", preset="conservative"))
    assert {c[names.index("threshold")] for c in combinations} == {0.65, 0.70}


def test_option_models_sweep_strikes_and_expiries_and_trade_premiums(swing):
    space, pack, _ = swing
    spec = create_model(pack, strategy="momentum_swing", instrument="options", settings={"underlying": "SPY"}, evaluation="1d")
    space.add_model(spec, actor="test")
    request = SweepRequest(model=spec.name, mode="custom", overrides={"stop_loss": [0.05], "take_profit": [0.1]})
    names, combinations = sweep.grid(pack, spec, request)
    assert {c[names.index("strike_selection")] for c in combinations} == {"ATM", "OTM_5"}
    assert {c[names.index("dte_target")] for c in combinations} == {30, 60}
    row = dict(zip(PARAMETERS, sweep.config_row(names, combinations[-1], pack, spec, request, 1)))
    assert row["strike_score"] == strike_score("OTM_5") and row["expiry_sessions"] == 60
    assert row["slippage"] == pack.options.slippage_bps / 10_000  # on the premium, not the stock's 5 bp
    market = sweep.prepare(space.home, pack, spec, request).market
    assert np.isfinite(market.volatility[30:]).all() and market.closed[-1] > market.opened[-1]
    listed, _ = trades(market, sweep.config_row(names, combinations[0], pack, spec, request, 1))
    assert listed and all(t.strike > 0 and t.entry_price < 0.2 * market.close[t.entry_bar, 0] for t in listed)
    with pytest.raises(ConfigError) as caught:
        sweep.grid(pack, spec, SweepRequest(model=spec.name, mode="custom", overrides={"strike_selection": ["OTM_50"]}))
    assert caught.value.field == "set.strike_selection"
    with pytest.raises(ConfigError, match="instrument.option_type: puts cannot trade momentum_swing's long signals"):
        create_model(pack, strategy="momentum_swing", instrument="options", settings={"underlying": "SPY", "option_type": "put"})


def test_a_finished_sweep_has_a_gated_ranked_leaderboard(swing, tmp_path):
    space, pack, spec = swing
    sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name, universe=["SPY", "QQQ", "IWM"]),
                           actor="test", announce=lambda line: None)
    record = space.sweep(sweep_id)
    assert record.status == "finished" and record.done == record.total == 15
    table, meta = leaderboard.load(space, sweep_id)
    rows = table.to_pylist()
    assert [row["rank"] for row in rows] == list(range(1, 16))
    assert all(a["sharpe"] >= b["sharpe"] for a, b in zip(rows, rows[1:]))
    for row in rows:
        assert row["gate"] in ("PASS", "MARGINAL", "FAIL") and (row["gate"] == "PASS") == (row["reasons"] == "")
        assert 0 <= row["deflated_sharpe"] <= 1 and np.isfinite(row["holdout_sharpe"]) and row["fold_sharpe_std"] >= 0
    assert 0 <= meta["pbo"] <= 1 and meta["lineage"]["pack_sha"] == spec.pack_sha
    assert [e.action for e in space.audit_log(sweep_id)] == ["sweep.start", "sweep.finish"]
    exported = tmp_path / "board.csv"
    leaderboard.write_csv(table, exported)
    assert len(list(csv.reader(exported.open()))) == 16
    recipe = msgspec.json.decode(leaderboard.save_recipe(space, sweep_id).read_bytes())
    assert recipe["parameters"]["threshold"] == rows[0]["threshold"] and recipe["lineage"]["model_config_sha"] == spec.model_config_sha
    assert "probability of backtest overfitting" in leaderboard.render(table, meta)
    from research.plots import plot

    curves = {row["config"]: np.zeros(100) for row in rows[:3]}
    times = np.arange(100, dtype=np.int64) * 86_400_000_000_000 + 1_700_000_000_000_000_000
    paths = plot(space, sweep_id, curves, 3, times=times)
    assert [path.name for path in paths] == ["equity.png", "heatmap.png"] and all(path.stat().st_size > 1000 for path in paths)


def _custom(space, pack, spec, **given):
    request = SweepRequest(model=spec.name, mode="custom", overrides={"max_positions": [1]}, **given)
    return request, sweep.grid(pack, spec, request)


def test_cancel_keeps_finished_chunks_and_resume_redoes_none(swing, monkeypatch):
    space, pack, spec = swing
    monkeypatch.setattr(sweep, "_CHUNK", 16)
    monkeypatch.setattr(sweep, "_CHUNK_SECONDS", 0.0)
    request, (_, combinations) = _custom(space, pack, spec, prune=False)
    seen = []

    def cancel_after_two_chunks(progress):
        seen.append(progress.done)
        if len(seen) == 2:
            sweep.cancel(space, progress.sweep, actor="other shell")

    sweep_id = sweep.start(space, pack, spec, request, actor="test", report=cancel_after_two_chunks, announce=lambda line: None)
    record = space.sweep(sweep_id)
    assert record.status == "cancelled" and record.done == seen[-1] < len(combinations)
    kept = read_parts(space.sweeps_folder / sweep_id).column("config").to_pylist()
    assert len(kept) == record.done
    with pytest.raises(NotFoundError, match="sigma sweep resume"):
        leaderboard.load(space, sweep_id)

    done_on_resume = []
    sweep.resume(space, pack, spec, sweep_id, actor="test", report=lambda p: done_on_resume.append(p.done))
    configs = read_parts(space.sweeps_folder / sweep_id).column("config").to_pylist()
    assert sorted(configs) == list(range(len(combinations)))  # each configuration backtested exactly once
    assert space.sweep(sweep_id).status == "finished" and done_on_resume[-1] == len(combinations)
    actions = [e.action for e in space.audit_log(sweep_id)]
    assert actions == ["sweep.start", "sweep.cancel_requested", "sweep.cancel", "sweep.resume", "sweep.finish"]


def test_ctrl_c_marks_the_sweep_cancelled_and_a_killed_sweep_resumes(swing, monkeypatch):
    space, pack, spec = swing
    monkeypatch.setattr(sweep, "_CHUNK", 16)
    monkeypatch.setattr(sweep, "_CHUNK_SECONDS", 0.0)
    request, (_, combinations) = _custom(space, pack, spec, prune=False)

    def interrupt(progress):
        raise KeyboardInterrupt

    sweep_id = sweep.start(space, pack, spec, request, actor="test", report=interrupt, announce=lambda line: None)
    (record,) = space.sweeps(spec.name)
    assert record.id == sweep_id
    assert record.status == "cancelled" and record.done == 16
    # A sweep killed with SIGKILL stays "running" with a dead process id; resume takes it over.
    space.update_sweep(record.id, status="running", pid=2**22 + 12345)
    sweep.resume(space, pack, spec, record.id, actor="test")
    assert sorted(read_parts(space.sweeps_folder / record.id).column("config").to_pylist()) == list(range(len(combinations)))


def test_pruning_halves_by_rung_and_lists_what_it_pruned(swing):
    space, pack, spec = swing
    request, (_, combinations) = _custom(space, pack, spec)
    assert len(combinations) > sweep.PRUNE_ABOVE
    sweep_id = sweep.start(space, pack, spec, request, actor="test", announce=lambda line: None)
    folder = space.sweeps_folder / sweep_id
    sizes = [read_parts(folder, rung).num_rows for rung in (1, 2, 3, 4, 0)]
    assert sizes[0] == len(combinations)
    assert all(later == -(-earlier // 2) for earlier, later in zip(sizes, sizes[1:]))
    pruned = pq.read_table(folder / "pruned.parquet")
    assert pruned.num_rows == len(combinations) - sizes[-1]
    assert set(pruned.column("pruned_at_rung").to_pylist()) == {1, 2, 3, 4}
    assert space.sweep(sweep_id).summary["pruned"] == pruned.num_rows
    record = space.sweep(sweep_id)
    assert record.done == record.total == sum(sizes), "the counter counts the backtests the total counts (465/240 once)"
    # The winner is judged against every configuration tried: each pruned one at the round it reached, not survivors alone.
    rows = read_parts(folder).to_pylist()
    last = {}
    for row in rows:
        reached = math.inf if row["rung"] == 0 else row["rung"]
        if reached >= last.get(row["config"], (-1, None))[0]:
            last[row["config"]] = (reached, row)
    per_bar = [r["mean"] / r["std"] if r["std"] > 0 else 0.0 for _, r in last.values()]
    trials = leaderboard.trials(space, sweep_id)
    assert len(last) == len(combinations) == trials.count and trials.variance == pytest.approx(np.var(per_bar, ddof=1))
    survivors = [r for r in rows if r["rung"] == 0]
    assert len(survivors) < len(last), "the survivors alone would have been a narrower spread of trials"


def test_a_sweep_that_fails_or_is_killed_is_never_shown_running(swing, monkeypatch):
    space, pack, spec = swing
    request, _ = _custom(space, pack, spec, prune=False)

    def broken(*args, **kwargs):
        raise RuntimeError("the out-of-fold training broke")

    monkeypatch.setattr(sweep, "prepare", broken)
    with pytest.raises(RuntimeError):
        sweep.start(space, pack, spec, request, actor="test", announce=lambda line: None)
    [failed] = space.sweeps()
    assert failed.status == failed.shown_status == "failed"
    assert [e.action for e in space.audit_log(failed.id)] == ["sweep.start", "sweep.fail"]
    space.update_sweep(failed.id, status="running", pid=2**22 + 12345)  # what a SIGKILLed sweep leaves behind
    assert space.sweep(failed.id).shown_status == "killed"


@pytest.mark.parametrize(("stored", "refusal"), [
    ({"source": "synthetic, dividend-adjusted", "adjustment": "total_return"}, "prices are normalised differently .*QQQ total_return"),
    ({"source": "synthetic", "hours": "regular"}, "bars keep different hours .*QQQ regular"),
])  # fmt: skip
def test_a_universe_mixing_adjustments_or_hours_is_refused(swing, stored, refusal):
    """Cases 15 and 18: one declared normalisation and one set of hours per universe; Close beside Adj Close, or one
    ticker's pre-market bars beside another's session alone, in one sweep is refused before any work."""
    from engine.store import load_bars, store_bars
    from tests.research.conftest import US

    space, pack, spec = swing
    bars, _ = load_bars(space.home, "QQQ", "1d")
    store_bars(space.home, bars, US, **stored)
    with pytest.raises(ConfigError, match=f"universe: the tickers' {refusal}"):
        sweep.start(space, pack, spec, SweepRequest(model=spec.name, universe=["SPY", "QQQ"]), actor="test", announce=lambda line: None)
    assert all(record.status != "running" for record in space.sweeps())


def test_the_data_hash_of_an_evaluated_model_covers_its_intervals(tmp_path):
    """Lineage, and training's checkpoint names (`research.training.fit_configuration`): the intervals a model decides at
    are as much its data as its bars; re-imported intervals change the hash, and a model deciding at closes ignores them."""
    from engine.bars import Bars, resample
    from engine.store import store_bars
    from research.synthetic import generate
    from tests.research.conftest import US

    minutes, _ = generate(["SPY"], "1m", 3, US, seed=3)["SPY"]
    for cadence in ("1d", "15m"):
        store_bars(tmp_path, resample(minutes, cadence, US), US, source="synthetic")
    evaluated, at_close = (sweep.data_sha(tmp_path, ["SPY"], "1d", each) for each in ("15m", None))
    intervals = resample(minutes, "15m", US)
    close = intervals.close.copy()
    close[5] *= 1.001
    store_bars(tmp_path, Bars("SPY", "15m", intervals.start, intervals.end, intervals.open, np.maximum(intervals.high, close),
                              intervals.low, close, intervals.volume), US, source="synthetic, re-imported")  # fmt: skip
    assert sweep.data_sha(tmp_path, ["SPY"], "1d", "15m") != evaluated
    assert sweep.data_sha(tmp_path, ["SPY"], "1d", None) == at_close


def test_the_estimate_counts_a_pruned_sweeps_backtests_and_starts_nothing(swing, monkeypatch, capsys):
    space, pack, spec = swing
    request, (_, combinations) = _custom(space, pack, spec, universe=["SPY", "QQQ"])
    told = sweep.estimate(space.home, pack, spec, request)
    assert told.configurations == len(combinations) and told.tickers == 2 and told.rows == 1260
    # Halving at each of the four rungs: every configuration, then half of them, rounded up, each rung.
    alive, backtests = len(combinations), 0
    for _ in range(4):
        backtests += alive
        alive = -(-alive // 2)
    assert told.backtests == backtests + alive
    assert told.training_seconds > 0 and told.backtest_seconds > 0 and told.seconds == told.training_seconds + told.backtest_seconds
    unpruned = sweep.estimate(space.home, pack, spec, msgspec.structs.replace(request, prune=False))
    assert unpruned.backtests == len(combinations)
    monkeypatch.setenv("SIGMA_HOME", str(space.home))
    assert main(["sweep", "run", spec.name, "--mode", "custom", "--set", "max_positions=1", "--estimate"]) == 0
    assert f"{len(combinations):,} configurations ({told.backtests:,} backtests) x 1 ticker(s) over 1,260 bars: about" in capsys.readouterr().out
    assert space.sweeps() == []  # nothing started
    missing = msgspec.structs.replace(request, universe=["DIA"])
    with pytest.raises(ConfigError) as refused:
        sweep.estimate(space.home, pack, spec, missing)
    assert refused.value.field == "data" and "no 1d bars for DIA" in refused.value.problem
