"""``sigma sweep run|cancel|resume|list|results|plot``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from cli._common import actor, name, number, pack_and_model, print_json, tickers, workspace
from engine.errors import ConfigError
from engine.models import SweepRequest

if TYPE_CHECKING:
    from research.sweep import Progress


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("sweep", help="search execution parameters of a model, rank and gate them")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    start = verbs.add_parser(
        "run",
        help="run a sweep over a model",
        description="Backtest a grid of execution parameters on out-of-fold probabilities. Simple mode: "
        "thresholds x allowed hours x top_pct (or position size), at most 45. Custom mode adds stops, targets, "
        "positions, hold days and entry types, at most 1,000 (3,000 with --pro), pruned by successive halving. "
        "Ctrl-C cancels and keeps finished work; `sigma sweep resume ID` continues.",
    )
    start.add_argument("model", type=name("model"))
    start.add_argument("--mode", choices=("simple", "custom"), default="simple")
    start.add_argument("--preset", help="a sweep preset of the pack (conservative, balanced, aggressive)")
    start.add_argument("--universe", type=tickers, help="comma-separated tickers to trade cross-sectionally (default: the model's)")
    start.add_argument("--set", action="append", metavar="AXIS=V1,V2", help="replace an axis's values, e.g. stop_loss=0.02,0.04")
    start.add_argument("--pro", action="store_true", help="pro plan: allow up to 3,000 custom combinations")
    start.add_argument("--no-prune", action="store_true", help="backtest every custom combination on the whole window")
    start.add_argument("--commission-bps", type=float, default=1.0, help="commission per side in basis points (default 1)")
    start.add_argument("--seed", type=int, default=0)
    start.add_argument("--estimate", action="store_true", help="print its size and estimated run time, measured here, and start nothing")
    start.set_defaults(handler=_run)

    stop = verbs.add_parser("cancel", help="stop a running sweep after its current chunk (from any shell)")
    stop.add_argument("id", type=name("sweep"))
    stop.set_defaults(handler=_cancel)

    again = verbs.add_parser("resume", help="continue a cancelled or killed sweep without redoing finished work")
    again.add_argument("id", type=name("sweep"))
    again.set_defaults(handler=_resume)

    listing = verbs.add_parser("list", help="the workspace's sweeps")
    listing.add_argument("--model", type=name("--model"))
    listing.add_argument("--tag", action="append", metavar="CATEGORY=VALUE", help="only sweeps of models with this tag")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    results = verbs.add_parser("results", help="the leaderboard of a finished sweep")
    results.add_argument("id", type=name("sweep"))
    results.add_argument("--top", type=int, default=10)
    results.add_argument("--csv", type=Path, help="export the whole leaderboard to this CSV file")
    results.add_argument("--save-recipe", type=int, nargs="?", const=1, metavar="RANK", help="save a row's parameters as a JSON recipe (default rank 1)")
    results.add_argument("--json", action="store_true")
    results.set_defaults(handler=_results)

    pictures = verbs.add_parser("plot", help="equity curves and a parameter heatmap (PNG) of the top configurations")
    pictures.add_argument("id", type=name("sweep"))
    pictures.add_argument("--top", type=int, default=5)
    pictures.set_defaults(handler=_plot)


class _Bar:
    """A progress bar on stderr when it is a terminal; otherwise a line every 10 seconds."""

    def __init__(self) -> None:
        self.terminal = sys.stderr.isatty()
        self.last = 0.0

    def __call__(self, progress: Progress) -> None:
        share = progress.done / max(progress.total, 1)
        line = (f"[{'#' * int(30 * share):<30}] {progress.done:,}/{progress.total:,} {share:4.0%} "
                f"{progress.configs_per_second:,.0f} configs/s, ETA {progress.eta_seconds:.0f} s, best Sharpe {progress.best_sharpe:.2f}")
        if self.terminal:
            sys.stderr.write("\r" + line)
            if progress.done >= progress.total:
                sys.stderr.write("\n")
        elif time.monotonic() - self.last >= 10 or progress.done >= progress.total:
            sys.stderr.write(line + "\n")
            self.last = time.monotonic()
        sys.stderr.flush()


def _request(args: argparse.Namespace) -> SweepRequest:
    overrides: dict[str, list] = {}
    for pair in args.set or ():
        axis, sep, values = pair.partition("=")
        if not sep:
            raise ConfigError("--set", f"{pair!r} is not AXIS=V1,V2", "write e.g. --set stop_loss=0.02,0.04")
        overrides[axis.strip()] = [number(v.strip()) for v in values.split(",") if v.strip()]
    universe = args.universe or []
    return SweepRequest(model=args.model, mode=args.mode, preset=args.preset, universe=universe,
                        overrides=overrides, pro=args.pro, prune=not args.no_prune,
                        commission_bps=args.commission_bps, seed=args.seed)


def _finish(space, sweep_id: str) -> int:
    from research import leaderboard

    record = space.sweep(sweep_id)
    if record.status != "finished":
        print(f"sweep {sweep_id} {record.shown_status} after {record.done:,} of {record.total:,}; "
              f"continue it with `sigma sweep resume {sweep_id}`")
        return 130 if record.status == "cancelled" else 1
    table, meta = leaderboard.load(space, sweep_id)
    print(leaderboard.render(table, meta))
    print(f"sweep {sweep_id} finished: `sigma sweep results {sweep_id}` to see it again")
    return 0


def _run(args: argparse.Namespace) -> int:
    from research import sweep

    with workspace() as space:
        pack, spec = pack_and_model(space, args.model)
        if args.estimate:
            told = sweep.estimate(space.home, pack, spec, _request(args))
            print(f"{told.configurations:,} configurations ({told.backtests:,} backtests) x {told.tickers} ticker(s) over {told.rows:,} bars: "
                  f"about {told.seconds:.0f} s (out-of-fold training {told.training_seconds:.0f} s, backtests {told.backtest_seconds:.0f} s)")
            return 0
        return _finish(space, sweep.start(space, pack, spec, _request(args), actor=actor(), report=_Bar()))


def _cancel(args: argparse.Namespace) -> None:
    from research import sweep

    with workspace() as space:
        sweep.cancel(space, args.id, actor=actor())
    print(f"cancel requested for {args.id}; it stops after its current chunk")


def _resume(args: argparse.Namespace) -> int:
    from research import sweep

    with workspace() as space:
        pack, spec = pack_and_model(space, space.sweep(args.id).model)
        return _finish(space, sweep.resume(space, pack, spec, args.id, actor=actor(), report=_Bar()))


def _list(args: argparse.Namespace) -> None:
    wanted = {}
    for pair in args.tag or ():
        category, _, value = pair.partition("=")
        wanted[category] = value
    with workspace() as space:
        records = [r for r in space.sweeps(args.model) if all(v in r.tags.get(c, ()) for c, v in wanted.items())]
    if args.json:
        return print_json(records)
    if not records:
        print("no sweeps yet: `sigma sweep run MODEL`")
    for r in records:
        best = (r.summary or {}).get("best", {})
        shown = f"best Sharpe {best['sharpe']:.2f} ({best['gate']})" if best else ""
        print(f"{r.id:<40} {r.shown_status:<10} {r.done:>6,}/{r.total:<6,} {r.created_at[:19]}  {shown}")


def _results(args: argparse.Namespace) -> None:
    from research import leaderboard

    with workspace() as space:
        table, meta = leaderboard.load(space, args.id)
        if args.csv:
            leaderboard.write_csv(table, args.csv)
            print(f"wrote {table.num_rows:,} rows to {args.csv}")
        if args.save_recipe:
            path = leaderboard.save_recipe(space, args.id, args.save_recipe)
            print(f"saved recipe {path}")
    if args.json:
        return print_json({"meta": meta, "rows": table.slice(0, args.top).to_pylist()})
    print(leaderboard.render(table, meta, args.top))


def _plot(args: argparse.Namespace) -> None:
    from research import leaderboard, sweep
    from research.backtest import trades
    from research.plots import plot

    with workspace() as space:
        record = space.sweep(args.id)
        pack, spec = pack_and_model(space, record.model)
        request, names, combinations, prepared = sweep.reload(space, args.id, pack, spec)
        table, _ = leaderboard.load(space, args.id)
        market = prepared.market.window(prepared.development)
        curves = {}
        for config in table.column("config").to_pylist()[: args.top]:
            row = sweep.config_row(names, combinations[config], pack, spec, request, len(market.tickers))
            curves[config] = trades(market, row)[1]
        paths = plot(space, args.id, curves, args.top, times=market.end)
    for path in paths:
        print(f"wrote {path}")
