"""Market data into the workspace: import bars from CSV or Parquet, check and resample stored datasets.

Import is the edge where files are trusted or refused: every time is converted to
UTC from a declared time zone (naive intraday times without one are refused), and
the quality report decides. A file of bid and ask bars (FXCM's ``BidOpen`` ...
``AskClose``) gives the mid bars by default, or one side (``quote_side``): the two
sides are built independently, so a bid high above an ask low inside one bar is
no crossed market and is not refused. Data that FAILs is not stored; data that WARNs is stored
(`engine.store`) with its OHLC repairs and dropped rows counted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq

from engine import names
from engine.bars import COLUMNS, Bars, resample
from engine.cadence import parse_cadence, rolls_up
from engine.calendar import (
    EPOCH,
    NS_PER_DAY,
    NS_PER_MINUTE,
    Calendar,
    calendar,
    close_minutes,
    local_to_utc,
    session_days,
)
from engine.errors import ConfigError, NotFoundError, SigmaError
from engine.quality import QualityReport, check_bars, ohlc_violations
from engine.store import ADJUSTMENTS, Dataset, bars_path, load_bars, store_bars

__all__ = ["ImportOptions", "import_bars", "check_dataset", "resample_dataset"]

_FIELDS = ("time", "open", "high", "low", "close", "volume")
_TIME_NAMES = ("", "date", "datetime", "timestamp", "time", "timestamp_utc", "ts")
_VOLUME_NAMES = ("volume", "tickqty", "tick_volume")
_SIDES = ("mid", "bid", "ask")
_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


class ImportOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How to read one vendor's files; every field has the default that fits most CSV exports."""

    ticker: str
    cadence: str
    calendar: str = "us_equities"
    timezone: str | None = None
    """Time zone of naive times; daily dates default to the calendar's zone."""
    columns: dict[str, str] = {}
    """Sigma field (time, open, high, low, close, volume) to the file's column name or 0-based position."""
    header: bool = True
    time_format: str | None = None
    """strptime format of text times, e.g. ``%Y%m%d %H:%M``; ISO 8601 needs none."""
    epoch_unit: str | None = None
    """Numeric times count this unit (s, ms, us, ns) since 1970-01-01 UTC."""
    day_offset_unit: str | None = None
    """Numeric times count this unit since local midnight of the YYYYMMDD date in each file's name."""
    time_label: str = "start"
    """Whether a row's time is its bar's start or end."""
    price_scale: float = 1.0
    """Divide prices by this (10000 for Lean's integer prices)."""
    factor_file: str | None = None
    """Lean factor file: adjust raw prices with it, to ``adjustment`` (``total_return`` unless it says ``split``)."""
    adjustment: str | None = None
    """What the stored prices are (`engine.store.ADJUSTMENTS`): without a factor file, what the file's already are
    (default raw); with one, what it adjusts them to (default total_return, its split and dividend factors)."""
    negative_prices: bool = False
    quote_side: str = "mid"
    """Of a file of bid and ask bars: the mid (their mean, field by field), the bid or the ask."""
    hours: str = "all"
    """``regular`` keeps the intraday bars of the calendar's session hours only (extended hours dropped and counted)."""
    replace: bool = False


def import_bars(home: Path, files: Sequence[Path | str], options: ImportOptions) -> tuple[Dataset, QualityReport]:
    """Read ``files`` (one ticker, one cadence, in time order), check them and store them unless they FAIL."""
    cal = calendar(options.calendar)
    parse_cadence(options.cadence)
    names.ticker(options.ticker)
    if options.time_label not in ("start", "end"):
        raise ConfigError("time_label", f"{options.time_label!r} is neither start nor end")
    if options.hours not in ("all", "regular"):
        raise ConfigError("hours", f"{options.hours!r} is neither all nor regular", "use all (every bar the file has) or regular")
    adjustment = options.adjustment or ("total_return" if options.factor_file else "raw")
    if adjustment not in ADJUSTMENTS or (options.factor_file and adjustment == "raw"):
        made = ("split", "total_return") if options.factor_file else ADJUSTMENTS
        raise ConfigError("adjustment", f"{adjustment!r} is not what {'a factor file makes' if options.factor_file else 'prices are'}",
                          f"use one of: {', '.join(made)}")
    if options.quote_side not in _SIDES:
        raise ConfigError("quote_side", f"{options.quote_side!r} is not a side of the quote", f"use one of: {', '.join(_SIDES)}")
    if not options.replace and bars_path(home, options.ticker, options.cadence).exists():
        raise ConfigError("ticker", f"{options.ticker} {options.cadence} is already imported", "pass --replace to overwrite it")
    parts = [_read(Path(path), options, cal) for path in sorted(map(Path, files))]
    if not parts:
        raise ConfigError("files", "no files given")
    columns = {name: np.concatenate([part[name] for part in parts]) for name in COLUMNS}
    bars = Bars(options.ticker, options.cadence, **columns)
    if options.factor_file:
        bars = _adjust(bars, Path(options.factor_file), cal, dividends=adjustment == "total_return")
    outside = 0
    if options.hours == "regular" and parse_cadence(options.cadence).minutes is not None:
        inside = session_days(bars.start, cal)[1]
        outside = int((~inside).sum())
        bars = bars.select(inside)
    report = check_bars(bars, cal, negative_prices=options.negative_prices)
    if report.status == "FAIL":
        raise SigmaError(f"{', '.join(map(str, files))} refused; nothing was stored:\n{report.render()}")
    complete = ~(np.isnan(np.stack([getattr(bars, c) for c in COLUMNS[2:]])).any(axis=0))
    dropped = int((~complete).sum())
    bars = bars.select(complete)
    broken = ohlc_violations(bars)
    if broken.any():  # documented repair: widen the range to cover open and close, and count it
        bars.high[:] = np.maximum(bars.high, np.maximum(bars.open, bars.close))
        bars.low[:] = np.minimum(bars.low, np.minimum(bars.open, bars.close))
    source = ", ".join(Path(path).name for path in files)
    info = store_bars(home, bars, cal, source=source, adjustment=adjustment,
                      repaired=int(broken.sum()), dropped=dropped + outside, hours=options.hours)
    return info, report


def _read(path: Path, options: ImportOptions, cal: Calendar) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise NotFoundError(f"no file at {path}")
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        read = pa_csv.ReadOptions(autogenerate_column_names=not options.header)
        try:
            table = pa_csv.read_csv(path, read_options=read)
        except pa.ArrowInvalid as error:
            raise ConfigError(str(path), f"is not a readable CSV: {error}") from None
    names = table.column_names
    lowered = [name.lower() for name in names]
    picked = {}
    for field in _FIELDS:
        wanted = options.columns.get(field)
        if wanted is None and field in ("open", "high", "low", "close") and field not in lowered:
            sides = _quote_sides(table, lowered, field, options.quote_side)
            if sides is not None:
                picked[field] = sides
                continue
        if wanted is None:
            candidates = _TIME_NAMES if field == "time" else _VOLUME_NAMES if field == "volume" else (field,)
            match = next((names[lowered.index(c)] for c in candidates if c in lowered), None)
            if match is None and field == "time" and not options.header:
                match = names[0]
            if match is None and not options.header:
                match = names[_FIELDS.index(field)]
            if match is None:
                raise ConfigError(
                    f"columns.{field}", f"{path.name} has no column for {field} (columns: {', '.join(names)})",
                    f"map it, e.g. --columns {field}=<column>",
                )
        elif wanted.isdigit():
            if int(wanted) >= len(names):
                raise ConfigError(f"columns.{field}", f"{path.name} has only {len(names)} columns")
            match = names[int(wanted)]
        elif wanted in names:
            match = wanted
        else:
            raise ConfigError(f"columns.{field}", f"{path.name} has no column {wanted!r}", f"its columns: {', '.join(names)}")
        picked[field] = table.column(match)
    start = _times(picked["time"], path, options, cal)
    minutes = parse_cadence(options.cadence).minutes
    if minutes is not None:
        length = minutes * NS_PER_MINUTE
        if options.time_label == "end":
            start = start - length
        end = start + length
    else:
        end = None
    if minutes is None and options.cadence.endswith("d"):
        # Daily rows are exchange dates: the bar runs from the session's open to its close.
        day, _ = session_days(start, cal)
        start = local_to_utc(day * NS_PER_DAY + cal.open_minute * NS_PER_MINUTE, cal.timezone)
        end = local_to_utc(day * NS_PER_DAY + close_minutes(day, cal) * NS_PER_MINUTE, cal.timezone) if not cal.overnight and \
            not cal.round_the_clock else start + cal.session_minutes * NS_PER_MINUTE
    if end is None:
        end = np.r_[start[1:], start[-1:] + 7 * NS_PER_DAY] if len(start) else start
    prices = {field: pc.cast(picked[field], pa.float64()).to_numpy(zero_copy_only=False) / options.price_scale
              for field in ("open", "high", "low", "close")}
    volume = pc.cast(picked["volume"], pa.float64()).to_numpy(zero_copy_only=False)
    return {"start": start, "end": end, **prices, "volume": volume}


def _strptime(column: pa.ChunkedArray, form: str) -> pa.ChunkedArray:
    """Text times in the strptime format ``form``; a trailing ``%f`` (Arrow's strptime has none) takes 1 to 9 digits."""
    if not form.endswith("%f"):
        return pc.strptime(column, format=form, unit="ns")
    if len(form) < 3 or form[-3] not in ".,":
        raise pa.ArrowInvalid(f"%f in {form!r} follows no separator: write the fraction as .%f (or ,%f)")
    separator = re.escape(form[-3])
    parts = pc.extract_regex(column, rf"^(?P<base>.*?)(?:{separator}(?P<fraction>\d{{1,9}}))?$")
    base = pc.strptime(pc.struct_field(parts, [0]), format=form[:-3], unit="ns")
    digits = pc.if_else(pc.equal(pc.struct_field(parts, [1]), ""), "0", pc.struct_field(parts, [1]))
    fraction = pc.cast(pc.utf8_rpad(digits, width=9, padding="0"), pa.int64())
    return pc.cast(pc.add(pc.cast(base, pa.int64()), fraction), pa.timestamp("ns"))


def _quote_sides(table: pa.Table, lowered: list[str], field: str, side: str) -> pa.Array | None:
    """``field`` of the file's bid and ask bars (``BidOpen``/``bid_open`` and ``AskOpen``/``ask_open``), as ``side`` takes
    it; None when the file has no such pair."""
    found = {}
    for quote in ("bid", "ask"):
        name = next((c for c in (f"{quote}{field}", f"{quote}_{field}") if c in lowered), None)
        if name is None:
            return None
        found[quote] = pc.cast(table.column(lowered.index(name)), pa.float64())
    if side != "mid":
        return found[side]
    return pc.divide(pc.add(found["bid"], found["ask"]), 2.0)


def _times(column: pa.ChunkedArray, path: Path, options: ImportOptions, cal: Calendar) -> np.ndarray:
    """UTC nanoseconds of a time column, refusing times whose zone is unknown."""
    kind = column.type
    daily = options.cadence.endswith("d")
    zone = options.timezone or (cal.timezone if daily else None)
    if options.epoch_unit or options.day_offset_unit:
        unit = options.epoch_unit or options.day_offset_unit
        if unit not in _UNITS:
            raise ConfigError("epoch_unit", f"{unit!r} is not a time unit", "use s, ms, us or ns")
        values = pc.cast(column, pa.int64()).to_numpy(zero_copy_only=False) * _UNITS[unit]
        if options.epoch_unit:
            return values
        found = re.search(r"(\d{8})", path.name)
        if found is None:
            raise ConfigError("day_offset_unit", f"{path.name} carries no YYYYMMDD date in its name")
        if zone is None:
            raise ConfigError("timezone", f"{path.name} counts time from local midnight", "pass --timezone, e.g. America/New_York")
        day = (np.datetime64(f"{found[1][:4]}-{found[1][4:6]}-{found[1][6:]}") - np.datetime64(EPOCH)).astype(int)
        return _localise(pa.array(day * NS_PER_DAY + values, pa.timestamp("ns")), zone, path)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        if options.time_format:
            try:
                column = _strptime(column, options.time_format)
            except pa.ArrowInvalid as error:
                raise ConfigError("time_format", f"{path.name}: {error}", "check --time-format against the file") from None
        else:
            try:
                column = pc.cast(column, pa.timestamp("ns", tz="UTC"))
            except pa.ArrowInvalid:
                try:
                    column = pc.cast(column, pa.timestamp("ns"))
                except pa.ArrowInvalid as error:
                    raise ConfigError("time_format", f"{path.name}: times are not ISO 8601 ({error})",
                                      "pass --time-format, e.g. '%Y%m%d %H:%M'") from None
        kind = column.type
    if pa.types.is_date(kind):
        column = pc.cast(pc.cast(column, pa.date32()), pa.timestamp("ns"))
        kind = column.type
    if not pa.types.is_timestamp(kind):
        raise ConfigError("columns.time", f"{path.name}: the time column holds {kind}", "map a date/time column, or pass --epoch-unit")
    column = pc.cast(column, pa.timestamp("ns", tz=kind.tz) if kind.tz else pa.timestamp("ns"))
    if kind.tz:
        return pc.cast(column, pa.timestamp("ns", tz="UTC")).cast(pa.int64()).to_numpy(zero_copy_only=False)
    if zone is None:
        raise ConfigError(
            "timezone", f"{path.name} has times without a time zone",
            "declare it with --timezone (e.g. America/New_York, or UTC)",
        )
    return _localise(column, zone, path)


def _localise(naive: pa.Array | pa.ChunkedArray, zone: str, path: Path) -> np.ndarray:
    try:
        return local_to_utc(pc.cast(naive, pa.int64()).to_numpy(zero_copy_only=False), zone)
    except pa.ArrowInvalid as error:
        raise ConfigError("timezone", f"{path.name}: {error}", "use an IANA zone name such as America/New_York") from None


def _adjust(bars: Bars, factor_file: Path, cal: Calendar, *, dividends: bool) -> Bars:
    """Lean factor files: a row's split factor (and its price factor, for ``dividends``) apply to bars on or before its
    date."""
    table = pa_csv.read_csv(factor_file, read_options=pa_csv.ReadOptions(autogenerate_column_names=True))
    dates = np.array([np.datetime64(f"{d // 10000:04d}-{d // 100 % 100:02d}-{d % 100:02d}") for d in
                      table.column(0).to_numpy()])
    days = (dates - np.datetime64(EPOCH)).astype(np.int64)
    price_factor = table.column(1).to_numpy().astype(float)
    split_factor = table.column(2).to_numpy().astype(float)
    session, _ = session_days(bars.start, cal)
    row = np.minimum(np.searchsorted(days, session, side="left"), len(days) - 1)
    factor = price_factor[row] * split_factor[row] if dividends else split_factor[row]
    return Bars(bars.ticker, bars.cadence, bars.start, bars.end, bars.open * factor, bars.high * factor,
                bars.low * factor, bars.close * factor, bars.volume / split_factor[row])


def check_dataset(home: Path, ticker: str, cadence: str) -> QualityReport:
    """The quality report of a stored dataset."""
    bars, info = load_bars(home, ticker, cadence)
    return check_bars(bars, calendar(info.calendar))


def resample_dataset(home: Path, ticker: str, source: str, target: str, *, replace: bool = False) -> Dataset:
    """Store ``ticker``'s ``source`` bars rolled up to the coarser ``target`` cadence; stored ``target`` bars are kept
    unless ``replace``."""
    if not rolls_up(parse_cadence(source, "from"), parse_cadence(target, "to")):
        raise ConfigError("to", f"{target} bars cannot be made of {source} bars",
                          "resample to a coarser cadence made of whole source bars (1m to 5m, 1h or 1d; 1d to 1w or 1mo)")  # fmt: skip
    if not replace and bars_path(home, ticker, target).exists():
        raise ConfigError("to", f"{ticker} {target} bars are already stored", "pass --replace to overwrite them")
    bars, info = load_bars(home, ticker, source)
    cal = calendar(info.calendar)
    coarse = resample(bars, target, cal)
    return store_bars(home, coarse, cal, source=f"{info.source} resampled from {source}", adjustment=info.adjustment,
                      hours=info.hours)
