"""``sigma indicators list|compute``."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from cli._common import key_values, print_json
from engine.errors import ConfigError
from engine.indicators import INDICATORS, check_params, compute, describe, indicator_class

_TIME_COLUMNS = ("timestamp", "datetime", "date", "time")


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("indicators", help="list indicators or compute one over a file")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = verbs.add_parser("list", help="the indicator registry")
    listing.add_argument("--group", choices=sorted({cls.group for cls in INDICATORS.values()}), help="one group only")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    run = verbs.add_parser(
        "compute",
        help="compute an indicator over an OHLCV file",
        description="Reads OHLCV columns (case-insensitive) and writes one column per output. "
        "session_vwap takes its sessions from a `session` column or the date of a timestamp column.",
    )
    run.add_argument("name", help="registry name, e.g. rsi (see `sigma indicators list`)")
    run.add_argument("--param", action="append", metavar="KEY=VALUE", help="a parameter, repeatable")
    run.add_argument("--input", required=True, type=Path, help="a .csv or .parquet file")
    run.add_argument("--mode", choices=("batch", "stream"), default="batch", help="batch arrays or one row at a time (same numbers)")
    run.add_argument("--output", required=True, type=Path, help="the .csv file to write")
    run.set_defaults(handler=_compute)


def _list(args: argparse.Namespace) -> None:
    rows = describe(args.group)
    if args.json:
        return print_json(rows)
    for row in rows:
        params = ", ".join(f"{p['name']}={p['default']} [{p['minimum']}..{p['maximum']}]" for p in row["parameters"])
        print(f"{row['name']:<22} {row['group']:<15} warmup {row['warmup']:<4} {row['summary']}")
        print(f"{'':<22} in: {', '.join(row['inputs'])}  out: {', '.join(row['outputs'])}  {params}")


def _read_table(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise ConfigError("--input", f"no file at {path}")
    import pyarrow as pa

    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ConfigError("--input", f"{path.name} is neither .csv nor .parquet")
    try:
        if suffix == ".csv":
            from pyarrow import csv as arrow_csv

            table = arrow_csv.read_csv(path)
        else:
            import pyarrow.parquet as parquet

            table = parquet.read_table(path)
    except (pa.ArrowInvalid, OSError) as error:  # an empty file, a header alone, a file that is not what its name says
        raise ConfigError("--input", f"{path.name} cannot be read: {str(error).splitlines()[0]}",
                          "give a CSV with a header row and at least one row, or a Parquet file") from None
    if table.num_rows == 0:
        raise ConfigError("--input", f"{path.name} has no rows", "give a file with at least one row of prices")
    return {name.strip().lower(): table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}


def _time_column(table: dict[str, np.ndarray]) -> str | None:
    return next((name for name in _TIME_COLUMNS if name in table), None)


def _inputs(name: str, table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    columns = dict(table)
    time_column = _time_column(table)
    if "session" not in columns and time_column is not None:
        days = np.asarray(table[time_column]).astype("datetime64[D]")
        columns["session"] = days.astype(np.int64).astype(np.float64)
    needed = indicator_class(name).inputs
    missing = [column for column in needed if column not in columns]
    if missing:
        found = ", ".join(table) or "none"
        raise ConfigError("--input", f"{name} needs columns {', '.join(missing)}; the file has {found}")
    try:
        return {column: np.asarray(columns[column], dtype=np.float64) for column in needed}
    except (TypeError, ValueError):
        raise ConfigError("--input", f"columns {', '.join(needed)} must be numeric") from None


def _compute(args: argparse.Namespace) -> None:
    params = check_params(args.name, key_values(args.param, "--param"), where="--param")
    table = _read_table(args.input)
    inputs = _inputs(args.name, table)
    cls = INDICATORS[args.name]
    if args.mode == "batch":
        results = compute(args.name, inputs, params)
    else:
        indicator = cls(**params)
        rows = []
        for values in zip(*(inputs[column].tolist() for column in cls.inputs)):
            indicator.update(*values)
            rows.append([getattr(indicator, output) for output in cls.outputs])
        columns = np.array(rows, dtype=np.float64).reshape(-1, len(cls.outputs)).T
        results = dict(zip(cls.outputs, columns, strict=True))
    headers = [cls.name if len(cls.outputs) == 1 else f"{cls.name}.{output}" for output in cls.outputs]
    time_column = _time_column(table)
    with args.output.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(([time_column] if time_column else []) + headers)
        times = [str(t) for t in table[time_column]] if time_column else None
        for row in range(len(next(iter(inputs.values())))):
            values = ["" if np.isnan(results[o][row]) else repr(float(results[o][row])) for o in cls.outputs]
            writer.writerow(([times[row]] if times else []) + values)
