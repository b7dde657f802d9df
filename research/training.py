"""Training: chosen sweep rows become calibrated XGBoost models, exported to ONNX and registered.

Each selected leaderboard row is trained on its own, in its own process:

1. **Hyperparameters** from a grid (the pack's ``training.grid`` where it sets one,
   else `GRID`) chosen by the out-of-fold log loss of purged walk-forward CV on the
   development window (the sweep's folds, embargo and holdout). Forests that differ
   only in ``n_estimators`` share one fit: the smaller is read off the larger with
   ``iteration_range``, as XGBoost grows trees in the same order.
2. **Calibration**, isotonic or sigmoid, chosen by out-of-fold Brier score, and
3. **the final model**, fitted on the whole development window (purged before the
   holdout) and scored on the holdout: `research.validation.calibrate`, the step the
   sweep's probabilities come from, so the model emits the scale its row's threshold
   was chosen on. It is exported with its calibrator as one ONNX graph and checked
   against the native model to 1e-5 (`research.export`).
4. **Metrics**: AUC, log loss, Brier score, calibration error and curve out of fold
   and on the holdout; the row's policy backtested on the model's own calibrated
   probabilities, out of fold and on the holdout, beside what the row promised and
   judged by the row's gates (`engine.gates.PolicyCheck`: a model that no longer
   passes is not publishable); gain importance; sample predictions. All are written
   into the manifest, and the calibrated probabilities into ``probabilities.parquet``.

A training writes a checkpoint after every grid point (its out-of-fold predictions
and log loss), so a killed or cancelled training resumes where it stopped; the same
seed gives the same model, byte for byte. The model trains on the model's own symbol;
the sweep's universe only ranked it.

Each row's folder also holds its job (``job.json``: who asked, with which seed, and
how it ended) and a lock its training process holds while it runs, so that a row is
trained by one process at a time and a training killed with its process is told from
one that runs (`status`, `lost`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import onnx
import onnxmltools
import onnxruntime
import pyarrow as pa
import pyarrow.parquet as pq
import sklearn
import xgboost

from engine.calendar import calendar, session_days
from engine.errors import ConfigError, SigmaError
from engine.features import evaluation_matrix, feature_matrix, model_features, warmup_bars
from engine.gates import PolicyCheck, overall
from engine.lineage import content_sha
from engine.models import ModelSpec
from engine.packs import Pack
from engine.scoring import Manifest
from engine.store import load_bars, load_ticks
from engine.workspace import Workspace
from research import calibration
from research.backtest import METRICS, PARAMETERS, run, trades
from research.export import to_onnx, verify
from research.labels import label
from research.leaderboard import Trials, judge, load, trials
from research.sweep import build_market, configuration, data_sha, evaluation_bars, model_rows, reload
from research.validation import Probabilities, calibrate, fold_probabilities, purge_in_rows, walk_forward

__all__ = ["GRID", "TrainRequest", "Job", "select", "queue", "train", "cancel", "status", "progress", "lost", "fit", "Fit",
           "fit_configuration", "trained_id", "with_policy", "Cancelled", "NEAR_DUPLICATE"]

GRID: dict[str, list[float]] = {"n_estimators": [100, 200], "max_depth": [3, 5, 7], "learning_rate": [0.01, 0.1]}
NEAR_DUPLICATE = 0.10
"""Two rows whose parameters differ in one axis by less than this (relative) are pointed out as near-duplicates."""
PROMISED = ("sharpe", "total_return", "trades", "max_drawdown", "win_rate", "holdout_sharpe", "holdout_trades")
"""The leaderboard row's figures a trained model's policy check shows beside its own."""


class Cancelled(SigmaError):
    """A training stopped on request; its checkpoints are kept for a resume."""


class TrainRequest(msgspec.Struct, frozen=True, kw_only=True):
    """One configuration to train: which sweep row, on which grid, with which seed."""

    sweep: str
    rank: int
    grid: dict[str, list[float]] = msgspec.field(default_factory=lambda: dict(GRID))
    seed: int = 0
    threads: int = 1


class Job(msgspec.Struct, kw_only=True):
    """One row's training as asked for (``job.json`` in its folder): by whom, with which seed, and where it got to."""

    sweep: str
    rank: int
    actor: str
    seed: int = 0
    status: Literal["queued", "running", "done", "failed", "cancelled"] = "queued"
    error: str | None = None


def trained_id(sweep_id: str, rank: int) -> str:
    """The trained model's id: stable, so that training the same row again resumes it."""
    return f"{sweep_id}-r{rank}"


def select(space: Workspace, sweep_id: str, ranks: Sequence[int]) -> tuple[list[dict], list[str]]:
    """The leaderboard rows at ``ranks`` and warnings about them; FAIL rows are refused with their reasons."""
    table, meta = load(space, sweep_id)
    rows = table.to_pylist()
    chosen = []
    for rank in ranks:
        if not 1 <= rank <= len(rows):
            raise ConfigError("rows", f"sweep {sweep_id} has no row {rank}", f"choose from 1 to {len(rows)}")
        row = rows[rank - 1]
        if row["gate"] == "FAIL":
            raise ConfigError("rows", f"row {rank} failed its gates: {row['reasons']}", "train PASS or MARGINAL rows only")
        chosen.append(row)
    warnings = [f"{len(chosen)} rows selected: each trains its own model; more than 5 is rarely worth the review"] if len(chosen) > 5 else []
    for a, b in itertools.combinations(chosen, 2):
        why = _near_duplicate(a, b, meta["axes"])
        if why:
            warnings.append(f"rows {a['rank']} and {b['rank']} are near-duplicates ({why}); one of them is probably enough")
    return chosen, warnings


def _near_duplicate(a: dict, b: dict, axes: list[str]) -> str:
    if (a["sharpe"], a["total_return"], a["trades"]) == (b["sharpe"], b["total_return"], b["trades"]):
        return "their backtests are identical"
    differing = [axis for axis in axes if a[axis] != b[axis]]
    if len(differing) == 1:
        x, y = a[differing[0]], b[differing[0]]
        if isinstance(x, int | float) and isinstance(y, int | float) and abs(x - y) <= NEAR_DUPLICATE * max(abs(x), abs(y)):
            return f"only {differing[0]} differs, {x} vs {y}"
    return ""


Reporter = Callable[[str, dict], None]


def train(
    space: Workspace, pack: Pack, spec: ModelSpec, sweep_id: str, ranks: Sequence[int], *, actor: str,
    seed: int = 0, workers: int | None = None, report: Reporter | None = None, queued: bool = False,
) -> list[str]:
    """Train the rows at ``ranks`` in parallel processes and register each; returns the trained ids.

    Ctrl-C asks every training to stop after its current fit and raises `Cancelled`;
    running the same rows again resumes from their checkpoints. A row another process
    trains is refused; ``queued`` (a job worker's call) trains only the rows whose job
    waits (queued, or killed while it ran) and is not registered, and leaves the others.
    """
    rows, _ = select(space, sweep_id, ranks)
    grid = GRID | (dict(pack.training.grid) if pack.training else {})
    requests = [TrainRequest(sweep=sweep_id, rank=row["rank"], grid=grid, seed=seed) for row in rows]
    folders = {r.rank: _folder(space.home, trained_id(sweep_id, r.rank)) for r in requests}
    registered = {record.id for record in space.trained_models()} if queued else set()
    with contextlib.ExitStack() as held:
        claimed = []
        for request in requests:  # every row's lock first: a row another process trains is refused before any starts
            try:
                held.enter_context(_claim(folders[request.rank], request.rank))
            except ConfigError:
                if queued:
                    continue
                raise
            job = _read_job(folders[request.rank])  # read under the lock: a cancel or another worker's end is seen
            if queued and (trained_id(sweep_id, request.rank) in registered or job is None or job.status not in ("queued", "running")):
                continue
            claimed.append(request)
        if not claimed:
            return []
        workers = workers or min(len(claimed), os.cpu_count() or 1)
        requests = [msgspec.structs.replace(r, threads=max(1, (os.cpu_count() or 1) // workers)) for r in claimed]
        for request in requests:
            folder = folders[request.rank]
            (folder / "cancel").unlink(missing_ok=True)
            _write_job(folder, Job(sweep=sweep_id, rank=request.rank, actor=actor, seed=seed, status="running"))
            space.audit(actor, "train.start", trained_id(sweep_id, request.rank), {"sweep": sweep_id, "rank": request.rank})
        return _train(space, pack, spec, requests, folders, workers, actor, report)


def _train(space: Workspace, pack: Pack, spec: ModelSpec, requests: list[TrainRequest], folders: dict[int, Path], workers: int,
           actor: str, report: Reporter | None) -> list[str]:  # fmt: skip
    sweep_id = requests[0].sweep
    finished: list[str] = []
    failed: list[str] = []

    def ended(request: TrainRequest, status: str, error: str | None = None) -> None:
        job = _read_job(folders[request.rank])
        if job is not None:
            _write_job(folders[request.rank], msgspec.structs.replace(job, status=status, error=error))

    def collect(future, request: TrainRequest) -> None:
        try:
            finished.append(_register(space, spec, request, future.result(), actor))
            ended(request, "done")
        except Cancelled as error:
            ended(request, "cancelled", str(error))
            failed.append(f"row {request.rank}: {error}")
        except SigmaError as error:  # one row's failure does not cost the others their work
            ended(request, "failed", str(error))
            failed.append(f"row {request.rank}: {error}")
            space.audit(actor, "train.fail", trained_id(sweep_id, request.rank), {"error": str(error)})

    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(fit_configuration, space.home, pack, spec, r): r for r in requests}
        try:
            pending = set(futures)
            while pending:
                for future in [f for f in pending if f.done()]:
                    pending.discard(future)
                    collect(future, futures[future])
                if report:
                    for rank, folder in folders.items():
                        report(trained_id(sweep_id, rank), progress(folder))
                time.sleep(0.2)
        except KeyboardInterrupt:
            for folder in folders.values():
                (folder / "cancel").touch()
            for future in as_completed(futures):
                done_well = future.exception() is None or isinstance(future.exception(), SigmaError)
                if done_well and trained_id(sweep_id, futures[future].rank) not in finished:
                    collect(future, futures[future])
            raise Cancelled(f"training cancelled; finished {len(finished)} of {len(requests)}: run the same command to resume") from None
    if failed:
        raise SigmaError(f"{len(failed)} of {len(requests)} trainings failed ({'; '.join(failed)}); "
                         f"the others are registered: {', '.join(finished) or 'none'}")
    return finished


def queue(space: Workspace, sweep_id: str, ranks: Sequence[int], *, actor: str, seed: int = 0) -> list[str]:
    """Record the trainings of rows at ``ranks`` as asked for and not begun (a job queue's worker runs `train`); their ids.
    A row that is being trained, or is registered, is left as it is."""
    registered = {record.id for record in space.trained_models()}
    ids = []
    for rank in ranks:
        folder = _folder(space.home, trained_id(sweep_id, rank))
        if trained_id(sweep_id, rank) not in registered and not _held(folder):  # a discarded row trains again
            _write_job(folder, Job(sweep=sweep_id, rank=rank, actor=actor, seed=seed))
        ids.append(trained_id(sweep_id, rank))
    return ids


def status(home: Path, trained: str) -> str:
    """Where a row's training stands: queued, running, done, failed, cancelled, or killed (its process died while it ran);
    ``unknown`` for a row trained before trainings kept a job."""
    folder = home / "training" / trained
    job = _read_job(folder)
    if job is None:
        return "unknown"
    if job.status == "running" and not _held(folder):
        return "killed"
    return job.status


def lost(home: Path) -> list[Job]:
    """The trainings that no process runs and that were never finished: queued and not begun (a worker took them off its
    queue and died), or killed while they ran. `train` resumes each from its checkpoints."""
    found = []
    for path in sorted((home / "training").glob("*/job.json")):
        job = _read_job(path.parent)
        if job is not None and job.status in ("queued", "running") and not _held(path.parent):
            found.append(job)
    return found


def cancel(space: Workspace, trained: str) -> None:
    """Ask a running training to stop after its current fit (from any shell); one queued never starts."""
    folder = space.home / "training" / trained
    if not folder.exists():
        raise ConfigError("training", f"no training {trained!r} in {space.home / 'training'}")
    (folder / "cancel").touch()
    job = _read_job(folder)
    if job is not None and job.status in ("queued", "running") and not _held(folder):  # waiting, or killed: never resumed
        _write_job(folder, msgspec.structs.replace(job, status="cancelled", error=f"cancelled while {status(space.home, trained)}"))


def _folder(home: Path, trained: str) -> Path:
    folder = home / "training" / trained
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _read_job(folder: Path) -> Job | None:
    path = folder / "job.json"
    return msgspec.json.decode(path.read_bytes(), type=Job) if path.exists() else None


def _write_job(folder: Path, job: Job) -> None:
    partial = folder / "job.json.partial"
    partial.write_bytes(msgspec.json.encode(job))
    partial.replace(folder / "job.json")


@contextlib.contextmanager
def _claim(folder: Path, rank: int):
    """Hold the row's lock while it trains: `ConfigError` when another process holds it. The kernel lets go of it when its
    process dies, however it dies, so a lock free under a "running" job means a killed training."""
    with (folder / "lock").open("a") as lock:
        for attempt in range(_CLAIMS):
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:  # held by a trainer, or for a moment by a look at its status (`_held`)
                if attempt == _CLAIMS - 1:
                    raise ConfigError("rows", f"row {rank} is being trained by another process", "wait for it, or cancel it first") from None
                time.sleep(0.02)
        yield


_CLAIMS = 50
"""Tries of a row's lock, 20 ms apart: a look at a row's status holds it for two system calls."""


def _held(folder: Path) -> bool:
    if not (folder / "lock").exists():
        return False
    with (folder / "lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
        return False


def _register(space: Workspace, spec: ModelSpec, request: TrainRequest, path: Path, actor: str) -> str:
    model = (path / "model.onnx").read_bytes()
    manifest = msgspec.json.decode((path / "manifest.json").read_bytes(), type=Manifest)
    sha = space.put_artifact(model)
    if sha != manifest.lineage.artifact_sha:
        raise SigmaError(f"{path / 'model.onnx'} changed after export (SHA-256 {sha}); train it again")
    space.add_trained(manifest.trained_id, spec.name, request.sweep, request.rank, sha, manifest, actor=actor)
    return manifest.trained_id


def with_policy(space: Workspace, trained_id: str, suffix: str, *, actor: str, **parameters: float) -> str:
    """The same artifact registered again as ``<trained_id>-<suffix>`` under changed policy parameters: a what-if of the
    execution policy without training again (its training verdict stays the original's)."""
    record = space.trained(trained_id)
    manifest = dict(record.manifest)
    manifest["policy"] = {**manifest["policy"], "parameters": {**manifest["policy"]["parameters"], **parameters}}
    manifest["trained_id"] = copy = f"{trained_id}-{suffix}"
    space.add_trained(copy, record.model, record.sweep, record.rank, record.artifact_sha, manifest, actor=actor)
    return copy


def progress(folder: Path) -> dict:
    path = folder / "progress.jsonl"
    if not path.exists():
        return {"stage": "starting"}
    lines = path.read_bytes().splitlines()
    return json.loads(lines[-1]) if lines else {"stage": "starting"}


class Fit(msgspec.Struct, kw_only=True):
    """What `fit` chose and produced: the grid point, its scores, and that point's calibrated probabilities and final model."""

    hyperparameters: dict[str, float]
    scores: dict[tuple, float]
    """Out-of-fold log loss per (n_estimators, max_depth, learning_rate)."""
    probabilities: Probabilities
    """The chosen point's calibrator, raw and calibrated probabilities, and final classifier (`research.validation`)."""


def fit(matrix: np.ndarray, outcomes: np.ndarray, splits: list, holdout_start: int, gap: int, request: TrainRequest,
        folder: Path, identity: list[str], progress: _Progress | None = None) -> Fit:
    """Grid search by purged out-of-fold log loss, then the sweep's calibration and final fit at the chosen point.

    The out-of-fold probabilities and their calibration are `research.validation`'s, the
    procedure the sweep's probabilities come from. Each grid point is checkpointed in
    ``folder`` under a name derived from ``identity`` (what else decides its numbers,
    e.g. the data hash) and the point itself.
    """
    progress = progress or _Progress(folder)
    sizes = sorted(int(n) for n in request.grid["n_estimators"])
    shapes = [(int(depth), float(rate)) for depth, rate in itertools.product(request.grid["max_depth"], request.grid["learning_rate"])]
    total = len(shapes) + 2
    scores: dict[tuple, float] = {}
    predictions: dict[tuple, np.ndarray] = {}
    for k, (depth, rate) in enumerate(shapes):
        # Named by everything that decides its numbers, so that a changed grid, seed or dataset never reuses it.
        key = content_sha([sizes, depth, rate, request.seed, identity, msgspec.to_builtins(splits)])[:16]
        checkpoint = folder / f"grid-{key}.npz"
        if checkpoint.exists():
            saved = np.load(checkpoint)
            out_of_fold = {size: saved[f"n{size}"] for size in sizes}
            progress.write(k + 1, total, f"grid {k + 1}/{len(shapes)} from checkpoint", resumed=True)
        else:
            if (folder / "cancel").exists():
                raise Cancelled(f"{folder.name} cancelled after {k} of {len(shapes)} grid points")
            out_of_fold = fold_probabilities(matrix, outcomes, splits, sizes, depth, rate, seed=request.seed, threads=request.threads)
            partial = folder / f"grid-{key}.partial.npz"
            np.savez(partial, **{f"n{size}": values for size, values in out_of_fold.items()})
            partial.replace(checkpoint)  # atomic: a kill never leaves a half-written checkpoint
            progress.write(k + 1, total, f"grid {k + 1}/{len(shapes)}: depth {depth}, rate {rate}")
        for size, values in out_of_fold.items():
            known = np.isfinite(values) & np.isfinite(outcomes)
            scores[(size, depth, rate)] = calibration.quality(values[known], outcomes[known])["log_loss"]
            predictions[(size, depth, rate)] = values
    best = min(scores, key=lambda point: (scores[point], point))
    hyperparameters = {"n_estimators": int(best[0]), "max_depth": int(best[1]), "learning_rate": float(best[2])}
    probabilities = calibrate(matrix, outcomes, predictions[best], splits=splits, holdout_start=holdout_start, gap=gap,
                              point=hyperparameters, seed=request.seed, threads=request.threads)  # fmt: skip
    progress.write(len(shapes) + 1, total, f"calibration: {probabilities.calibrator.method}")
    return Fit(hyperparameters=hyperparameters, scores=scores, probabilities=probabilities)


def fit_configuration(home: Path, pack: Pack, spec: ModelSpec, request: TrainRequest) -> Path:
    """Train, calibrate, export, verify and measure one sweep row; returns its folder (model.onnx, manifest.json)."""
    name = trained_id(request.sweep, request.rank)
    folder = Path(home) / "training" / name
    folder.mkdir(parents=True, exist_ok=True)
    progress = _Progress(folder)
    with Workspace(home, clock=_utc_now) as space:
        sweep_request, names, combinations, _ = reload(space, request.sweep, pack, spec)
        table, meta = load(space, request.sweep)
        tried = trials(space, request.sweep)
    row = table.slice(request.rank - 1, 1).to_pylist()[0]
    policy_row = configuration(names, combinations[row["config"]], pack, spec, sweep_request, 1).row()
    recipe = pack.strategies[spec.strategy].label
    history, dataset = load_bars(home, spec.instrument.symbol, spec.cadence)
    cal = calendar(dataset.calendar)
    features = model_features(spec.features, spec.indicators)
    session, _ = session_days(history.start, cal)
    points = evaluation_bars(home, spec.name, spec.cadence, spec.evaluation, history.ticker)
    spans, bars, closes = model_rows(history, points, cal)  # the rows it decides on: its bars, or its evaluation intervals
    if points is None:
        matrix = feature_matrix(features, spec.indicators, history, session, load_ticks(home, history.ticker))
    else:  # on the bars' spans, as the sweep computes them (`build_market`)
        matrix = evaluation_matrix(features, spec.indicators, spans, session_days(spans.start, cal)[0], bars)
    matrix = matrix.astype(np.float32)
    outcomes = label(bars, recipe, closes)
    horizon, embargo = purge_in_rows(closes, recipe.horizon_bars, sweep_request.embargo)  # as `build_market` purges
    splits, holdout_start = walk_forward(len(bars), folds=sweep_request.folds, horizon=horizon, embargo=embargo,
                                         holdout=sweep_request.holdout)
    gap = horizon + 1 + embargo
    stored = data_sha(home, [history.ticker], spec.cadence, spec.evaluation)

    # 1-3. The grid, the calibration and the final model, checkpointed per grid point.
    fitted = fit(matrix, outcomes, splits, holdout_start, gap, request, folder,
                 identity=[stored, spec.model_config_sha], progress=progress)
    chosen = fitted.probabilities
    calibrated = chosen.calibrated  # out of fold in the test blocks, the final model's on the holdout
    known = np.isfinite(calibrated) & np.isfinite(outcomes)
    known[holdout_start:] = False
    holdout = slice(holdout_start, len(bars))
    warm = np.isfinite(chosen.holdout)
    model = to_onnx(chosen.classifier, len(features), chosen.calibrator)

    # 4. Metrics, the row's policy on the model's own probabilities, importance and samples.
    labelled = np.isfinite(outcomes[holdout]) & warm
    metrics: dict[str, object] = {
        "grid_log_loss": {f"{n}/{d}/{r}": v for (n, d, r), v in sorted(fitted.scores.items())},
        "calibration_brier": chosen.calibration_scores,
        "out_of_fold": calibration.quality(calibrated[known], outcomes[known]) if known.any() else {},
        "holdout": calibration.quality(calibrated[holdout][labelled], outcomes[holdout][labelled]) if labelled.any() else {},
    }
    pq.write_table(pa.table({"probability": calibrated}), folder / "probabilities.parquet")
    prepared = build_market([(history, None, points)], cal, spec, recipe, sweep_request, stored=calibrated[:, None])
    curves = {}
    for window, rows in (("out_of_fold", prepared.development), ("holdout", prepared.holdout)):
        result, _ = run(prepared.market.window(rows), policy_row[None, :])
        metrics[f"backtest_{window}"] = dict(zip(METRICS, result[0].tolist()))
        curves[window] = np.cumprod(1.0 + trades(prepared.market.window(rows), policy_row)[1])
    np.savez(folder / "equity.npz", **curves)
    check = _check(pack, spec, row, metrics, tried, sweep_request.universe or [spec.instrument.symbol])
    gains = chosen.classifier.get_booster().get_score(importance_type="gain")
    metrics["importance"] = dict(sorted(((features[int(key[1:])].name, value) for key, value in gains.items()),
                                        key=lambda item: -item[1]))  # fmt: skip
    sample = np.flatnonzero(warm)[:5]
    metrics["samples"] = [
        {"bar": int(holdout.start + i), "features": matrix[holdout][i].tolist(), "probability": float(calibrated[holdout][i])}
        for i in sample
    ]
    manifest = Manifest(
        trained_id=name, model=spec.name, features=[f.name for f in features], warmup_bars=warmup_bars(features, spec.indicators),
        indicators={k: dict(v) for k, v in spec.indicators.items()}, cadence=spec.cadence, evaluation=spec.evaluation,
        adjustment=dataset.adjustment,
        strategy=spec.strategy,
        instrument=msgspec.to_builtins(spec.instrument), policy={n: row[n] for n in meta["axes"]} | {"parameters": dict(zip(PARAMETERS, policy_row.tolist()))},
        hyperparameters=fitted.hyperparameters, calibration=chosen.calibrator, metrics=metrics,
        data_range=(_iso(bars.start[0]), _iso(bars.end[-1])), versions=_versions(), sweep=request.sweep, rank=request.rank,
        lineage=msgspec.structs.replace(spec.lineage, data_sha=stored, artifact_sha=hashlib.sha256(model).hexdigest()),
        check=check,
    )  # fmt: skip
    difference = verify(model, manifest, matrix[holdout][warm], calibrated[holdout][warm])
    manifest = msgspec.structs.replace(manifest, metrics=metrics | {"onnx_max_difference": difference})
    (folder / "model.onnx").write_bytes(model)
    (folder / "manifest.json").write_bytes(msgspec.json.format(msgspec.json.encode(manifest), indent=2))
    steps = len(request.grid["max_depth"]) * len(request.grid["learning_rate"]) + 2  # the grid, calibration, export
    progress.write(steps, steps, "exported and verified")
    return folder


def _check(pack: Pack, spec: ModelSpec, row: dict, metrics: dict, tried: Trials, universe: list[str]) -> PolicyCheck:
    """The row's gates on its policy re-run over the model's own calibrated probabilities, and whether it may be published.

    The out-of-fold result is judged as the leaderboard judged the row (same window,
    gates, deflation and PBO). A FAIL, or a holdout without trades where the row traded
    there, makes the model not publishable: its live alerts would not be the ones the row promised.
    """
    gates = judge(pack, spec, metrics["backtest_out_of_fold"], tried)
    reasons = [f"out of fold, {gate.reason}" for gate in gates if gate.status == "FAIL"]
    if metrics["backtest_holdout"]["trades"] == 0 and row["holdout_trades"] > 0:
        reasons.append(f"no trades on the holdout, where the row made {row['holdout_trades']:.0f}")
    return PolicyCheck(row={key: float(row[key]) for key in PROMISED}, row_gate=row["gate"], universe=universe, gates=gates,
                       status=overall(gates), publishable=not reasons, reason="; ".join(reasons))  # fmt: skip


class _Progress:
    """Progress lines (``progress.jsonl``) the parent process renders."""

    __slots__ = ("_path", "_started")

    def __init__(self, folder: Path) -> None:
        self._path = folder / "progress.jsonl"
        self._started = time.perf_counter()

    def write(self, step: int, total: int, stage: str, resumed: bool = False) -> None:
        line = {"step": step, "total": total, "stage": stage, "seconds": round(time.perf_counter() - self._started, 2), "resumed": resumed}
        with self._path.open("a") as handle:
            handle.write(json.dumps(line) + "\n")


def _versions() -> dict[str, str]:
    return {"python": platform.python_version(), "xgboost": xgboost.__version__, "onnx": onnx.__version__,
            "onnxmltools": onnxmltools.__version__, "onnxruntime": onnxruntime.__version__, "scikit-learn": sklearn.__version__,
            "numpy": np.__version__}  # fmt: skip


def _iso(ns: int) -> str:
    return np.datetime64(int(ns), "ns").astype("datetime64[s]").astype(str) + "Z"


def _utc_now() -> datetime:
    return datetime.now(UTC)
