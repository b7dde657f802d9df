"""Reviewing a trained model: its backtest as exported, and a report of what training measured.

``backtest`` runs the stored ONNX artifact (its manifest and bytes checked against
the hashes sealed at training) through the engine's per-ticker `Pipeline`, bar by bar
over any stored period, and backtests the probabilities it produced with the model's
policy: what the artifact that goes live would have done, with no retraining.
``render`` and ``report`` show the metrics in the terminal and as a PNG (calibration
curve, equity curves, feature importance).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
import msgspec
import numpy as np

from engine import names
from engine.bars import Bars
from engine.calendar import Calendar, ExchangeClock, calendar, local_clock
from engine.errors import ConfigError
from engine.gates import PolicyCheck
from engine.models import InstrumentSettings
from engine.pipeline import Pipeline, Replayed
from engine.scoring import Manifest, Scorer
from engine.store import load_bars, load_ticks
from engine.workspace import Workspace
from research.backtest import METRICS, PARAMETERS, run
from research.sweep import build_market, evaluation_bars, stored_intervals

__all__ = ["load_scorer", "score_history", "replay_history", "backtest", "render", "report"]


def load_scorer(space: Workspace, trained_id: str) -> Scorer:
    """The trained model's scorer, once its manifest and ONNX bytes pass their check against the hashes sealed at training."""
    record, model = space.load_trained(trained_id)
    return Scorer(model, msgspec.convert(record.manifest, Manifest))


def score_history(home: Path, scorer: Scorer) -> tuple[Bars, Bars | None, Calendar, np.ndarray]:
    """(bars, evaluation intervals or None, calendar, probabilities): the model's symbol's stored history through a fresh
    `Pipeline`, as live; a probability per row it decides on (`research.sweep.model_rows`)."""
    manifest = scorer.manifest
    symbol = msgspec.convert(manifest.instrument, InstrumentSettings).symbol
    bars, dataset = load_bars(home, symbol, manifest.cadence)
    points = evaluation_bars(home, manifest.model, manifest.cadence, manifest.evaluation, symbol)
    cal = calendar(dataset.calendar)
    return bars, points, cal, replay_history(home, scorer, bars, cal, points).probability


def replay_history(home: Path, scorer: Scorer, bars: Bars, cal: Calendar, points: Bars | None = None) -> Replayed:
    """The probabilities and feature rows the live flow's `Pipeline` gives ``bars`` (one ticker's stored history).

    The stored ticks go in too, where the model reads ticks. A model evaluated inside
    its bars is warmed on the bars before its first evaluation interval of ``points``,
    then fed the intervals as a bar feed (its bars are then made of them, as live):
    a row per interval it decides at.
    """
    manifest = scorer.manifest
    pipeline = Pipeline(bars.ticker, 0)
    clock = ExchangeClock(cal)
    if manifest.evaluation is not None:
        fed = stored_intervals(bars, points, cal)  # as stored: a bar feed's times, which its bars are built from
        pipeline.subscribe(manifest.trained_id, scorer, manifest.cadence, clock, evaluation=manifest.evaluation,
                           first=int(fed.start[0]), history=bars, history_points=points)  # fmt: skip
        return pipeline.replay(fed)[manifest.trained_id]
    pipeline.subscribe(manifest.trained_id, scorer, manifest.cadence, clock)
    # Feeding ticks costs a call per tick: only for models that have tick indicators.
    ticks = load_ticks(home, bars.ticker) if pipeline.models[manifest.trained_id].ticks else None
    return pipeline.replay(bars, ticks)[manifest.trained_id]


def backtest(space: Workspace, pack, spec, trained_id: str, start: date | None = None, end: date | None = None) -> dict[str, float]:
    """The exported model's backtest over stored bars from ``start`` to ``end`` (inclusive), by its own policy."""
    scorer = load_scorer(space, trained_id)
    bars, points, cal, probabilities = score_history(space.home, scorer)
    request = space.sweep_request(scorer.manifest.sweep)
    prepared = build_market([(bars, None, points)], cal, spec, pack.strategies[spec.strategy].label, request,
                            stored=probabilities[:, None])  # fmt: skip
    day, _ = local_clock(prepared.market.start, cal.timezone)
    first = 0 if start is None else int(np.searchsorted(day, (start - date(1970, 1, 1)).days))
    last = len(day) if end is None else int(np.searchsorted(day, (end - date(1970, 1, 1)).days, side="right"))
    if last - first < 2:
        raise ConfigError("--from/--to", f"{last - first} stored bars fall in that period", "widen it; `sigma data list` shows the stored range")
    row = np.array([scorer.manifest.policy["parameters"][name] for name in PARAMETERS])
    result, _ = run(prepared.market.window(slice(first, last)), row[None, :])
    return dict(zip(METRICS, result[0].tolist())) | {"bars": last - first, "scored": int(np.isfinite(probabilities[first:last]).sum())}


def render(manifest: dict) -> str:
    """The training metrics of a manifest as terminal text."""
    metrics = manifest["metrics"]
    lines = [f"{manifest['trained_id']}  ({manifest['model']}, sweep {manifest['sweep']} row {manifest['rank']})",
             f"hyperparameters: {manifest['hyperparameters']}; calibration: {manifest['calibration']['method']}",
             f"ONNX vs native: max difference {metrics['onnx_max_difference']:.1e}"]  # fmt: skip
    for window in ("out_of_fold", "holdout"):
        q = metrics[window]
        if q:
            lines.append(f"{window:<12} AUC {q['auc']:.3f}  log loss {q['log_loss']:.4f}  Brier {q['brier']:.4f}  "
                         f"ECE {q['ece']:.3f}  ({q['rows']:,} rows)")  # fmt: skip
        b = metrics[f"backtest_{window}"]
        lines.append(f"{'':<12} backtest: Sharpe {b['sharpe']:.2f}  return {b['total_return']:.1%}  trades {b['trades']:.0f}  "
                     f"max DD {b['max_drawdown']:.1%}")  # fmt: skip
    lines += _check_lines(manifest)
    lines.append("reliability (out of fold): " + "  ".join(
        f"{row['predicted']:.2f}->{row['observed']:.2f} (n={row['count']})" for row in metrics["out_of_fold"].get("reliability", [])))
    lines.append("importance (gain): " + ", ".join(f"{name} {value:.1f}" for name, value in list(metrics["importance"].items())[:8]))
    return "\n".join(lines)


def _check_lines(manifest: dict) -> list[str]:
    """The sweep row's promise beside the model's own backtest of the row's policy, the gates, and the verdict."""
    check = manifest.get("check")
    if check is None:
        return ["policy check: none (trained before training re-ran its row's policy)"]
    check = msgspec.convert(check, PolicyCheck)
    row, mine, held = check.row, manifest["metrics"]["backtest_out_of_fold"], manifest["metrics"]["backtest_holdout"]
    ranked = ", ".join(check.universe)
    lines = [f"policy of row {manifest['rank']} ({check.row_gate} on {ranked}) vs this model's calibrated probabilities "
             f"({msgspec.convert(manifest['instrument'], InstrumentSettings).symbol}):"]  # fmt: skip
    lines.append(f"  out of fold  row: Sharpe {row['sharpe']:.2f}  return {row['total_return']:.1%}  trades {row['trades']:.0f}  "
                 f"max DD {row['max_drawdown']:.1%}  win rate {row['win_rate']:.0%}")  # fmt: skip
    lines.append(f"               model: Sharpe {mine['sharpe']:.2f}  return {mine['total_return']:.1%}  trades {mine['trades']:.0f}  "
                 f"max DD {mine['max_drawdown']:.1%}  win rate {mine['win_rate']:.0%}")  # fmt: skip
    lines.append(f"  holdout      row: Sharpe {row['holdout_sharpe']:.2f}  trades {row['holdout_trades']:.0f}   "
                 f"model: Sharpe {held['sharpe']:.2f}  trades {held['trades']:.0f}")  # fmt: skip
    lines.append(f"  gates {check.status}: " + "; ".join(f"{g.status} {g.reason}" for g in check.gates))
    lines.append("  publishable" if check.publishable else f"  NOT PUBLISHABLE: {check.reason}")
    return lines


def report(space: Workspace, trained_id: str) -> Path:
    """Write ``review.png`` (calibration curve, equity curves, feature importance) into the training folder."""
    manifest = space.trained(trained_id).manifest
    folder = space.home / "training" / names.name(trained_id, "trained")
    metrics = manifest["metrics"]
    figure, (calibration_axes, equity_axes, importance_axes) = plt.subplots(1, 3, figsize=(16, 4.5))
    for window, style in (("out_of_fold", "o-"), ("holdout", "s--")):
        table = metrics[window].get("reliability", []) if metrics[window] else []
        calibration_axes.plot([r["predicted"] for r in table], [r["observed"] for r in table], style, label=window.replace("_", " "))
    calibration_axes.plot([0, 1], [0, 1], color="grey", linewidth=0.8)
    calibration_axes.set(title="calibration", xlabel="predicted probability", ylabel="observed frequency")
    calibration_axes.legend()
    curves = np.load(folder / "equity.npz")
    for window in ("out_of_fold", "holdout"):
        equity_axes.plot(curves[window], label=window.replace("_", " "))
    equity_axes.set(title="equity (policy on calibrated probabilities)", xlabel="bar", ylabel="equity")
    equity_axes.legend()
    top = list(metrics["importance"].items())[:15][::-1]
    importance_axes.barh([name for name, _ in top], [value for _, value in top])
    importance_axes.set(title="feature importance (gain)")
    figure.suptitle(trained_id)
    figure.tight_layout()
    path = folder / "review.png"
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path
