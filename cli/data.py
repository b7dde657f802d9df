"""``sigma data import|list|check|resample|synth`` and ``sigma preview``."""

from __future__ import annotations

import argparse
from datetime import date
from pathlib import Path

import msgspec

from cli._common import cadence, name, print_json, ticker, tickers, workspace
from engine.calendar import CALENDARS, calendar
from engine.errors import ConfigError
from engine.store import ADJUSTMENTS, bars_path, datasets, store_bars, store_ticks


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("data", help="import, list, check and resample market data")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    load = verbs.add_parser(
        "import",
        help="import OHLCV bars from CSV or Parquet files",
        description="Import one ticker's bars at one cadence. Times become UTC from a declared time zone; "
        "the data-quality report is printed, and data that FAILs is not stored.",
    )
    load.add_argument("files", nargs="+", type=Path, help="CSV (.csv, .csv.gz) or Parquet files, in time order")
    load.add_argument("--ticker", required=True, type=ticker)
    load.add_argument("--cadence", required=True, type=cadence, help="bar cadence: 1m, 5m, 1h, 1d, 1w, ...")
    load.add_argument("--calendar", default="us_equities", choices=sorted(CALENDARS), help="exchange calendar (default us_equities)")
    load.add_argument("--timezone", help="time zone of naive times, e.g. America/New_York or UTC (daily dates default to the calendar's)")
    load.add_argument("--columns", help="field=column pairs, e.g. time=Date,close=Close (names or 0-based positions)")
    load.add_argument("--no-header", action="store_true", help="the files have no header row")
    load.add_argument("--time-format", help="strptime format of text times, e.g. '%%Y%%m%%d %%H:%%M'")
    load.add_argument("--epoch-unit", choices=("s", "ms", "us", "ns"), help="times are numbers since 1970-01-01 UTC in this unit")
    load.add_argument("--day-offset-unit", choices=("s", "ms", "us", "ns"), help="times count from local midnight of the YYYYMMDD in the file name")
    load.add_argument("--time-label", choices=("start", "end"), default="start", help="a row's time is its bar's start (default) or end")
    load.add_argument("--price-scale", type=float, default=1.0, help="divide prices by this (10000 for Lean)")
    load.add_argument("--factor-file", help="Lean factor file to adjust raw prices with (to --adjustment: total_return or split)")
    load.add_argument("--adjustment", choices=ADJUSTMENTS,
                      help="what the stored prices are: raw (default), split or total_return; with --factor-file, what it "
                           "adjusts them to (default total_return; a raw live feed continues raw or split history only)")
    load.add_argument("--negative-prices", action="store_true", help="allow zero and negative prices (spreads)")
    load.add_argument("--hours", choices=("all", "regular"), default="all",
                      help="regular: keep intraday bars of the calendar's session hours only (the live flow then builds those too)")
    load.add_argument("--quote-side", choices=("mid", "bid", "ask"), default="mid",
                      help="of a file of bid and ask bars (BidOpen ... AskClose): their mid (default), or one side")
    load.add_argument("--replace", action="store_true", help="overwrite an existing dataset")
    load.set_defaults(handler=_import)

    listing = verbs.add_parser("list", help="the workspace's datasets")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_list)

    check = verbs.add_parser("check", help="the data-quality report of a dataset (exit 1 when it FAILs)")
    check.add_argument("ticker", type=ticker)
    check.add_argument("--cadence", type=cadence, default="1d")
    check.add_argument("--json", action="store_true")
    check.set_defaults(handler=_check)

    coarser = verbs.add_parser("resample", help="store a ticker's bars at a coarser cadence")
    coarser.add_argument("ticker", type=ticker)
    coarser.add_argument("--from", dest="source", type=cadence, required=True, help="stored cadence, e.g. 1m")
    coarser.add_argument("--to", dest="target", type=cadence, required=True, help="coarser cadence, e.g. 1h or 1d")
    coarser.add_argument("--replace", action="store_true", help="overwrite stored bars of the target cadence")
    coarser.set_defaults(handler=_resample)

    synth = verbs.add_parser("synth", help="generate a seeded synthetic market into the workspace")
    synth.add_argument("--tickers", type=tickers, default="SPY,QQQ,IWM", help="comma-separated tickers (default SPY,QQQ,IWM)")
    synth.add_argument("--cadence", type=cadence, default="1d")
    synth.add_argument("--sessions", type=int, default=1260, help="trading sessions per ticker (default 1260, five years)")
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--start", default="2020-01-02", help="first session date")
    synth.add_argument("--ticks", action="store_true", help="also store ticks with bid/ask (intraday cadences)")
    synth.add_argument("--calendar", default="us_equities", choices=sorted(CALENDARS))
    synth.add_argument("--replace", action="store_true", help="overwrite stored bars of these tickers and cadence")
    synth.set_defaults(handler=_synth)

    export = verbs.add_parser(
        "export",
        help="write stored bars (or ticks) as a feed `sigma run --source files` replays",
        description="Writes the stored bars of TICKERS at --cadence (with --ticks: their stored ticks) between --from and "
        "--to, merged across tickers in event-time order, in the columns the flow reads. .parquet or .jsonl.",
    )
    export.add_argument("tickers", type=tickers, help="comma-separated tickers")
    export.add_argument("--cadence", type=cadence, default="1d")
    export.add_argument("--from", dest="start", type=date.fromisoformat, help="first day (YYYY-MM-DD); default: all stored")
    export.add_argument("--to", dest="end", type=date.fromisoformat, help="last day (YYYY-MM-DD); default: all stored")
    export.add_argument("--ticks", action="store_true", help="the stored ticks instead of the bars")
    export.add_argument("--output", type=Path, required=True, help="the file to write: .parquet or .jsonl")
    export.set_defaults(handler=_export)

    look = commands.add_parser("preview", help="a model's features over its last bars (warmed on the bars stored before them), "
                                               "with their missing and warm-up shares")  # fmt: skip
    look.add_argument("model", type=name("model"))
    look.add_argument("--bars", type=int, default=2000, help="window length (default 2000)")
    look.add_argument("--json", action="store_true")
    look.set_defaults(handler=_preview)


def _import(args: argparse.Namespace) -> int:
    from research.data import ImportOptions, import_bars

    columns = {}
    for pair in (args.columns or "").split(","):
        if pair:
            field, sep, column = pair.partition("=")
            if not sep:
                raise ConfigError("--columns", f"{pair!r} is not field=column", "write e.g. --columns time=Date,close=Close")
            columns[field.strip()] = column.strip()
    options = ImportOptions(
        ticker=args.ticker, cadence=args.cadence, calendar=args.calendar, timezone=args.timezone,
        columns=columns, header=not args.no_header, time_format=args.time_format, epoch_unit=args.epoch_unit,
        day_offset_unit=args.day_offset_unit, time_label=args.time_label, price_scale=args.price_scale,
        factor_file=args.factor_file, adjustment=args.adjustment, negative_prices=args.negative_prices,
        quote_side=args.quote_side, hours=args.hours, replace=args.replace,
    )  # fmt: skip
    with workspace() as space:
        info, report = import_bars(space.home, args.files, options)
    print(report.render())
    repaired = f", {info.repaired} OHLC repaired" if info.repaired else ""
    dropped = f", {info.dropped} rows with missing values dropped" if info.dropped else ""
    print(f"imported {info.ticker} {info.cadence}: {info.rows:,} bars {info.first} to {info.last}{repaired}{dropped}")
    return 0


def _list(args: argparse.Namespace) -> None:
    with workspace() as space:
        found = datasets(space.home)
    if args.json:
        return print_json(found)
    if not found:
        print("no datasets yet: `sigma data import FILE --ticker SPY --cadence 1d` or `sigma data synth`")
    for info in found:
        print(f"{info.ticker:<8} {info.cadence:<4} {info.rows:>9,} bars  {info.first} to {info.last}  {info.calendar}  {info.source[:40]}")


def _check(args: argparse.Namespace) -> int:
    from research.data import check_dataset

    with workspace() as space:
        report = check_dataset(space.home, args.ticker, args.cadence)
    if args.json:
        print_json(report)
    else:
        print(report.render())
    return 1 if report.status == "FAIL" else 0


def _resample(args: argparse.Namespace) -> None:
    from research.data import resample_dataset

    with workspace() as space:
        info = resample_dataset(space.home, args.ticker, args.source, args.target, replace=args.replace)
    print(f"stored {info.ticker} {info.cadence}: {info.rows:,} bars")


def _export(args: argparse.Namespace) -> None:
    import pyarrow.parquet as pq

    from replay import feed

    if args.output.suffix not in (".parquet", ".jsonl"):
        raise ConfigError("--output", f"{args.output.name}: unknown file type", "use .parquet or .jsonl")
    with workspace() as space:
        window = feed.window(space.home, args.tickers, args.cadence, args.start, args.end, with_ticks=args.ticks)
    parquet = args.output if args.output.suffix == ".parquet" else args.output.with_suffix(".parquet.partial")
    if args.ticks:
        feed.write_ticks(window, parquet)
    else:
        feed.write_bars(window.bars, parquet)
    table = pq.read_table(parquet)
    if args.output.suffix == ".jsonl":  # one JSON object a row, nulls (absent fields) left out
        with args.output.open("wb") as out:
            for row in table.to_pylist():
                out.write(msgspec.json.encode({key: value for key, value in row.items() if value is not None}) + b"\n")
        parquet.unlink()
    kind = "ticks" if args.ticks else "bars"
    print(f"wrote {table.num_rows:,} {kind} of {', '.join(args.tickers)} to {args.output}: "
          f"`sigma run --source files --file {args.output}{'' if args.ticks else ' --kind bars'}` replays them")  # fmt: skip


def _synth(args: argparse.Namespace) -> None:
    from research.synthetic import generate

    cal = calendar(args.calendar)
    market = generate(args.tickers, args.cadence, args.sessions, cal, seed=args.seed, start=date.fromisoformat(args.start), ticks=args.ticks)
    with workspace() as space:
        stored = [symbol for symbol in market if bars_path(space.home, symbol, args.cadence).exists()]
        if stored and not args.replace:  # checked for every ticker before any is written
            raise ConfigError("tickers", f"{', '.join(stored)} {args.cadence} bars are already stored", "pass --replace to overwrite them")
        for symbol, (bars, ticks) in market.items():
            info = store_bars(space.home, bars, cal, source=f"synthetic seed {args.seed}")
            extra = f" and {store_ticks(space.home, symbol, ticks):,} ticks" if ticks is not None else ""
            print(f"stored {symbol} {info.cadence}: {info.rows:,} bars{extra}")


def _preview(args: argparse.Namespace) -> int:
    from research.preview import preview

    with workspace() as space:
        result = preview(space.home, space.model(args.model), args.bars)
    if args.json:
        print_json(msgspec.to_builtins(result) | {"status": result.status})
    else:
        print(result.render())
    return 1 if result.status == "FAIL" else 0
