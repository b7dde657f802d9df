"""Sweeps: every execution configuration of a model backtested on honest probabilities, gated and ranked.

The model fixes WHAT is traded; the sweep searches HOW. ``start`` builds the grid,
computes calibrated out-of-fold probabilities once (`research.validation.out_of_fold`,
the procedure training runs, so a threshold chosen here means the same number on the
trained model's output) and stores them with the sweep, then backtests the grid in chunks. After each chunk its results are
appended to disk as a Parquet part and the sweep's progress is recorded, so that:

- memory stays bounded: results stream to disk and only the best rows stay in memory;
- a cancel (Ctrl-C, or ``sigma sweep cancel ID`` from another shell, checked between
  chunks) keeps every finished chunk and marks the sweep ``cancelled``;
- ``resume`` continues a cancelled or killed sweep from its parts, redoing nothing.

**Pruning** (custom mode, grids over 64 configurations): successive halving over the
development window's time folds. Rung r backtests the surviving configurations on
the first r of the 5 folds and keeps the better half by Sharpe (ties by grid
order); the last rung backtests the survivors on the whole window. A pruned
configuration is listed with the rung and the Sharpe it was pruned at.
"""

from __future__ import annotations

import itertools
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine import names
from engine.bar_builder import BarBuilder
from engine.bars import Bars
from engine.cadence import parse_cadence
from engine.calendar import (
    Calendar,
    ExchangeClock,
    bars_per_year,
    calendar,
    local_clock,
    session_clock,
    session_days,
)
from engine.errors import ConfigError, NotFoundError
from engine.features import evaluation_matrix, evaluation_points, feature_matrix, model_features
from engine.indicators.volatility import RealisedVolatility
from engine.lineage import content_sha
from engine.models import ModelSpec, OptionSettings, SweepRequest, trade_side
from engine.options import STRIKE_DELTAS, contract_expiries, strike_score, volatility_window
from engine.packs import Label, Pack
from engine.policy import ENTRY_TYPES, Policy, hours_mask
from engine.store import dataset, load_bars, load_ticks
from engine.workspace import Workspace, process_alive
from research.backtest import METRICS, Market, run
from research.labels import label
from research.leaderboard import build
from research.validation import SWEEP_POINT, Split, classifier, out_of_fold, purge_in_rows, walk_forward

__all__ = [
    "grid", "size", "config_row", "create", "start", "resume", "cancel", "reload", "estimate", "Estimate", "Progress", "CAP", "PRO_CAP",
    "prepare", "build_market", "evaluation_bars", "model_rows", "stored_intervals", "Prepared",
]  # fmt: skip

CAP = 1_000
PRO_CAP = 3_000
SIMPLE_CAP = 45
PRUNE_ABOVE = 64
_CHUNK = 64  # the smallest chunk; chunks grow to take about _CHUNK_SECONDS each
_CHUNK_SECONDS = 2.0

_CUSTOM_DEFAULTS: dict[str, list] = {
    "stop_loss": None,  # the pack's risk level and twice it
    "take_profit": None,
    "max_positions": [1, 3],
    "hold_days": None,  # the label horizon and twice it
    "entry_type": None,  # the pack's order type
    "strike_selection": None,  # the model's strike rule and its neighbour towards the money
    "dte_target": None,  # the model's days to expiry and a longer one
}
_NEIGHBOUR = {"ITM_10": "ITM_5", "ITM_5": "ATM", "ATM": "OTM_5", "OTM_5": "ATM", "OTM_10": "OTM_5"}
def _axes(pack: Pack, spec: ModelSpec, request: SweepRequest) -> dict[str, list]:
    simple = pack.sweep.simple
    # A model deciding at each close of daily or longer bars decides at one hour: the hours axis has nothing to choose.
    hourly = parse_cadence(spec.evaluation or spec.cadence).minutes is not None
    axes: dict[str, list] = {"threshold": list(simple.thresholds),
                             "allowed_hours": [list(h) for h in simple.allowed_hours] if hourly else [[]]}  # fmt: skip
    if simple.top_pct:
        axes["top_pct"] = list(simple.top_pct)
    else:
        axes["position_size_pct"] = list(simple.position_size_pct or [pack.policies.risk.position_size_pct])
    preset: dict[str, object] = {}
    if request.preset is not None:
        if request.preset not in pack.sweep.presets:
            known = ", ".join(pack.sweep.presets) or "none"
            raise ConfigError("preset", f"{pack.ref} has no sweep preset {request.preset!r}", f"presets: {known}")
        preset = dict(pack.sweep.presets[request.preset])
    if "thresholds" in preset:
        axes["threshold"] = list(preset.pop("thresholds"))  # type: ignore[arg-type]
    if request.mode == "custom":
        horizon = pack.strategies[spec.strategy].label.horizon_bars
        option = spec.instrument if isinstance(spec.instrument, OptionSettings) else None
        for parameter in pack.sweep.custom_parameters:
            if parameter in ("strike_selection", "dte_target") and option is None:
                continue  # only option models choose strikes and expiries
            default = _CUSTOM_DEFAULTS[parameter]
            if parameter in ("stop_loss", "take_profit"):
                level = getattr(pack.policies.risk, parameter) or {"stop_loss": 0.03, "take_profit": 0.06}[parameter]
                default = [level, 2 * level]
            elif parameter == "hold_days":
                per_day = parse_cadence(spec.cadence).bars_per_day
                default = [max(1, round(horizon / per_day)), max(1, round(2 * horizon / per_day))]
            elif parameter == "entry_type":
                default = [pack.policies.execution.order_type]
            elif parameter == "strike_selection":
                default = [option.default_strike, _NEIGHBOUR[option.default_strike]]
            elif parameter == "dte_target":
                default = [option.default_dte, max(1, 2 * option.default_dte)]
            axes[parameter] = sorted(set(default), key=default.index)
        for parameter, values in preset.items():
            if parameter in axes:
                axes[parameter] = values if isinstance(values, list) else [values]
    for parameter, values in request.overrides.items():
        if parameter not in axes:
            raise ConfigError(f"set.{parameter}", f"{parameter} is not an axis of this {request.mode} sweep",
                              f"axes: {', '.join(axes)}")
        if not values:
            raise ConfigError(f"set.{parameter}", "no values given", f"write e.g. --set {parameter}=V1,V2")
        axes[parameter] = [_axis_value(parameter, value) for value in values]
        if parameter == "allowed_hours" and not hourly and any(axes[parameter]):
            raise ConfigError("set.allowed_hours", f"{spec.name} decides once per {spec.cadence} bar, at its close",
                              "hours apply to a model evaluated inside its bars (create it with --evaluation 15m)")
    return axes


def _hours(value: object) -> list[int]:
    hours = [_whole(hour, 0) for hour in (value if isinstance(value, list) else [value])]
    if not hours or max(hours) > 23:
        raise ValueError
    return hours


_AXIS_RULES: dict[str, tuple[Callable[[object], object], str]] = {
    "threshold": (lambda v: _number(v, 0.0, 1.0, low_open=True, high_open=True), "a probability between 0 and 1, e.g. 0.55"),
    "allowed_hours": (_hours, "hours of the day 0 to 23 (an hour per value: --set allowed_hours=9,10)"),
    "top_pct": (lambda v: _number(v, 0.0, 100.0, low_open=True), "a percentage above 0 and at most 100"),
    "position_size_pct": (lambda v: _number(v, 0.0, 100.0, low_open=True), "a percentage of equity above 0 and at most 100"),
    "stop_loss": (lambda v: _number(v, 0.0, 1.0, high_open=True), "a fraction of the entry price from 0 (none) to below 1, e.g. 0.02"),
    "take_profit": (lambda v: _number(v, 0.0, 10.0), "a fraction of the entry price from 0 (none) to 10, e.g. 0.04"),
    "max_positions": (lambda v: _whole(v, 1), "a whole number of positions, 1 or more"),
    "hold_days": (lambda v: _number(v, 0.0, 10_000.0, low_open=True), "days above 0, e.g. 1 or 0.5"),
    "entry_type": (lambda v: v if v in ENTRY_TYPES else _refuse(), f"one of {', '.join(ENTRY_TYPES)}"),
    "strike_selection": (lambda v: v if v in STRIKE_DELTAS else _refuse(), f"one of {', '.join(STRIKE_DELTAS)}"),
    "dte_target": (lambda v: _whole(v, 0), "whole days to expiry, 0 or more"),
}


def _refuse() -> None:
    raise ValueError


def _number(value: object, low: float, high: float, *, low_open: bool = False, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        raise ValueError
    return value


def _whole(value: object, low: int) -> int:
    if isinstance(value, float) and value.is_integer():  # a stored request gives its numbers back as floats
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError
    return value


def _axis_value(parameter: str, value: object) -> object:
    """One ``--set`` value of an axis, checked before any work starts: `ConfigError` naming the axis and what it takes."""
    check, takes = _AXIS_RULES[parameter]
    try:
        return check(value)
    except (ValueError, TypeError):
        raise ConfigError(f"set.{parameter}", f"{value!r} is not a value of {parameter}", f"give {takes}") from None


def size(pack: Pack, spec: ModelSpec, request: SweepRequest) -> int:
    """How many configurations the sweep's grid holds, whatever the caps."""
    return math.prod(len(values) for values in _axes(pack, spec, request).values())


def grid(pack: Pack, spec: ModelSpec, request: SweepRequest) -> tuple[list[str], list[tuple]]:
    """(axis names, combinations in grid order) of the sweep; `ConfigError` when over the cap."""
    _side(pack, spec)
    axes = _axes(pack, spec, request)
    size = math.prod(len(values) for values in axes.values())
    cap = SIMPLE_CAP if request.mode == "simple" else PRO_CAP if request.pro else CAP
    if size > cap:
        shape = " x ".join(f"{len(v)} {k}" for k, v in axes.items())
        raise ConfigError(
            "grid", f"{size:,} combinations ({shape}) exceed the {request.mode} cap of {cap:,}",
            "narrow an axis with --set NAME=V1,V2, choose a --preset, or enable the pro plan (--pro, 3,000)",
        )
    return list(axes), list(itertools.product(*axes.values()))


def _side(pack: Pack, spec: ModelSpec) -> int:
    """The directions the model trades: its strategy's label, narrowed by the instrument's position or option type."""
    return trade_side(pack.strategies[spec.strategy].label.direction, spec.instrument, spec.strategy)


def config_row(names: Sequence[str], values: Sequence, pack: Pack, spec: ModelSpec, request: SweepRequest, tickers: int) -> np.ndarray:
    """The kernel's configuration row (`PARAMETERS`) for one combination, defaults from pack and model."""
    return configuration(names, values, pack, spec, request, tickers).row()


def configuration(names: Sequence[str], values: Sequence, pack: Pack, spec: ModelSpec, request: SweepRequest, tickers: int) -> Policy:
    """The policy of one combination of the grid: the combination's values, the rest from pack and model."""
    chosen = dict(zip(names, values))
    risk, execution, alerting = pack.policies.risk, pack.policies.execution, pack.policies.alerting
    horizon = pack.strategies[spec.strategy].label.horizon_bars
    hold = horizon if "hold_days" not in chosen else max(1, round(float(chosen["hold_days"]) * parse_cadence(spec.cadence).bars_per_day))
    row = {
        "threshold": float(chosen["threshold"]),
        "hours_mask": hours_mask(chosen.get("allowed_hours", [])),
        "side": _side(pack, spec),  # the model predicts whether its strategy's trade pays: the label's direction
        "top_pct": float(chosen.get("top_pct", 100.0)),
        "position_size": float(chosen.get("position_size_pct", risk.position_size_pct)) / 100,
        "size_by_confidence": execution.size_by_conf,
        "confidence_cap": execution.conf_cap,
        "max_exposure": risk.max_exposure,
        "stop_loss": float(chosen.get("stop_loss", risk.stop_loss or 0.0)),
        "take_profit": float(chosen.get("take_profit", risk.take_profit or 0.0)),
        "hold_bars": hold,
        "max_positions": int(chosen.get("max_positions", tickers)),
        "entry_type": ENTRY_TYPES[str(chosen.get("entry_type", execution.order_type))],
        "slippage": execution.slippage_bps / 10_000,
        "commission": request.commission_bps / 10_000,
        "strike_score": 0.0,
        "expiry_sessions": -1,
        "cooldown_minutes": alerting.cooldown_minutes,
        "max_trades_per_day": alerting.max_trades_per_day,
    }
    if isinstance(spec.instrument, OptionSettings):
        row["strike_score"] = strike_score(str(chosen.get("strike_selection", spec.instrument.default_strike)))
        row["expiry_sessions"] = int(chosen.get("dte_target", spec.instrument.default_dte))
        if pack.options is not None and pack.options.slippage_bps is not None:
            row["slippage"] = pack.options.slippage_bps / 10_000  # charged on the premium
    return Policy.from_parameters(row, where="sweep")


class Prepared:
    """A sweep's inputs: the universe's market with out-of-fold probabilities, and its windows."""

    __slots__ = ("market", "development", "holdout")

    def __init__(self, market: Market, development: slice, holdout: slice) -> None:
        self.market = market
        self.development = development
        self.holdout = holdout


def prepare(home: Path, pack: Pack, spec: ModelSpec, request: SweepRequest, stored: np.ndarray | float | None = None) -> Prepared:
    """Load the universe's bars (and ticks) from the workspace and build its market; ``stored`` reuses probabilities."""
    loaded = [load_bars(home, ticker, spec.cadence) for ticker in request.universe or [spec.instrument.symbol]]
    # Raw Close beside Adj Close (case 15), or one ticker's pre-market bars beside another's session alone (case 18),
    # is not one market.
    for field, differ, choices in (("adjustment", "prices are normalised differently", "raw, split or total_return"),
                                   ("hours", "bars keep different hours", "all or regular")):  # fmt: skip
        if len({getattr(info, field) for _, info in loaded}) > 1:
            shown = ", ".join(f"{bars.ticker} {getattr(info, field)}" for bars, info in loaded)
            raise ConfigError("universe", f"the tickers' {differ} ({shown})",
                              f"import every ticker of the universe with one --{field} ({choices})")
    universe = [(bars, None if stored is not None else load_ticks(home, bars.ticker),
                 evaluation_bars(home, spec.name, spec.cadence, spec.evaluation, bars.ticker)) for bars, _ in loaded]  # fmt: skip
    return build_market(universe, calendar(loaded[0][1].calendar), spec, pack.strategies[spec.strategy].label, request, stored)


def evaluation_bars(home: Path, model: str, cadence: str, evaluation: str | None, ticker: str) -> Bars | None:
    """The stored intervals of ``ticker`` that ``model``, evaluated every ``evaluation`` inside its ``cadence`` bars, decides
    at; None for a model deciding at each close."""
    if evaluation is None:
        return None
    try:
        return load_bars(home, ticker, evaluation)[0]
    except NotFoundError:
        raise ConfigError("evaluation", f"{model} decides every {evaluation} inside its {cadence} bars, and {ticker} has no "
                          f"{evaluation} bars stored",
                          f"import them (`sigma data import FILE --ticker {ticker} --cadence {evaluation}`) or roll finer ones up "
                          f"(`sigma data resample {ticker} --from 1m --to {evaluation}`); or create the model with --evaluation "
                          f"{cadence} to decide at each close") from None


def model_rows(bars: Bars, points: Bars | None, cal: Calendar) -> tuple[Bars, Bars, np.ndarray]:
    """A ticker's bars and rows as its model decides on them, and which rows close a bar of its cadence: its bars (every
    one), or the evaluation intervals of ``points`` inside them (`engine.features.evaluation_points`).

    For a model evaluated inside its bars, bars and intervals span their whole buckets
    as the live flow's bar builders make them (a stored 15-minute bar whose last minute
    is missing still ends on the quarter hour, a stored week on the calendar's), so
    that its decisions fall when the flow's do; an interval the builder would not
    make (outside a session bar's sessions) is dropped.
    """
    if points is None:
        return bars, bars, np.ones(len(bars), dtype=np.int64)
    bars, spans, closes, inside = _evaluated(bars, points, cal)
    return bars, spans.select(inside), closes[inside].astype(np.int64)


def stored_intervals(bars: Bars, points: Bars, cal: Calendar) -> Bars:
    """The stored intervals behind `model_rows`' rows, as stored (a feed replays them so): one per row, in order."""
    return points.select(_evaluated(bars, points, cal)[3])


def _evaluated(bars: Bars, points: Bars, cal: Calendar) -> tuple[Bars, Bars, np.ndarray, np.ndarray]:
    """The bars and the intervals over their builders' spans, which intervals close a bar, and which fall in one."""
    bars, _ = _buckets(bars, cal)
    spans, made = _buckets(points, cal)
    row, closes = evaluation_points(bars, spans)
    return bars, spans, closes, (row >= 0) & made


def _buckets(bars: Bars, cal: Calendar) -> tuple[Bars, np.ndarray]:
    """``bars`` over the [start, end) the live flow's `BarBuilder` gives the bar of each one's start, and where it gives one."""
    builder = BarBuilder(bars.ticker, bars.cadence, ExchangeClock(cal), 0)
    bounds = [builder.bounds(ts) for ts in bars.start.tolist()]
    made = np.array([b is not None for b in bounds], dtype=bool)
    start, end = np.array([b or (ts, ts) for b, ts in zip(bounds, bars.start.tolist(), strict=True)], dtype=np.int64).reshape(-1, 2).T
    return Bars(bars.ticker, bars.cadence, start, end, bars.open, bars.high, bars.low, bars.close, bars.volume), made


def build_market(
    universe: list[tuple[Bars, dict[str, np.ndarray] | None, Bars | None]], cal: Calendar, spec: ModelSpec, recipe: Label,
    request: SweepRequest, stored: np.ndarray | float | None = None,
) -> Prepared:
    """Align the tickers' rows on one time axis and give each its calibrated out-of-fold probability (or ``stored``'s).

    Each ticker brings its bars, ticks (or None) and, for a model evaluated inside its
    bars, its evaluation intervals (`evaluation_bars`): the rows are then those
    intervals, scored on the bar so far, and the label horizon, the embargo and the
    time stops count bars of the model's cadence over them.
    """
    rows_of = [model_rows(bars, points, cal) for bars, _, points in universe]
    axis = np.unique(np.concatenate([rows.start for _, rows, _ in rows_of]))
    if len(axis) < 200:
        raise ConfigError("data", f"{len(axis)} bars is too little history for a sweep", "import at least 200 bars")
    closes = np.zeros(len(axis), dtype=np.int64)
    for _, rows, closing in rows_of:
        np.maximum.at(closes, np.searchsorted(axis, rows.start), closing)
    horizon, embargo = purge_in_rows(closes, recipe.horizon_bars, request.embargo)
    splits, holdout_start = walk_forward(len(axis), folds=request.folds, horizon=horizon, embargo=embargo, holdout=request.holdout)
    shape = (len(axis), len(universe))
    columns = {name: np.full(shape, np.nan) for name in ("open", "high", "low", "close", "probability", "volatility")}
    end = np.zeros(len(axis), dtype=np.int64)
    features = model_features(spec.features, spec.indicators)
    decides = spec.evaluation or spec.cadence
    per_year = bars_per_year(cal, decides)
    window = volatility_window(decides)  # known at each close
    for j, ((_, ticks, points), (bars, found, closing)) in enumerate(zip(universe, rows_of, strict=True)):
        rows = np.searchsorted(axis, found.start)
        for name in ("open", "high", "low", "close"):
            columns[name][rows, j] = getattr(found, name)
        columns["volatility"][rows, j] = RealisedVolatility.batch(found.close, window) * math.sqrt(per_year)
        end[rows] = found.end
        if stored is None:
            session, _ = session_days(bars.start, cal)
            if points is None:
                matrix = feature_matrix(features, spec.indicators, bars, session, ticks)
            else:
                matrix = evaluation_matrix(features, spec.indicators, bars, session, found)
            # The folds are cut on the universe's time axis; each ticker maps the cuts onto its own rows.
            mine = [Split(*(int(np.searchsorted(rows, edge)) for edge in (s.train_end, s.test_start, s.test_end))) for s in splits]
            try:
                columns["probability"][rows, j] = out_of_fold(
                    matrix, label(found, recipe, closing), splits=mine, holdout_start=int(np.searchsorted(rows, holdout_start)),
                    # One thread: trees this small gain little from more, and lose much on shared cores (100,000
                    # bars: 2 s on one thread, 12 s on two, on a loaded two-core machine). The numbers are the same.
                    horizon=horizon, embargo=embargo, seed=request.seed, threads=1,
                ).calibrated
            except ConfigError as error:
                raise ConfigError(f"data.{bars.ticker}", error.problem, error.fix) from None
    if stored is not None:  # a sweep's kept probabilities, or an estimate's stand-in for every row
        columns["probability"][...] = stored
    _, minute = local_clock(end, cal.timezone)
    opened, closed = session_clock(axis, end, cal, intraday=parse_cadence(decides).minutes is not None)
    session = session_days(axis, cal)[0]
    clock = ExchangeClock(cal)
    market = Market([bars.ticker for bars, _, _ in universe], axis, minute // 60, columns["open"], columns["high"],
                    columns["low"], columns["close"], columns["probability"], per_year, opened=opened, closed=closed,
                    sessions_per_year=bars_per_year(cal, "1d"), volatility=columns["volatility"], end=end, session=session,
                    closes=closes, contracts=lambda target: contract_expiries(clock, end, target, int(session[0])))  # fmt: skip
    # The first test block has no calibrated probability (`research.validation.calibrate`): the window starts after it.
    return Prepared(market, slice(splits[min(1, len(splits) - 1)].test_start, holdout_start), slice(holdout_start, len(axis)))


class Progress(msgspec.Struct, frozen=True):
    """One progress record: how far the sweep is, how fast it goes, and what is left."""

    sweep: str
    done: int
    total: int
    rung: int
    configs_per_second: float
    eta_seconds: float
    best_sharpe: float


Reporter = Callable[[Progress], None]


def _sweep_folder(space: Workspace, sweep_id: str) -> Path:
    return space.sweeps_folder / names.name(sweep_id, "sweep")


def create(space: Workspace, pack: Pack, spec: ModelSpec, request: SweepRequest, *, actor: str) -> str:
    """Record a sweep, queued (its grid checked against the caps), and make its folder; its id. `resume` runs it, here
    (`start`) or in a worker of the server (`api.jobs`)."""
    names, combinations = grid(pack, spec, request)
    sweep_id = f"{spec.name}-{uuid.uuid4().hex[:8]}"
    _sweep_folder(space, sweep_id).mkdir(parents=True)
    space.add_sweep(sweep_id, spec.name, request, spec.tags, msgspec.to_builtins(spec.lineage), len(combinations), actor=actor)
    return sweep_id


def start(space: Workspace, pack: Pack, spec: ModelSpec, request: SweepRequest, *, actor: str,
          report: Reporter | None = None, announce: Callable[[str], None] = print) -> str:
    """Create and run a sweep; returns its id, also when cancelled (Ctrl-C or ``cancel``), with finished work kept."""
    sweep_id = create(space, pack, spec, request, actor=actor)
    return resume(space, pack, spec, sweep_id, actor=actor, report=report, announce=announce)


def resume(space: Workspace, pack: Pack, spec: ModelSpec, sweep_id: str, *, actor: str, report: Reporter | None = None,
           announce: Callable[[str], None] = print) -> str:  # fmt: skip
    """Run a queued sweep, or continue a cancelled, failed or killed one without redoing its finished chunks."""
    record = space.sweep(sweep_id)
    if record.status == "finished":
        raise ConfigError("sweep", f"{sweep_id} already finished", f"see `sigma sweep results {sweep_id}`")
    if record.status == "running" and record.pid and process_alive(record.pid):
        raise ConfigError("sweep", f"{sweep_id} is still running (process {record.pid})", f"cancel it first: `sigma sweep cancel {sweep_id}`")
    if not space.claim_sweep(record):
        raise ConfigError("sweep", f"{sweep_id} was taken by another process just now", "see `sigma sweep list`")
    if record.status != "queued":  # a queued sweep's start was audited when it was created
        space.audit(actor, "sweep.resume", sweep_id, {"done": record.done})
    try:  # with the out-of-fold training, when it had not finished (a queued sweep's first run)
        request, names, combinations, prepared = reload(space, sweep_id, pack, spec, announce)
    except KeyboardInterrupt:
        space.update_sweep(sweep_id, status="cancelled")
        space.audit(actor, "sweep.cancel", sweep_id, {"done": 0, "reason": "interrupted during the out-of-fold training"})
        return sweep_id
    except Exception as error:  # a sweep that cannot go on says so, rather than stay "running"
        space.update_sweep(sweep_id, status="failed")
        space.audit(actor, "sweep.fail", sweep_id, {"error": str(error), "stage": "out-of-fold training"})
        raise
    return _execute(space, sweep_id, pack, spec, request, prepared, names, combinations, actor=actor, report=report)


def reload(space: Workspace, sweep_id: str, pack: Pack, spec: ModelSpec, announce: Callable[[str], None] = print,
           ) -> tuple[SweepRequest, list[str], list[tuple], Prepared]:  # fmt: skip
    """A stored sweep's request, grid and inputs, with the probabilities it computed (trained first when the sweep
    stopped before its out-of-fold training had finished, or never started)."""
    request = space.sweep_request(sweep_id)
    names, combinations = grid(pack, spec, request)
    path = _sweep_folder(space, sweep_id) / "probabilities.parquet"
    if path.exists():
        stored = pq.read_table(path).column("probability").to_numpy()
        prepared = prepare(space.home, pack, spec, request, stored=stored.reshape(-1, len(request.universe) or 1))
        return request, names, combinations, prepared
    started = time.perf_counter()
    announce(f"sweep {sweep_id}: training the model's out-of-fold probabilities first (walk-forward XGBoost; the slow step, "
             "often a minute or more)")  # fmt: skip
    prepared = _prepare_and_keep(space, pack, spec, request, path.parent)
    announce(
        f"sweep {sweep_id}: {len(combinations):,} {request.mode} configurations x {len(prepared.market.tickers)} ticker(s), "
        f"{prepared.development.stop - prepared.development.start:,} development bars, "
        f"{prepared.holdout.stop - prepared.holdout.start:,} holdout bars "
        f"(out-of-fold training took {time.perf_counter() - started:.1f} s); the backtests should take about "
        f"{_estimate(prepared, pack, spec, request, names, combinations):.0f} s more"
    )
    return request, names, combinations, prepared


def _prepare_and_keep(space: Workspace, pack: Pack, spec: ModelSpec, request: SweepRequest, folder: Path) -> Prepared:
    """The sweep's inputs, with its out-of-fold probabilities written (atomically) for a resume to reuse."""
    prepared = prepare(space.home, pack, spec, request)
    partial = folder / "probabilities.parquet.partial"
    pq.write_table(pa.table({"probability": prepared.market.probability.ravel()}), partial)
    partial.replace(folder / "probabilities.parquet")
    return prepared


def cancel(space: Workspace, sweep_id: str, *, actor: str) -> None:
    """Ask a running sweep to stop after its current chunk (from any shell)."""
    record = space.sweep(sweep_id)
    if record.status == "queued":  # no worker took it yet: it never starts
        space.update_sweep(sweep_id, status="cancelled")
        space.audit(actor, "sweep.cancel", sweep_id, {"done": 0, "reason": "cancelled while queued"})
        return
    if record.status != "running":
        raise ConfigError("sweep", f"{sweep_id} is {record.status}, not running")
    space.update_sweep(sweep_id, cancel_requested=1)
    space.audit(actor, "sweep.cancel_requested", sweep_id)
    if record.pid and not process_alive(record.pid):  # killed: nothing will pick the flag up
        space.update_sweep(sweep_id, status="cancelled")


def data_sha(home: Path, tickers: list[str], cadence: str, evaluation: str | None) -> str:
    """The hash of the stored data a model's rows come from: each ticker's bars and, for a model evaluated inside its
    bars, its intervals (a re-imported interval changes its rows as much as a re-imported bar)."""
    cadences = (cadence,) if evaluation is None else (cadence, evaluation)
    return content_sha([dataset(home, ticker, each).data_sha for ticker in tickers for each in cadences])


class Estimate(msgspec.Struct, frozen=True):
    """How long a sweep should take, told before it starts: measured on this machine, on the sweep's own bars."""

    configurations: int
    backtests: int
    """Backtests it runs: the configurations, and with pruning also those of the shorter rungs."""
    rows: int
    """Rows of its time axis, each ticker's own."""
    tickers: int
    training_seconds: float
    """The out-of-fold training of the model's probabilities: the slow step, run once per sweep."""
    backtest_seconds: float

    @property
    def seconds(self) -> float:
        return self.training_seconds + self.backtest_seconds


def estimate(home: Path, pack: Pack, spec: ModelSpec, request: SweepRequest) -> Estimate:
    """How long a sweep of ``spec`` would take, before it starts: its backtests timed on a sample of its grid over its own
    bars (with a stand-in probability), its out-of-fold training by timing one fit on a sample of its rows and scaling by
    the rows its folds train on. A `ConfigError` names what would stop the sweep itself (no bars, too little history)."""
    names, combinations = grid(pack, spec, request)
    try:
        prepared = prepare(home, pack, spec, request, stored=0.5)
    except NotFoundError as error:  # the sweep would stop there too: a request that cannot run is refused before it queues
        problem, _, fix = str(error).partition("; ")
        raise ConfigError("data", problem, fix) from None
    market = prepared.market
    generator = np.random.default_rng(0)
    market.probability[...] = generator.uniform(*_STAND_IN, market.probability.shape)
    rows, tickers = len(market.start), len(market.tickers)
    horizon, embargo = purge_in_rows(market.closes, pack.strategies[spec.strategy].label.horizon_bars, request.embargo)
    splits, holdout_start = walk_forward(rows, folds=request.folds, horizon=horizon, embargo=embargo, holdout=request.holdout)
    trained_rows = sum(split.train_end for split in splits) + holdout_start  # each fold's fit, then the calibrated final one
    sample = min(rows, _FIT_SAMPLE)
    matrix, outcomes = generator.normal(size=(sample, len(spec.features))), generator.integers(0, 2, sample)
    began = time.perf_counter()
    classifier(SWEEP_POINT, seed=0, threads=1).fit(matrix, outcomes)
    per_row = (time.perf_counter() - began) / sample
    return Estimate(configurations=len(combinations), backtests=_total_work(len(combinations), _rungs(request, len(combinations))),
                    rows=rows, tickers=tickers,
                    training_seconds=round(per_row * trained_rows * tickers, 1),
                    backtest_seconds=round(_estimate(prepared, pack, spec, request, names, combinations), 1))  # fmt: skip


_STAND_IN = (0.35, 0.65)
"""The range of the stand-in probabilities an estimate's backtests see: where calibrated probabilities mostly fall, so that
its thresholds enter about as often as the model's own would."""
_FIT_SAMPLE = 5_000
"""Rows of the one fit an estimate times."""


def _estimate(prepared, pack, spec, request, names, combinations) -> float:
    """Seconds the backtests will take, from timing a sample spread over the grid (its first rows may trade the most or
    the least) in one batch, as the sweep runs them, and the work of every rung in backtests of the whole window."""
    spread = np.linspace(0, len(combinations) - 1, min(len(combinations), _TIMED)).astype(int)
    sample = np.array([config_row(names, combinations[i], pack, spec, request, len(prepared.market.tickers)) for i in spread])
    market = prepared.market.window(prepared.development)
    run(market, sample[:1])  # compile outside the timing
    began = time.perf_counter()
    run(market, sample)
    per_config = (time.perf_counter() - began) / len(sample)
    windows = sum(alive * (rung / request.folds if rung else 1.0)  # rung r backtests the first r of the folds
                  for rung, alive in _schedule(len(combinations), _rungs(request, len(combinations))))
    return per_config * windows + 1.0


_TIMED = 32
"""Configurations an estimate times: enough to spread the work of a batch over the cores."""


def _fold_edges(window: slice, folds: int) -> np.ndarray:
    return np.linspace(window.start, window.stop, folds + 1).astype(int)


def _execute(space, sweep_id, pack, spec, request, prepared, names, combinations, *, actor, report) -> str:
    folder = _sweep_folder(space, sweep_id)
    tickers = len(prepared.market.tickers)
    rows = np.array([config_row(names, c, pack, spec, request, tickers) for c in combinations])
    edges = _fold_edges(prepared.development, request.folds)
    rungs = _rungs(request, len(combinations))
    survivors = np.arange(len(combinations))
    done_before = _finished(folder)
    total_work = _total_work(len(combinations), rungs)
    space.update_sweep(sweep_id, total=total_work)  # counters count backtests: with pruning, more than the configurations
    progress = {"done": 0, "best": -math.inf, "began": time.perf_counter()}
    try:
        for rung in [*rungs, 0]:  # rung 0 is the whole development window
            window = slice(prepared.development.start, edges[rung]) if rung else prepared.development
            finished = done_before.get(rung, {})
            todo = [int(i) for i in survivors if int(i) not in finished]
            progress["done"] += len(survivors) - len(todo)
            _run_rung(space, sweep_id, folder, prepared.market.window(window), rows, todo, rung, progress, total_work, report)
            results = {**finished, **_finished(folder).get(rung, {})}
            if rung:
                ranked = sorted(survivors, key=lambda i: (-results[int(i)], int(i)))
                survivors = np.array(sorted(ranked[: max(1, math.ceil(len(ranked) / 2))]))
    except (KeyboardInterrupt, _Cancelled) as stop:
        reason = "interrupted" if isinstance(stop, KeyboardInterrupt) else "cancel requested"
        space.update_sweep(sweep_id, status="cancelled", done=progress["done"])
        space.audit(actor, "sweep.cancel", sweep_id, {"done": progress["done"], "reason": reason})
        return sweep_id
    except Exception as error:
        space.update_sweep(sweep_id, status="failed", done=progress["done"])
        space.audit(actor, "sweep.fail", sweep_id, {"error": str(error)})
        raise
    summary = build(space, sweep_id, pack, spec, request, prepared, names, combinations, rows)
    summary["data_sha"] = data_sha(space.home, prepared.market.tickers, spec.cadence, spec.evaluation)
    space.update_sweep(sweep_id, status="finished", done=total_work, summary=summary)
    space.audit(actor, "sweep.finish", sweep_id, summary)
    return sweep_id


def _rungs(request: SweepRequest, size: int) -> list[int]:
    """The pruning rungs of a sweep of ``size`` configurations: successive halving for a large custom sweep, else none."""
    return list(range(1, request.folds)) if request.mode == "custom" and request.prune and size > PRUNE_ABOVE else []


def _schedule(size: int, rungs: list[int]) -> list[tuple[int, int]]:
    """(rung, configurations it backtests): every rung halves the ones before it, rung 0 the whole window last."""
    schedule, alive = [], size
    for rung in rungs:
        schedule.append((rung, alive))
        alive = max(1, math.ceil(alive / 2))
    return [*schedule, (0, alive)]


def _total_work(size: int, rungs: list[int]) -> int:
    return sum(alive for _, alive in _schedule(size, rungs))


class _Cancelled(Exception):
    pass


def _run_rung(space, sweep_id, folder, market, rows, todo, rung, progress, total, report) -> None:
    chunk = _CHUNK
    position = 0
    part = len(list(folder.glob(f"rung{rung}-*.parquet")))
    while position < len(todo):
        if space.sweep(sweep_id).cancel_requested:
            raise _Cancelled
        batch = todo[position : position + chunk]
        began = time.perf_counter()
        results, blocks = run(market, rows[batch])
        elapsed = time.perf_counter() - began
        _write_part(folder / f"rung{rung}-{part:05d}.parquet", batch, rung, results, blocks)
        part += 1
        position += len(batch)
        progress["done"] += len(batch)
        if len(results):
            progress["best"] = max(progress["best"], float(np.max(results[:, 0])))
        space.update_sweep(sweep_id, done=progress["done"])
        # Aim for about two seconds a chunk, so progress and cancels are never far apart.
        chunk = int(min(1024, max(_CHUNK, len(batch) * _CHUNK_SECONDS / max(elapsed, 1e-3))))
        now = time.perf_counter()
        rate = progress["done"] / max(now - progress["began"], 1e-9)
        record = Progress(sweep_id, progress["done"], total, rung, rate, (total - progress["done"]) / max(rate, 1e-9), progress["best"])
        with (folder / "progress.jsonl").open("ab") as log:
            log.write(msgspec.json.encode(record) + b"\n")
        if report is not None:
            report(record)


def _write_part(path: Path, indices: list[int], rung: int, results: np.ndarray, blocks: np.ndarray) -> None:
    columns = {"config": np.asarray(indices, dtype=np.int64), "rung": np.full(len(indices), rung, dtype=np.int64)}
    columns |= {name: results[:, k] for k, name in enumerate(METRICS)}
    columns["blocks"] = blocks.reshape(len(indices), -1).tolist()
    partial = path.with_suffix(".partial")
    pq.write_table(pa.table(columns), partial)
    partial.replace(path)  # a part exists whole or not at all


def _finished(folder: Path) -> dict[int, dict[int, float]]:
    """Sharpe of every configuration already backtested, by rung, read from the parts on disk."""
    done: dict[int, dict[int, float]] = {}
    for path in sorted(folder.glob("rung*-*.parquet")):
        table = pq.read_table(path, columns=["config", "rung", "sharpe"])
        for config, rung, sharpe in zip(*(table.column(c).to_pylist() for c in ("config", "rung", "sharpe"))):
            done.setdefault(rung, {})[config] = sharpe
    return done
