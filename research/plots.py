"""Pictures of a finished sweep: equity curves of the best configurations and a parameter heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.workspace import Workspace
from research.leaderboard import load

__all__ = ["plot"]


def plot(space: Workspace, sweep_id: str, curves: dict[int, np.ndarray], top: int = 5, times: np.ndarray | None = None) -> list[Path]:
    """Write ``equity.png`` (``curves``: config id -> per-bar returns, at bar ``times`` in UTC nanoseconds) and
    ``heatmap.png``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen
    import matplotlib.pyplot as plt

    table, meta = load(space, sweep_id)
    folder = space.sweeps_folder / sweep_id
    rows = table.slice(0, top).to_pylist()
    figure, axis = plt.subplots(figsize=(10, 5))
    for row in rows:
        equity = np.cumprod(1.0 + curves[row["config"]])
        label = ", ".join(f"{a}={row[a]}" for a in meta["axes"])
        x = np.arange(len(equity)) if times is None else np.asarray(times[: len(equity)], dtype="datetime64[ns]")
        axis.plot(x, equity, label=f"#{row['rank']} Sharpe {row['sharpe']:.2f}: {label}", linewidth=1)
    axis.set(title=f"{meta['model']}: equity of the top {len(rows)} configurations (development window)",
             xlabel="bar" if times is None else "date (UTC)", ylabel="equity")
    axis.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the curves, not on them
    figure.autofmt_xdate()
    equity_path = folder / "equity.png"
    figure.savefig(equity_path, dpi=110, bbox_inches="tight")
    plt.close(figure)

    # The two axes with the most distinct values: an axis the sweep held at one value would make a heatmap of one row.
    varied = sorted(meta["axes"], key=lambda a: -len(set(map(str, table.column(a).to_pylist()))))
    first, second = varied[0], varied[1] if len(varied) > 1 else varied[0]
    xs = sorted(set(table.column(first).to_pylist()), key=str)
    ys = sorted(set(table.column(second).to_pylist()), key=str)
    best = np.full((len(ys), len(xs)), np.nan)
    for x, y, sharpe in zip(*(table.column(c).to_pylist() for c in (first, second, "sharpe"))):
        cell = (ys.index(y), xs.index(x))
        best[cell] = np.nanmax([best[cell], sharpe])
    figure, axis = plt.subplots(figsize=(8, 5))
    image = axis.imshow(best, cmap="RdYlGn", aspect="auto")
    axis.set_xticks(range(len(xs)), [str(x) for x in xs])
    axis.set_yticks(range(len(ys)), [str(y) for y in ys])
    axis.set(title=f"best Sharpe by {first} and {second}", xlabel=first, ylabel=second)
    figure.colorbar(image, ax=axis, label="Sharpe")
    heatmap_path = folder / "heatmap.png"
    figure.savefig(heatmap_path, dpi=110, bbox_inches="tight")
    plt.close(figure)
    return [equity_path, heatmap_path]
