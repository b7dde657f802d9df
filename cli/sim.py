"""``sigma sim run|resume|cancel|status|report``: paper trading by replay (SigmaSim)."""

from __future__ import annotations

import argparse
from datetime import UTC, date, datetime

import msgspec

from cli._common import actor, key_values, name, print_json, tickers, workspace
from engine.errors import ConfigError
from engine.workspace import default_home


def register(commands: argparse._SubParsersAction) -> None:
    sim = commands.add_parser("sim", help="paper trading by replay: stored history through the live flow and a paper broker")
    verbs = sim.add_subparsers(dest="verb", required=True, metavar="VERB")
    run = verbs.add_parser(
        "run",
        help="replay stored history through the live flow and paper-trade its alerts",
        description="Runs the stored bars (or ticks) of the models' tickers through the live dataflow, with the named "
        "trained models served as they would be live, published or not. Alerts go to a private redis-server of the run "
        "(or, without one installed, to the run's alert file), and the paper broker reads them through a consumer group "
        "and fills them against the data that follows each alert. Ctrl-C or `sigma sim cancel RUN` stops; "
        "`sigma sim resume RUN` continues without doubling an alert or a fill.",
    )
    run.add_argument("models", nargs="+", metavar="TRAINED_ID", type=name("TRAINED_ID"), help="trained models to paper-trade (`sigma models trained`)")
    run.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (YYYY-MM-DD); default: all stored")
    run.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (YYYY-MM-DD); default: all stored")
    run.add_argument("--tickers", type=tickers, help="comma-separated tickers of the models' universes (default: all of them)")
    run.add_argument("--source", choices=("bars", "ticks"), default="bars", help="replay stored bars or stored ticks")
    run.add_argument("--speed", default="max", help="max: as fast as the flow goes; 1x: real time; 10x, 60x, 0.5x: a multiple of it")
    run.add_argument("--convention", choices=("market", "backtest"), default="market",
                     help="market: fills as a broker would (next quote or open, bps slippage, fees); "
                     "backtest: exactly as the research backtest (the parity convention)")  # fmt: skip
    run.add_argument("--fill", action="append", metavar="NAME=VALUE",
                     help="a fill setting: slippage_bps, slippage_ticks, tick_size, limit_fill_probability, participation, "
                     "cash, initial_margin, multiplier, option_multiplier, lateness_ms, seed, fees.per_share, fees.minimum, "
                     "fees.per_option_contract, fees.per_future_contract (repeatable)")  # fmt: skip
    run.add_argument("--redis-url", help="write the replay's alerts to this Redis (its {sigma}:alerts streams) instead of a private one")
    run.add_argument("--json", action="store_true", help="print the finished run as JSON")
    run.set_defaults(handler=_run)

    live = verbs.add_parser(
        "live",
        help="paper-trade the live flow's alerts against the live tick stream, in an account that survives restarts",
        description="Reads each model's alert stream and the tick stream through the consumer group sigma-sim-ACCOUNT; "
        "an alert becomes an order once the ticks reach its time and fills on the ticks that follow it. The account is "
        "written after every batch, before the entries are acknowledged: a crash and a restart act on no alert or tick "
        "twice and lose none. One process per account. Ctrl-C stops; `sigma sim status --account ACCOUNT` shows it.",
    )
    live.add_argument("models", nargs="+", metavar="TRAINED_ID", type=name("TRAINED_ID"))
    live.add_argument("--account", type=name("--account"), default="paper", help="the paper account's name (default: paper)")
    live.add_argument("--redis-url", default=None, help="the live flow's Redis (default: $REDIS_URL or redis://127.0.0.1:6379/0)")
    live.add_argument("--stream", default="{sigma}:ticks", help="the tick stream the flow reads")
    live.add_argument("--convention", choices=("market", "backtest"), default=None, help="fill convention of a new account (default market)")
    live.add_argument("--fill", action="append", metavar="NAME=VALUE", help="a fill setting of a new account (as for `sim run`)")
    live.add_argument("--until-end", action="store_true", help="stop at the tick stream's eof entry once the alerts are read")
    live.set_defaults(handler=_live)

    resume = verbs.add_parser("resume", help="continue a cancelled or failed paper run where it stopped")
    resume.add_argument("run", type=name("run"))
    resume.add_argument("--json", action="store_true")
    resume.set_defaults(handler=_resume)
    stop = verbs.add_parser("cancel", help="stop a running paper run (from another shell)")
    stop.add_argument("run", type=name("run"))
    stop.set_defaults(handler=_cancel)
    status = verbs.add_parser("status", help="paper runs, or one run's account (or a live one's): positions, P&L and the last fills")
    status.add_argument("run", nargs="?", type=name("run"))
    status.add_argument("--account", type=name("--account"), help="a live paper account (`sigma sim live --account`)")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    report = verbs.add_parser("report", help="a finished paper run's summary, trust gate and parity diff, and its HTML report",
                              description="Prints the summary, the trust gate's verdict and the parity diff against the research "
                              "backtest of the same artifact over the same bars, and writes report.html in the run's folder: "
                              "equity and drawdown curves of paper and backtest, the trades with their fills, the slippage "
                              "distribution, the gates and the diff; one file that loads nothing from elsewhere.")  # fmt: skip
    report.add_argument("run", type=name("run"))
    report.add_argument("--json", action="store_true")
    report.set_defaults(handler=_report)


def fill_settings(convention: str, pairs: list[str] | None):
    """The run's `FillSettings` from ``--convention`` and ``--fill`` pairs; `ConfigError` names a wrong one."""
    from replay.broker import FillSettings

    values: dict[str, object] = {"convention": convention}
    fees: dict[str, object] = {}
    for key, value in key_values(pairs, "--fill").items():
        if key.startswith("fees."):
            fees[key.removeprefix("fees.")] = value
        else:
            values[key] = value
    if fees:
        values["fees"] = fees
    try:
        return msgspec.convert(values, FillSettings)
    except msgspec.ValidationError as error:
        raise ConfigError("--fill", str(error), "see `sigma sim run --help` for the settings and their ranges") from None


def _run(args: argparse.Namespace) -> int:
    from replay import sim

    request = sim.SimRequest(models=args.models, start=args.start, end=args.end,
                             tickers=args.tickers or [], source=args.source,
                             speed=args.speed, fill=fill_settings(args.convention, args.fill), redis_url=args.redis_url)  # fmt: skip
    with workspace() as space:
        started = sim.start(space, request, actor=actor())
    print(f"paper run {started.run_id}: {', '.join(started.request.models)} over {', '.join(started.tickers)} "
          f"({started.cadence}), fills by the {request.fill.convention} convention")  # fmt: skip
    return _finish(sim.execute(default_home(), started.run_id), args.json)


def _resume(args: argparse.Namespace) -> int:
    from replay import sim

    run = sim.load(default_home(), args.run)
    if run.status == "done":
        print(f"{run.run_id} had finished")
        return _finish(run, args.json)
    return _finish(sim.execute(default_home(), run.run_id), args.json)


def _finish(run, as_json: bool) -> int:
    from replay import gate, sim

    if run.status == "done" and run.verdict is None:
        gate.judge(default_home(), run.run_id)
        run = sim.load(default_home(), run.run_id)
    if as_json:
        print_json(run)
    elif run.status == "done":
        s = run.summary
        print(f"{run.run_id}: done. equity {s['equity']:,.2f} ({s['total_return']:+.2%}), {s['trades']:.0f} trades "
              f"(win rate {s['win_rate']:.0%}), max drawdown {s['max_drawdown']:.2%}, fees {s['fees']:,.2f}; "
              f"`sigma sim report {run.run_id}` compares it with the backtest")  # fmt: skip
        _print_verdict(run)
    return 0 if run.status == "done" else 130


def _print_verdict(run) -> None:
    verdict = run.verdict
    with workspace() as space:  # training's own verdict still stands between a passing paper record and going live
        refused = {model: space.trained(model).refusal for model in run.request.models}
    refused = {model: why for model, why in refused.items() if why}
    if verdict["status"] == "FAIL":
        after = ""
    elif refused:
        after = " (paper passes, but training marked " + "; ".join(f"{model} not publishable: {why}" for model, why in refused.items()) + ")"
    else:
        after = " (may go live: `sigma publish`)"
    print(f"trust gate: {verdict['status']}{after}")
    for result in verdict["gates"]:
        print(f"  {result['status']:<8} {result['reason']}")


def _live(args: argparse.Namespace) -> int:
    import os

    from replay import live

    fill = fill_settings(args.convention or "market", args.fill) if args.convention or args.fill else None
    url = args.redis_url or os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    print(f"paper account {args.account}: {', '.join(args.models)} on {args.stream} (Ctrl-C stops; restart to continue)")
    try:
        state = live.attach(default_home(), args.account, args.models, url, ticks=args.stream, fill=fill, until_end=args.until_end)
    except KeyboardInterrupt:
        state = live.load(default_home(), args.account)
    _show_account(f"account {args.account}", state.account)
    return 0


def _show_account(title: str, book) -> None:
    from replay import sim

    print(f"{title}: cash {book.cash:,.2f}, equity {sim.summary(book)['equity']:,.2f}, realised P&L {book.realised:,.2f}, "
          f"{len(book.trades)} trades, {len(book.fills)} fills")  # fmt: skip
    for position in book.positions.values():
        print(f"  open  {position.model} {position.instrument} {position.quantity:g} @ {position.entry_price:.4f}, mark {position.mark:.4f}")
    for fill in book.fills[-10:]:
        moment = datetime.fromtimestamp(fill.at / 1e9, UTC)
        print(f"  fill  {moment:%Y-%m-%d %H:%M:%S} {fill.instrument} {'BUY' if fill.side > 0 else 'SELL'} {fill.quantity:g} @ {fill.price:.4f} "
              f"fee {fill.fee:.2f} ({fill.reason})")  # fmt: skip


def _cancel(args: argparse.Namespace) -> None:
    from replay import sim

    run = sim.cancel(default_home(), args.run)
    print(f"{run.run_id}: " + ("asked to stop" if run.shown_status == "running" else f"not running ({run.shown_status})"))


def _status(args: argparse.Namespace) -> None:
    from replay import sim

    home = default_home()
    if args.account is not None:
        from replay import live

        state = live.load(home, args.account)
        if args.json:
            print_json(state)
        else:
            _show_account(f"live paper account {args.account} ({', '.join(state.models)})", state.account)
        return
    if args.run is None:
        listed = sim.runs(home)
        if args.json:
            print_json(listed)
            return
        if not listed:
            print("no paper runs yet: `sigma sim run TRAINED_ID`")
        for run in listed:
            done = f" return {run.summary['total_return']:+.2%}, {run.summary['trades']:.0f} trades" if run.summary else ""
            print(f"{run.run_id}  {run.shown_status:<9} {','.join(run.request.models)}  {run.request.fill.convention}{done}")
        return
    run = sim.load(home, args.run)
    book = sim.account(home, args.run)
    if args.json:
        print_json({"run": run, "account": book})
        return
    _show_account(f"{run.run_id}: {run.shown_status}" + (f" (`sigma sim resume {run.run_id}` continues it)"
                                                         if run.shown_status == "killed" else ""), book)


def _report(args: argparse.Namespace) -> int:
    from replay import gate, parity, report, sim

    home = default_home()
    run = sim.load(home, args.run)
    if run.status == "done" and run.verdict is None:
        gate.judge(home, run.run_id)
        run = sim.load(home, run.run_id)
    diff = parity.report(home, args.run)
    page = report.write(home, run, sim.account(home, args.run), diff)
    if args.json:
        print_json({"run": run, "parity": diff, "html": str(page)})
        return 0
    s = run.summary
    print(f"{run.run_id} ({run.request.fill.convention} fills): return {s['total_return']:+.2%}, {s['trades']:.0f} trades, "
          f"max drawdown {s['max_drawdown']:.2%}")  # fmt: skip
    if run.verdict:
        _print_verdict(run)
    print(f"parity against the backtest: {diff.features} feature rows, {diff.scores} bar probabilities, {diff.decisions} decisions and {diff.trades} trades compared, "
          f"{len(diff.differences)} differences")  # fmt: skip
    for d in diff.differences[:40]:
        print(f"  {d.what:<8} {d.key}  {d.field}: backtest {d.backtest}, replay {d.replay}  ({d.cause})")
    for cause, value in sorted(diff.return_gap.items(), key=lambda item: -abs(item[1])):
        print(f"  return gap from {cause}: {value:+.4%}")
    print(f"report: {page}")
    return 0
