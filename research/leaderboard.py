"""The leaderboard: a finished sweep's configurations ranked by Sharpe, with what makes a rank trustworthy.

Each row carries the configuration, its development-window metrics, its Sharpe on
the holdout the sweep never saw, the dispersion of its Sharpe across the five time
folds, its deflated Sharpe ratio (given how many configurations were tried) and its
gate verdict with reasons. The sweep's probability of backtest overfitting (PBO) is
one number for the whole grid, and a gate like any other when the risk profile sets
``max_pbo``. Stored as ``leaderboard.parquet`` beside the sweep's parts.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from engine.errors import ConfigError, NotFoundError
from engine.gates import GateResult, evaluate, overall
from engine.workspace import Workspace
from research.backtest import BLOCKS, METRICS, run
from research.overfitting import (
    block_sharpe,
    deflated_sharpe,
    probability_of_overfitting,
)

__all__ = ["build", "read_parts", "Trials", "trials", "deflate", "judge", "load", "render", "write_csv", "save_recipe", "Recipe"]

_FOLD_BLOCKS = 2  # ten blocks: each fifth of the development window is two of them


def build(space: Workspace, sweep_id: str, pack, spec, request, prepared, names, combinations, rows) -> dict:
    """Rank the finished sweep, store ``leaderboard.parquet`` and ``pruned.parquet``; returns the summary."""
    folder = space.sweeps_folder / sweep_id
    final = read_parts(folder, rung=0).sort_by([("sharpe", "descending"), ("config", "ascending")])
    ids = final.column("config").to_numpy()
    blocks = np.array(final.column("blocks").to_pylist()).reshape(len(ids), BLOCKS, 3)
    holdout, _ = run(prepared.market.window(prepared.holdout), rows[ids])
    periods = prepared.market.periods_per_year
    folds = blocks.reshape(len(ids), BLOCKS // _FOLD_BLOCKS, _FOLD_BLOCKS, 3).sum(axis=2)
    fold_sharpe = block_sharpe(folds) * math.sqrt(periods)
    all_rungs = read_parts(folder)
    # A pruned sweep judges its winner against every configuration it evaluated, not the survivors alone: the spread of
    # Sharpe ratios takes each configuration at its last round, and PBO compares them all on the window every one of
    # them was run on (the first rung's; the whole window when nothing was pruned).
    first = _first_round(all_rungs, final)
    first_blocks = np.array(first.column("blocks").to_pylist()).reshape(first.num_rows, BLOCKS, 3)
    pbo = probability_of_overfitting(first_blocks)
    trials = _trials(_last_rounds(all_rungs), len(combinations), pbo)
    statuses, reasons, deflated = [], [], []
    for k in range(len(ids)):
        result = {name: final.column(name)[k].as_py() for name in METRICS}
        deflated.append(deflate(result, trials))
        verdicts = judge(pack, spec, result, trials)
        statuses.append(overall(verdicts))
        reasons.append("; ".join(v.reason for v in verdicts if v.status != "PASS"))
    table = pa.table({
        "rank": np.arange(1, len(ids) + 1),
        "config": ids,
        **{name: [_shown(combinations[i][position]) for i in ids] for position, name in enumerate(names)},
        **{name: final.column(name) for name in ("sharpe", "total_return", "trades", "max_drawdown", "win_rate",
                                                  "profit_factor", "exposure")},
        "holdout_sharpe": holdout[:, 0],
        "holdout_trades": holdout[:, 3],
        "fold_sharpe_std": fold_sharpe.std(axis=1, ddof=1) if fold_sharpe.shape[1] > 1 else np.zeros(len(ids)),
        "deflated_sharpe": np.array(deflated, dtype=np.float64),
        "gate": statuses,
        "reasons": reasons,
    })  # fmt: skip
    table = table.replace_schema_metadata({b"sigma.sweep": msgspec.json.encode(
        {"sweep": sweep_id, "model": spec.name, "axes": names, "pbo": pbo, "configurations": len(combinations),
         "lineage": msgspec.to_builtins(spec.lineage)})})
    pq.write_table(table, folder / "leaderboard.parquet")
    pruned = _pruned(all_rungs, set(ids.tolist()), combinations, names)
    pq.write_table(pruned, folder / "pruned.parquet")
    best = table.slice(0, 1).to_pylist()[0] if len(ids) else {}
    return {
        "configurations": len(combinations),
        "evaluated": len(ids),
        "pruned": pruned.num_rows,
        "pbo": pbo,
        "best": {key: best[key] for key in ("config", *names, "sharpe", "holdout_sharpe", "trades", "gate")} if best else {},
        "passing": statuses.count("PASS"),
    }


def read_parts(folder: Path, rung: int | None = None) -> pa.Table:
    """Every stored result row of a sweep (optionally of one rung)."""
    pattern = f"rung{rung}-*.parquet" if rung is not None else "rung*-*.parquet"
    tables = [pq.read_table(path) for path in sorted(folder.glob(pattern))]
    return pa.concat_tables(tables) if tables else pa.table({"config": pa.array([], pa.int64())})


class Trials(msgspec.Struct, frozen=True):
    """What a sweep's Sharpe ratios are judged against: how many configurations it tried, their spread, its PBO."""

    count: int
    variance: float
    """Variance of the per-bar Sharpe ratio across the configurations evaluated on the whole window."""
    pbo: float


def _first_round(rows: pa.Table, final: pa.Table) -> pa.Table:
    """The results every configuration has on one window: the first rung's when the sweep pruned, else the final ones."""
    rungs = [rung for rung in set(rows.column("rung").to_pylist()) if rung > 0] if rows.num_rows else []
    if not rungs:
        return final
    return rows.filter(pc.equal(rows.column("rung"), min(rungs)))


def _last_rounds(rows: pa.Table) -> pa.Table:
    """Each evaluated configuration's result at the last round it reached (rung 0, the whole window, last of all)."""
    latest: dict[int, tuple[float, int]] = {}  # config -> (how far it got, its row)
    for index, (config, rung) in enumerate(zip(rows.column("config").to_pylist(), rows.column("rung").to_pylist())):
        reached = math.inf if rung == 0 else rung
        if reached >= latest.get(config, (-1, 0))[0]:
            latest[config] = (reached, index)
    return rows.take(sorted(index for _, index in latest.values()))


def _trials(final: pa.Table, count: int, pbo: float) -> Trials:
    mean, std = final.column("mean").to_numpy(), final.column("std").to_numpy()
    per_bar = np.where(std > 0, mean / np.where(std > 0, std, 1), 0.0)
    return Trials(count=count, variance=float(np.var(per_bar, ddof=1)) if len(per_bar) > 1 else 0.0, pbo=pbo)


def trials(space: Workspace, sweep_id: str) -> Trials:
    """The trials of a finished sweep, as its leaderboard counted them."""
    _, meta = load(space, sweep_id)
    return _trials(_last_rounds(read_parts(space.sweeps_folder / sweep_id)), meta["configurations"], meta["pbo"])


def deflate(result: Mapping[str, float], trials: Trials) -> float:
    """The deflated Sharpe ratio of one backtest result (`METRICS` names) among the sweep's trials."""
    sharpe = result["mean"] / result["std"] if result["std"] > 0 else 0.0
    return deflated_sharpe(sharpe, trials.variance, trials.count, int(result["bars"]), result["skew"], result["kurtosis"])


def judge(pack, spec, result: Mapping[str, float], trials: Trials) -> list[GateResult]:
    """The model's risk-profile gates on one backtest result, deflated by the sweep's trials: how every row is judged."""
    return evaluate(pack.gates[spec.risk_profile], {**result, "deflated_sharpe": deflate(result, trials), "pbo": trials.pbo})


def _shown(value: object) -> object:
    if isinstance(value, list):
        return ",".join(map(str, value)) or "all day"
    return value


def _pruned(table: pa.Table, kept: set[int], combinations, names) -> pa.Table:
    last: dict[int, tuple[int, float]] = {}
    if table.num_rows:
        for config, rung, sharpe in zip(*(table.column(c).to_pylist() for c in ("config", "rung", "sharpe"))):
            if config not in kept and rung > 0 and rung >= last.get(config, (0, 0.0))[0]:
                last[config] = (rung, sharpe)
    ordered = sorted(last)
    return pa.table({
        "config": pa.array(ordered, pa.int64()),
        **{name: [_shown(combinations[i][p]) for i in ordered] for p, name in enumerate(names)},
        "pruned_at_rung": pa.array([last[i][0] for i in ordered], pa.int64()),
        "sharpe_when_pruned": pa.array([last[i][1] for i in ordered], pa.float64()),
    })  # fmt: skip


def load(space: Workspace, sweep_id: str) -> tuple[pa.Table, dict]:
    """The stored leaderboard of a finished sweep and its metadata."""
    record = space.sweep(sweep_id)
    path = space.sweeps_folder / sweep_id / "leaderboard.parquet"
    if record.status != "finished" or not path.exists():
        raise NotFoundError(f"sweep {sweep_id} is {record.status}; its leaderboard exists once it finishes"
                            + (f" (`sigma sweep resume {sweep_id}`)" if record.status in ("cancelled", "failed") else ""))
    table = pq.read_table(path)
    meta = msgspec.json.decode(table.schema.metadata[b"sigma.sweep"])
    if meta.get("pbo") is None:  # JSON keeps an undefined PBO (NaN) as null
        meta["pbo"] = math.nan
    return table, meta


def render(table: pa.Table, meta: dict, top: int = 10) -> str:
    """The leaderboard as an aligned text table, best first, with the sweep's PBO."""
    axes = meta["axes"]
    header = ["#", *axes, "Sharpe", "return", "trades", "max DD", "holdout", "fold sd", "DSR", "gate"]
    lines = []
    for row in table.slice(0, top).to_pylist():
        lines.append([
            str(row["rank"]), *(str(row[a]) for a in axes), f"{row['sharpe']:.2f}", f"{row['total_return']:.1%}",
            f"{row['trades']:.0f}", f"{row['max_drawdown']:.1%}", f"{row['holdout_sharpe']:.2f}",
            f"{row['fold_sharpe_std']:.2f}", f"{row['deflated_sharpe']:.2f}", row["gate"],
        ])  # fmt: skip
    widths = [max(len(cell) for cell in column) for column in zip(header, *lines)]
    text = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)) for line in [header, *lines]]
    for row in table.slice(0, top).to_pylist():
        if row["reasons"]:
            text.append(f"#{row['rank']} {row['gate']}: {row['reasons']}")
    text.append("return: equity compounded bar by bar, each trade's bar return on its entry price (not the trades' compound)")
    pbo = meta["pbo"]
    text.append(
        f"{meta['configurations']:,} configurations tried; probability of backtest overfitting "
        + ("undefined (one configuration, or none traded)" if pbo != pbo else f"{pbo:.0%}" + (" - the winner is likely luck" if pbo > 0.5 else ""))
    )
    return "\n".join(text)


def write_csv(table: pa.Table, out: Path | TextIO) -> None:
    """Export the whole leaderboard as CSV, to a file or an open text stream."""
    if isinstance(out, Path):
        with out.open("w", newline="") as handle:
            return write_csv(table, handle)
    writer = csv.writer(out)
    writer.writerow(table.column_names)
    writer.writerows(zip(*(table.column(name).to_pylist() for name in table.column_names)))


class Recipe(msgspec.Struct, frozen=True):
    """The parameters of one leaderboard row, saved for training: what won, where, and with which lineage."""

    model: str
    sweep: str
    rank: int
    parameters: dict[str, object]
    metrics: dict[str, float]
    gate: str
    lineage: dict[str, object]


def save_recipe(space: Workspace, sweep_id: str, rank: int = 1) -> Path:
    """Write the row at ``rank`` as ``<home>/recipes/<sweep>-<rank>.json``; returns the path."""
    table, meta = load(space, sweep_id)
    if not 1 <= rank <= table.num_rows:
        raise ConfigError("rank", f"the leaderboard has {table.num_rows} rows", f"choose 1 to {table.num_rows}")
    row = table.slice(rank - 1, 1).to_pylist()[0]
    recipe = Recipe(
        model=meta["model"],
        sweep=sweep_id,
        rank=rank,
        parameters={axis: row[axis] for axis in meta["axes"]},
        metrics={key: row[key] for key in ("sharpe", "total_return", "trades", "max_drawdown", "win_rate", "holdout_sharpe", "deflated_sharpe")},
        gate=row["gate"],
        lineage=meta["lineage"],
    )
    path = space.home / "recipes" / f"{sweep_id}-{rank}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(msgspec.json.format(msgspec.json.encode(recipe), indent=2))
    return path
