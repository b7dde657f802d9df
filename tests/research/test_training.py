"""Training: selection rules, determinism, the ONNX check, checkpoints that survive a kill, the registry's life cycle."""

from __future__ import annotations

import _thread
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import sqlite3
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import msgspec
import numpy as np
import pyarrow.parquet as pq
import pytest
import xgboost

from cli import main
from engine.calendar import CALENDARS, session_days
from engine.errors import ConfigError, IntegrityError, NotFoundError
from engine.features import feature_matrix, model_features
from engine.models import SweepRequest, create_model
from engine.packs import PackTraining, load_pack
from engine.scoring import Calibration, ContractError, Manifest, Scorer
from engine.store import load_bars, store_bars
from engine.workspace import Workspace
from packs import OFFICIAL
from research import calibration, review, sweep, training
from research.backtest import METRICS, run
from research.export import ExportError, verify
from research.leaderboard import load
from research.synthetic import generate
from research.training import TrainRequest, fit_configuration
from research.validation import FIXED, SWEEP_POINT

US = CALENDARS["us_equities"]
SMALL = {"n_estimators": [20, 40], "max_depth": [2, 3], "learning_rate": [0.1]}


def _clock() -> datetime:
    return datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """(home, pack, model, sweep id, the ranks that passed their gates) on eight years of synthetic daily SPY."""
    home = tmp_path_factory.mktemp("training") / "home"
    with Workspace(home, clock=_clock) as space:
        # Eight years: the features warm up over ~590 bars, and calibrated probabilities start a fold later than raw ones.
        bars, _ = generate(["SPY"], "1d", 2000, US, seed=1, start=date(2017, 1, 3))["SPY"]
        store_bars(home, bars, US, source="synthetic")
        pack = load_pack(OFFICIAL / "swingsigma")
        # A random walk has no edge to find: the aggressive gates (Sharpe 0.4) let its luckiest rows through.
        spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"}, risk_profile="aggressive",
                            evaluation="1d")  # fmt: skip
        space.add_model(spec, actor="test")
        sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name), actor="test", announce=lambda line: None)
        table, _ = load(space, sweep_id)
    passing = [row["rank"] for row in table.to_pylist() if row["gate"] != "FAIL"]
    assert len(passing) >= 2, "the fixture needs two rows that pass their gates"
    return home, pack, spec, sweep_id, passing


def _registered(space: Workspace, swept) -> str:
    """A trained and registered model of the fixture (trained here when no test registered one yet)."""
    home, pack, spec, sweep_id, passing = swept
    if not space.trained_models():
        request = TrainRequest(sweep=sweep_id, rank=passing[0], grid=SMALL)
        training._register(space, spec, request, fit_configuration(home, pack, spec, request), "test")
    return space.trained_models()[0].id


def _manifest(folder) -> Manifest:
    return msgspec.json.decode((folder / "manifest.json").read_bytes(), type=Manifest)


def test_selection_refuses_failed_rows_and_points_out_near_duplicates(swept):
    home, _, _, sweep_id, passing = swept
    with Workspace(home, clock=_clock) as space:
        table, _ = load(space, sweep_id)
        rows = table.to_pylist()
        failed = [row["rank"] for row in rows if row["gate"] == "FAIL"]
        if failed:
            with pytest.raises(ConfigError, match=f"row {failed[0]} failed its gates"):
                training.select(space, sweep_id, [failed[0]])
        with pytest.raises(ConfigError, match="has no row 999"):
            training.select(space, sweep_id, [999])
        chosen, warnings = training.select(space, sweep_id, passing[:6] if len(passing) >= 6 else passing)
        assert [row["rank"] for row in chosen] == (passing[:6] if len(passing) >= 6 else passing)
        assert (len(chosen) > 5) == any("more than 5" in w for w in warnings)
    a = {"rank": 1, "sharpe": 1.0, "total_return": 0.1, "trades": 10, "threshold": 0.6, "position_size_pct": 5.0}
    twin = a | {"rank": 2, "threshold": 0.65}
    near = a | {"rank": 3, "sharpe": 0.9, "position_size_pct": 5.25}
    far = a | {"rank": 4, "sharpe": 0.8, "threshold": 0.7, "position_size_pct": 10.0}
    axes = ["threshold", "position_size_pct"]
    assert training._near_duplicate(a, twin, axes) == "their backtests are identical"
    assert "only position_size_pct differs" in training._near_duplicate(a, near, axes)
    assert training._near_duplicate(a, far, axes) == ""


def test_a_configuration_trains_calibrates_exports_and_verifies_deterministically(swept, tmp_path):
    home, pack, spec, sweep_id, passing = swept
    request = TrainRequest(sweep=sweep_id, rank=passing[0], grid=SMALL, seed=5)
    folder = fit_configuration(home, pack, spec, request)
    manifest = _manifest(folder)
    model = (folder / "model.onnx").read_bytes()
    assert manifest.lineage.artifact_sha == hashlib.sha256(model).hexdigest()
    assert manifest.metrics["onnx_max_difference"] <= 1e-5
    assert manifest.calibration.method in ("isotonic", "sigmoid")
    assert manifest.hyperparameters["n_estimators"] in (20, 40) and manifest.hyperparameters["max_depth"] in (2, 3)
    assert set(manifest.metrics["grid_log_loss"]) == {"20/2/0.1", "20/3/0.1", "40/2/0.1", "40/3/0.1"}
    for window in ("out_of_fold", "holdout"):
        quality = manifest.metrics[window]
        assert 0 <= quality["auc"] <= 1 and 0 <= quality["brier"] <= 1 and quality["reliability"]
        assert "sharpe" in manifest.metrics[f"backtest_{window}"]
    assert manifest.features == spec.features and set(manifest.metrics["importance"]) <= set(spec.features)
    assert manifest.metrics["samples"] and manifest.versions["xgboost"] == xgboost.__version__
    assert manifest.lineage.pack_sha == spec.lineage.pack_sha and manifest.lineage.data_sha
    # The same seed gives the same model, byte for byte; the checkpoints are not reused across folders.
    for path in folder.glob("grid-*.npz"):
        path.unlink()
    (folder / "progress.jsonl").unlink()
    again = fit_configuration(home, pack, spec, request)
    assert (again / "model.onnx").read_bytes() == model


def test_the_export_check_fails_with_the_figure(swept):
    home, pack, spec, sweep_id, passing = swept
    folder = fit_configuration(home, pack, spec, TrainRequest(sweep=sweep_id, rank=passing[0], grid=SMALL))
    manifest = _manifest(folder)
    bars, _ = load_bars(home, "SPY", "1d")
    session, _ = session_days(bars.start, US)
    rows = feature_matrix(model_features(spec.features, spec.indicators), spec.indicators, bars, session)[-50:].astype(np.float32)
    scored = Scorer((folder / "model.onnx").read_bytes(), manifest).score(rows)
    assert verify((folder / "model.onnx").read_bytes(), manifest, rows, scored.astype(np.float64)) == 0.0
    with pytest.raises(ExportError, match=r"differs from the native model by 1\.00e-03 \(tolerance 1e-05\) on 50"):
        verify((folder / "model.onnx").read_bytes(), manifest, rows, scored + 1e-3)


def test_forests_read_off_a_larger_one_equal_their_own_fit():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((600, 4)).astype(np.float32)
    y = (x[:, 0] + rng.standard_normal(600) > 0).astype(int)
    settings = {"max_depth": 3, "learning_rate": 0.1, "random_state": 1, "n_jobs": 1, **FIXED}
    large = xgboost.XGBClassifier(n_estimators=40, **settings).fit(x, y)
    small = xgboost.XGBClassifier(n_estimators=20, **settings).fit(x, y)
    assert np.array_equal(large.predict_proba(x, iteration_range=(0, 20)), small.predict_proba(x))


def _fit_in_child(home, pack, spec, request):
    """The training, stopped for good after its first grid point's checkpoint: killed there, whatever the machine's speed."""
    fitted, calls = training.fold_probabilities, []

    def once(*args, **kwargs):
        if calls:  # the first grid point is fitted and its checkpoint written: wait here for the kill
            time.sleep(3600)
        calls.append(1)
        return fitted(*args, **kwargs)

    training.fold_probabilities = once
    fit_configuration(home, pack, spec, request)


def test_a_killed_training_resumes_from_its_checkpoints(swept):
    home, pack, spec, sweep_id, passing = swept
    request = TrainRequest(sweep=sweep_id, rank=passing[1], grid={**SMALL, "max_depth": [2, 3, 4, 5]}, seed=2)
    folder = home / "training" / training.trained_id(sweep_id, request.rank)
    child = multiprocessing.get_context("spawn").Process(target=_fit_in_child, args=(home, pack, spec, request))
    child.start()
    deadline = time.monotonic() + 300
    while not [p for p in folder.glob("grid-*.npz") if "partial" not in p.name] and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.join()
    kept = {path.name for path in folder.glob("grid-*.npz") if "partial" not in path.name}
    assert len(kept) == 1 and not (folder / "model.onnx").exists()
    fit_configuration(home, pack, spec, request)
    lines = [msgspec.json.decode(line) for line in (folder / "progress.jsonl").read_bytes().splitlines()]
    resumed = [line for line in lines if line["resumed"]]
    assert len(resumed) == len(kept)  # the finished grid points were read back, not refitted
    killed_then_resumed = (folder / "model.onnx").read_bytes()
    for path in folder.glob("grid-*.npz"):
        path.unlink()
    assert (fit_configuration(home, pack, spec, request) / "model.onnx").read_bytes() == killed_then_resumed


def test_a_cancelled_training_stops_and_keeps_its_checkpoints(swept):
    home, pack, spec, sweep_id, passing = swept
    request = TrainRequest(sweep=sweep_id, rank=passing[0], grid=SMALL, seed=9)
    folder = home / "training" / training.trained_id(sweep_id, request.rank)
    folder.mkdir(parents=True, exist_ok=True)
    for path in folder.glob("grid-*.npz"):
        path.unlink()
    (folder / "cancel").touch()
    with pytest.raises(training.Cancelled, match="cancelled after 0 of 2 grid points"):
        fit_configuration(home, pack, spec, request)
    (folder / "cancel").unlink()


def test_parallel_training_registers_models_that_publish_unpublish_and_discard(swept):
    home, pack, spec, sweep_id, passing = swept
    with Workspace(home, clock=_clock) as space:
        quick = msgspec.structs.replace(pack, training=PackTraining(grid={"n_estimators": [30], "max_depth": [2, 3]}))
        trained = training.train(space, quick, spec, sweep_id, passing[:2], actor="alice", workers=2)
        assert sorted(trained) == sorted(training.trained_id(sweep_id, rank) for rank in passing[:2])
        grid = space.trained(trained[0]).manifest["metrics"]["grid_log_loss"]
        assert set(grid) == {"30/2/0.01", "30/2/0.1", "30/3/0.01", "30/3/0.1"}  # the pack's axes, the default rates
        first = trained[0]
        record = space.trained(first)
        assert record.artifact_sha and record.published_at is None
        scorer = review.load_scorer(space, first)
        assert scorer.manifest.trained_id == first
        version = space.registry_version()
        assert space.publish(first, actor="alice") == version + 1
        assert [r.id for r in space.trained_models(published=True)] == [first]
        with pytest.raises(ConfigError, match="already published"):
            space.publish(first, actor="alice")
        with pytest.raises(ConfigError, match="unpublish it first"):
            space.discard(first, actor="alice")
        assert space.unpublish(first, actor="alice") == version + 2
        second = space.trained(trained[1])
        onnx = home / "artifacts" / second.artifact_sha[:2] / second.artifact_sha
        sealed = home / "artifacts" / second.manifest_sha[:2] / second.manifest_sha
        size = (0 if second.artifact_sha == record.artifact_sha else onnx.stat().st_size) + sealed.stat().st_size
        assert space.discard(second.id, actor="bob") == size and not sealed.exists()
        second = second.id
        with pytest.raises(NotFoundError):
            space.trained(second)
        actions = [(e.action, e.actor) for e in space.audit_log(first)]
        assert ("model.train", "alice") in actions and ("model.publish", "alice") in actions and ("model.unpublish", "alice") in actions
        assert space.audit_log(first)[-1].details["lineage"]["artifact_sha"] == record.artifact_sha
        assert ("model.discard", "bob") in [(e.action, e.actor) for e in space.audit_log(second)]


def test_a_tampered_manifest_or_onnx_artifact_is_refused_by_review_and_sigma_backtest(swept, monkeypatch, capsys):
    home, pack, spec, sweep_id, passing = swept
    monkeypatch.setenv("SIGMA_HOME", str(home))
    with Workspace(home, clock=_clock) as space:
        trained = space.trained(_registered(space, swept))
    first, second = trained.manifest["features"][:2]
    db = sqlite3.connect(home / "sigma.db", isolation_level=None)
    original = db.execute("SELECT manifest FROM trained_models WHERE id = ?", (trained.id,)).fetchone()[0]
    db.execute("UPDATE trained_models SET manifest = json_set(manifest, '$.features[0]', ?, '$.features[1]', ?) WHERE id = ?",
               (second, first, trained.id))  # fmt: skip
    try:
        with Workspace(home, clock=_clock) as space, pytest.raises(
            IntegrityError, match=f'{trained.id} is refused: its manifest .*features\\[0\\] was "{first}", now "{second}"'
        ):
            review.load_scorer(space, trained.id)
        assert main(["backtest", trained.id]) == 2
        assert f"sigma: error: trained model {trained.id} is refused: its manifest" in capsys.readouterr().err
    finally:
        db.execute("UPDATE trained_models SET manifest = ? WHERE id = ?", (original, trained.id))
    path = home / "artifacts" / trained.artifact_sha[:2] / trained.artifact_sha
    onnx = path.read_bytes()
    path.write_bytes(onnx[:-1] + bytes([onnx[-1] ^ 1]))
    try:
        with Workspace(home, clock=_clock) as space, pytest.raises(
            IntegrityError, match=f"{trained.id} is refused: its ONNX bytes \\(artifact {trained.artifact_sha}\\) were changed on disk"
        ):
            review.load_scorer(space, trained.id)
    finally:
        path.write_bytes(onnx)
    with Workspace(home, clock=_clock) as space:
        assert review.load_scorer(space, trained.id).manifest.features[:2] == [first, second]


def test_the_scorer_refuses_a_feature_layout_that_differs_from_its_manifest(swept):
    home, pack, spec, sweep_id, passing = swept
    folder = fit_configuration(home, pack, spec, TrainRequest(sweep=sweep_id, rank=passing[0], grid=SMALL))
    manifest = _manifest(folder)
    scorer = Scorer((folder / "model.onnx").read_bytes(), manifest)
    names, warmup = list(manifest.features), manifest.warmup_bars
    scorer.check(names, np.float32, warmup)
    with pytest.raises(ContractError, match=r"feature names differ .* missing \['rsi'\], unexpected \['rsi_14'\]"):
        scorer.check([n if n != "rsi" else "rsi_14" for n in names], np.float32, warmup)
    swapped = [names[1], names[0], *names[2:]]
    with pytest.raises(ContractError, match=f"feature order differs .* column 0 is {names[1]!r}, the model expects {names[0]!r}"):
        scorer.check(swapped, np.float32, warmup)
    with pytest.raises(ContractError, match="feature dtype float64 differs from the manifest's float32"):
        scorer.check(names, np.float64, warmup)
    with pytest.raises(ContractError, match=f"warm up after {warmup + 5} bars .* after {warmup}"):
        scorer.check(names, np.float32, warmup + 5)
    with pytest.raises(ContractError, match="float32 block"):
        scorer.score(np.zeros((1, len(names)), dtype=np.float64))


def test_the_pipeline_scores_bar_by_bar_what_the_batch_export_scores(swept):
    home, pack, spec, sweep_id, passing = swept
    with Workspace(home, clock=_clock) as space:
        trained = _registered(space, swept)
        scorer = review.load_scorer(space, trained)
        bars, _, _, probabilities = review.score_history(home, scorer)
        result = review.backtest(space, pack, spec, trained)
        window = review.backtest(space, pack, spec, trained, date(2023, 1, 1), date(2023, 12, 31))
    session, _ = session_days(bars.start, US)
    matrix = feature_matrix(model_features(spec.features, spec.indicators), spec.indicators, bars, session).astype(np.float32)
    warm = np.isfinite(matrix).all(axis=1)
    assert np.array_equal(np.isfinite(probabilities), warm)
    assert np.array_equal(probabilities[warm], scorer.score(matrix[warm]).astype(np.float64))  # one model, two drivers
    assert result["scored"] == warm.sum() and result["bars"] == len(bars)
    assert 240 <= window["bars"] <= 260 and window["trades"] <= result["trades"]


def test_the_command_line_walks_a_row_from_train_to_publish(swept, monkeypatch, capsys):
    home, _, _, sweep_id, passing = swept
    monkeypatch.setenv("SIGMA_HOME", str(home))
    # Trained at the sweep's own grid point, a row's model keeps the row's promise: it may be published.
    monkeypatch.setattr(training, "GRID", {name: [value] for name, value in SWEEP_POINT.items()})
    rank = passing[-1]
    trained = training.trained_id(sweep_id, rank)

    def sigma(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = sigma("train", sweep_id, "--rows", str(rank))
    assert code == 0 and "ONNX vs native: max difference" in out and f"publish: `sigma publish {trained}`" in out
    assert "  publishable" in out and "out of fold  row: Sharpe" in out
    assert "exported and verified" in err
    code, out, _ = sigma("models", "review", trained)
    assert code == 0 and "calibration:" in out and (home / "training" / trained / "review.png").stat().st_size > 10_000
    code, out, _ = sigma("backtest", trained, "--from", "2023-01-01", "--to", "2023-06-30", "--json")
    assert code == 0 and 120 <= json.loads(out)["bars"] <= 130
    assert sigma("backtest", trained, "--from", "1999-01-01", "--to", "1999-02-01")[0] == 2
    code, _, err = sigma("publish", trained)  # publishable by training, but live comes after paper
    assert code == 2 and "has no paper record" in err and f"sigma sim run {trained}" in err
    code, out, err = sigma("publish", trained, "--force", "--reason", "a test of the flow")
    assert code == 0 and "registry version" in out and "without a passing paper record" in err
    code, out, _ = sigma("models", "trained", "--json")
    assert any(row["id"] == trained and row["published_at"] for row in json.loads(out))
    code, _, err = sigma("discard", trained)
    assert code == 2 and "unpublish it first" in err
    assert sigma("unpublish", trained)[0] == 0
    code, out, _ = sigma("discard", trained)
    assert code == 0 and "freed" in out
    code, _, err = sigma("train", sweep_id, "--rows", "x")
    assert code == 2 and "--rows" in err


def test_ctrl_c_cancels_every_training_and_the_same_call_resumes(swept, monkeypatch):
    """Ctrl-C after the first grid point's checkpoint: cancelled there, and the same call resumes from it.

    The workers are threads of this process here, so that the second grid point can wait
    for the cancel Ctrl-C leaves: the result does not depend on how fast the machine is
    (on a loaded one the whole grid once finished before the interrupt came)."""
    from concurrent.futures import ThreadPoolExecutor

    home, pack, spec, sweep_id, passing = swept
    rank = passing[2] if len(passing) > 2 else passing[-1]
    folder = home / "training" / training.trained_id(sweep_id, rank)
    shutil.rmtree(folder, ignore_errors=True)  # another test may have trained this row: start from nothing
    slow = msgspec.structs.replace(pack, training=PackTraining(grid={"n_estimators": [60], "max_depth": [2, 3, 4, 5, 6, 7, 8]}))
    real = training.fold_probabilities
    calls = []

    def held_after_the_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the second grid point waits until Ctrl-C has asked the training to stop
            deadline = time.monotonic() + 600
            while not (folder / "cancel").exists() and time.monotonic() < deadline:
                time.sleep(0.01)
        return real(*args, **kwargs)

    def interrupt_after_the_first_checkpoint():
        deadline = time.monotonic() + 600
        while not list(folder.glob("grid-*.npz")) and time.monotonic() < deadline:
            time.sleep(0.01)
        _thread.interrupt_main()  # what Ctrl-C does to the parent

    monkeypatch.setattr(training, "ProcessPoolExecutor", lambda max_workers, mp_context: ThreadPoolExecutor(max_workers))
    monkeypatch.setattr(training, "fold_probabilities", held_after_the_first)
    with Workspace(home, clock=_clock) as space:
        watcher = threading.Thread(target=interrupt_after_the_first_checkpoint)
        watcher.start()
        with pytest.raises(training.Cancelled, match="finished 0 of 1"):
            training.train(space, slow, spec, sweep_id, [rank], actor="test", workers=1)
        watcher.join()
        kept = len(list(folder.glob("grid-*.npz")))
        assert kept == 2 and not (folder / "model.onnx").exists(), "the point in hand finishes; none after it starts"
        assert training.train(space, slow, spec, sweep_id, [rank], actor="test", workers=1) == [training.trained_id(sweep_id, rank)]
    lines = [msgspec.json.decode(line) for line in (folder / "progress.jsonl").read_bytes().splitlines()]
    assert sum(line["resumed"] for line in lines) == kept


def _stored_backtests(home, pack, spec, sweep_id: str, rank: int, probabilities: np.ndarray) -> dict[str, dict[str, float]]:
    """The row's policy (`sweep.configuration`) backtested directly on ``probabilities``, out of fold and on the holdout."""
    with Workspace(home, clock=_clock) as space:
        request, names, combinations, _ = sweep.reload(space, sweep_id, pack, spec)
        table, _ = load(space, sweep_id)
    row = table.slice(rank - 1, 1).to_pylist()[0]
    policy = sweep.configuration(names, combinations[row["config"]], pack, spec, request, 1)
    bars, _ = load_bars(home, spec.instrument.symbol, spec.cadence)
    prepared = sweep.build_market([(bars, None, None)], US, spec, pack.strategies[spec.strategy].label, request, stored=probabilities[:, None])
    results = {}
    for window, rows in (("out_of_fold", prepared.development), ("holdout", prepared.holdout)):
        result, _ = run(prepared.market.window(rows), policy.row()[None, :])
        results[window] = dict(zip(METRICS, result[0].tolist()))
    return results


def _probabilities(path) -> np.ndarray:
    return pq.read_table(path).column("probability").to_numpy()


def test_the_sweep_and_training_compute_one_probability_scale_and_the_row_trades_as_promised(swept):
    home, pack, spec, sweep_id, passing = swept
    rank = passing[0]
    # Training's grid narrowed to the sweep's point: the same procedure must give the same numbers, bar for bar.
    point = {name: [value] for name, value in SWEEP_POINT.items()}
    folder = fit_configuration(home, pack, spec, TrainRequest(sweep=sweep_id, rank=rank, grid=point))
    trained = _probabilities(folder / "probabilities.parquet")
    assert np.array_equal(trained, _probabilities(home / "sweeps" / sweep_id / "probabilities.parquet"), equal_nan=True)
    assert np.isfinite(trained).sum() > 500 and np.nanmin(trained) < np.nanmax(trained)
    manifest = _manifest(folder)
    direct = _stored_backtests(home, pack, spec, sweep_id, rank, trained)
    assert manifest.metrics["backtest_out_of_fold"] == direct["out_of_fold"] and manifest.metrics["backtest_holdout"] == direct["holdout"]
    check = manifest.check
    promised = {"sharpe": direct["out_of_fold"]["sharpe"], "total_return": direct["out_of_fold"]["total_return"],
                "trades": direct["out_of_fold"]["trades"], "max_drawdown": direct["out_of_fold"]["max_drawdown"],
                "win_rate": direct["out_of_fold"]["win_rate"], "holdout_sharpe": direct["holdout"]["sharpe"],
                "holdout_trades": direct["holdout"]["trades"]}  # fmt: skip
    assert check.row == pytest.approx(promised, rel=1e-12)  # the row's promise, kept
    assert check.status == check.row_gate != "FAIL" and check.publishable and check.reason == ""
    assert [g.gate for g in check.gates] == ["min_trades", "min_sharpe", "max_drawdown"]  # the aggressive gates


def test_a_model_whose_policy_no_longer_trades_is_flagged_refused_and_published_only_by_force(swept, monkeypatch, capsys):
    home, pack, spec, sweep_id, passing = swept
    monkeypatch.setenv("SIGMA_HOME", str(home))
    with Workspace(home, clock=_clock) as space:
        rows = {row["rank"]: row for row in load(space, sweep_id)[0].to_pylist()}
    rank = passing[0]
    assert rows[rank]["trades"] > 0 and rows[rank]["holdout_trades"] > 0
    # What was seen on real SPY: calibrated probabilities that all sit just under the row's threshold (a long model).
    level = rows[rank]["threshold"] - 0.03
    flat = Calibration(method="isotonic", x=[0.0, 1.0], y=[level, level])
    monkeypatch.setattr(calibration, "choose", lambda p, y: (flat, {"isotonic": 0.25, "sigmoid": 0.25}))
    request = TrainRequest(sweep=sweep_id, rank=rank, grid=SMALL)
    folder = fit_configuration(home, pack, spec, request)
    manifest = _manifest(folder)
    assert np.nanmax(_probabilities(folder / "probabilities.parquet")) == pytest.approx(level)
    assert manifest.metrics["backtest_out_of_fold"]["trades"] == manifest.metrics["backtest_holdout"]["trades"] == 0
    check = manifest.check
    assert check.row_gate != "FAIL" and check.status == "FAIL" and not check.publishable
    assert "trades 0 is below the gate" in check.reason and "no trades on the holdout, where the row made" in check.reason
    trained = training.trained_id(sweep_id, rank)
    with Workspace(home, clock=_clock) as space:
        training._register(space, spec, request, folder, "test")
        assert space.trained(trained).refusal == check.reason

    def sigma(*argv):
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, _ = sigma("models", "review", trained)
    assert code == 0 and f"NOT PUBLISHABLE: {check.reason}" in out and "model: Sharpe 0.00" in out
    code, out, err = sigma("publish", trained)
    assert code == 2 and f"sigma: error: publish: {trained} is not publishable" in err and check.reason in err and "--force" in err
    with Workspace(home, clock=_clock) as space:
        assert space.trained(trained).published_at is None and space.audit_log(trained)[-1].action == "model.train"
    code, out, err = sigma("publish", trained, "--force")
    assert code == 0 and "registry version" in out and "over its training verdict" in err
    with Workspace(home, clock=_clock) as space:
        entry = space.audit_log(trained)[-1]
        assert (entry.action, entry.details["forced"], entry.details["not_publishable"]) == ("model.publish", True, check.reason)
        space.unpublish(trained, actor="test")
        space.discard(trained, actor="test")


_REPOSITORY = Path(__file__).resolve().parent.parent.parent

TRAIN = """
import sys
from datetime import UTC, datetime

import msgspec

from engine.packs import PackTraining, load_pack
from engine.workspace import Workspace
from packs import OFFICIAL
from research import training

home, sweep_id, rank = sys.argv[1], sys.argv[2], int(sys.argv[3])
pack = msgspec.structs.replace(load_pack(OFFICIAL / "swingsigma"),
                               training=PackTraining(grid={"n_estimators": [60], "max_depth": [2, 3, 4, 5, 6]}))
with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
    spec = space.model(space.sweep(sweep_id).model)
    print(training.train(space, pack, spec, sweep_id, [rank], actor="test", workers=1)[0])
"""


def _train(home: Path, sweep_id: str, rank: int) -> subprocess.Popen:
    # Its own process group: the kill takes the training's worker process with it, as a killed machine would.
    return subprocess.Popen([sys.executable, "-c", TRAIN, str(home), sweep_id, str(rank)], cwd=_REPOSITORY, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip


def test_a_training_killed_at_a_random_point_resumes_to_the_uninterrupted_artifact(swept, tmp_path):
    """SIGKILL of the training (its worker too) at a random point, then the same call: the artifact equals the
    uninterrupted training's byte for byte, and the database passes its integrity check."""
    home, _, _, sweep_id, passing = swept
    rank = passing[-1]
    reference, killed = tmp_path / "reference", tmp_path / "killed"
    for copy in (reference, killed):
        shutil.copytree(home, copy)
        shutil.rmtree(copy / "training" / training.trained_id(sweep_id, rank), ignore_errors=True)  # another test's work

    began = time.monotonic()
    done = _train(reference, sweep_id, rank)
    out, err = done.communicate(timeout=600)
    assert done.returncode == 0, err
    took = time.monotonic() - began
    trained_id = out.strip().splitlines()[-1]

    delay = random.uniform(0.1, 0.9) * took
    victim = _train(killed, sweep_id, rank)
    time.sleep(delay)
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(60)
    again = _train(killed, sweep_id, rank)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0 and out.strip().splitlines()[-1] == trained_id, err
    with Workspace(reference, clock=lambda: datetime.now(UTC)) as one, Workspace(killed, clock=lambda: datetime.now(UTC)) as other:
        first, second = one.load_trained(trained_id), other.load_trained(trained_id)
        assert second[1] == first[1], f"killed {delay:.2f} s in: the ONNX artifact differs"
        assert second[0].manifest["metrics"] == first[0].manifest["metrics"]
        assert other._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def _hold_row_lock(folder: str, ready, release) -> None:
    """A process that trains a row: it holds the row's lock until told to let go, or until it is killed."""
    with training._claim(Path(folder), 1):
        ready.set()
        release.wait()


def test_a_trainings_job_tells_queued_running_killed_and_cancelled_apart(tmp_path):
    home = tmp_path / "home"
    with Workspace(home, clock=lambda: datetime(2026, 12, 7, tzinfo=UTC)) as space:
        [first, second] = training.queue(space, "m-1234", [1, 2], actor="alice", seed=3)
        assert [training.status(home, trained) for trained in (first, second)] == ["queued", "queued"]
        assert training.status(home, "m-1234-r9") == "unknown" and not (home / "training" / "m-1234-r9").exists()
        training.cancel(space, second)  # queued: it never starts
        assert training.status(home, second) == "cancelled"
        assert [(job.sweep, job.rank, job.seed, job.actor) for job in training.lost(home)] == [("m-1234", 1, 3, "alice")]
        # A process trains row 1: running while it holds the lock, which no second process may take; killed, the kernel
        # lets go of its lock and the job left "running" reads killed, lost, to be trained again.
        folder = home / "training" / first
        training._write_job(folder, msgspec.structs.replace(training._read_job(folder), status="running"))
        context = multiprocessing.get_context("spawn")
        ready, release = context.Event(), context.Event()
        holder = context.Process(target=_hold_row_lock, args=(str(folder), ready, release))
        holder.start()
        assert ready.wait(600)
        assert training.status(home, first) == "running" and training.lost(home) == []
        with pytest.raises(ConfigError, match="row 1 is being trained by another process"):
            with training._claim(folder, 1):
                pass
        assert training.queue(space, "m-1234", [1], actor="alice") == [first] and training.status(home, first) == "running"
        os.kill(holder.pid, signal.SIGKILL)
        holder.join()
        assert training.status(home, first) == "killed"
        assert [job.rank for job in training.lost(home)] == [1]
        training.queue(space, "m-1234", [2], actor="alice")  # asked for again after a cancel: queued again
        assert training.status(home, second) == "queued"
        training.cancel(space, first)  # killed, then cancelled: never resumed by the workers
        assert training.status(home, first) == "cancelled" and [job.rank for job in training.lost(home)] == [2]
