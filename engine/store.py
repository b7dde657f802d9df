"""Stored market data: the workspace's bars and ticks as Parquet, written by research, read by both sides.

One dataset per ticker and cadence, stored as ``<home>/data/bars/<TICKER>/<cadence>.parquet``
with its description (`Dataset`) in the file's metadata; ticks, when a ticker has them,
as ``<home>/data/ticks/<TICKER>.parquet``. Research imports and builds these files
(`research.data`); the live flow reads them to warm a newly published model, so the
store lives here and loading it never brings in the training stack.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from engine.bars import COLUMNS, Bars
from engine import names
from engine.cadence import parse_cadence
from engine.calendar import Calendar
from engine.errors import ConfigError, NotFoundError
from engine.features import TICK_FIELDS
from engine.lineage import content_sha

__all__ = ["Dataset", "ADJUSTMENTS", "continues", "histories", "bars_path", "store_bars", "store_ticks", "datasets", "dataset", "load_bars", "load_ticks", "write_parquet"]

_METADATA_KEY = b"sigma.dataset"


class Dataset(msgspec.Struct, frozen=True, kw_only=True):
    """What a stored bar dataset is: ticker, cadence, calendar, where it came from, and its hash."""

    ticker: str
    cadence: str
    calendar: str
    source: str
    adjustment: str
    rows: int
    first: str
    last: str
    data_sha: str
    repaired: int = 0
    """Bars whose high or low was widened to cover open and close."""
    dropped: int = 0
    """Rows dropped for a missing value."""
    hours: str = "all"
    """``all`` the hours the file traded; ``regular``: intraday bars of the calendar's session hours only (extended hours
    dropped at import), which the live flow then builds its bars of too."""


ADJUSTMENTS = ("raw", "split", "total_return")
"""What a dataset's or a feed's prices are: as traded, adjusted for splits, or for splits and dividends."""


def continues(history: str, feed: str) -> bool:
    """True when a feed of ``feed`` prices continues a history of ``history`` prices as one series (case 15).

    A history of the feed's own kind does. So does a split-adjusted history of a raw
    feed: adjusted as of its last bar, it ends at the raw price, and a split after
    that is a jump of the price level where the features start afresh. A
    dividend-adjusted history never continues a raw or split-adjusted feed: each
    ex-dividend drop the feed delivers is one the model never saw (Close beside Adj
    Close).
    """
    return history == feed or (history, feed) == ("split", "raw")


def histories(home: Path, model: str, cadence: str, universe: Sequence[str], trained_on: str | None, feed: str) -> dict[str, Dataset]:
    """The stored datasets ``model`` warms up on, by ticker; refused unless a feed of ``feed`` prices continues them and
    the history it was ``trained_on`` (None: not recorded)."""
    stored = {}
    for ticker in universe:
        try:
            stored[ticker] = dataset(home, ticker, cadence)
        except NotFoundError:
            pass
    kinds = " or ".join(a for a in ADJUSTMENTS if continues(a, feed))
    found = [("was trained on", trained_on, f"train it again on {kinds} prices")] if trained_on else []
    found += [(f"warms up on {ticker}'s stored", info.adjustment, f"re-import {ticker} {cadence} as {kinds}") for ticker, info in stored.items()]
    for history, prices, again in found:
        if not continues(prices, feed):
            raise ConfigError("adjustment", f"{model} {history} {prices} prices, which a feed of {feed} prices does not continue "
                              "(each dividend or split would be a move the model never saw)",
                              f"serve it on a feed of {prices} prices (--adjustment {prices}), or {again}")
    return stored


def bars_path(home: Path, ticker: str, cadence: str) -> Path:
    """Where the workspace ``home`` keeps the bars of ``ticker`` at ``cadence``."""
    return home / "data" / "bars" / names.ticker(ticker) / f"{parse_cadence(cadence)}.parquet"


def _ticks_path(home: Path, ticker: str) -> Path:
    return home / "data" / "ticks" / f"{names.ticker(ticker)}.parquet"


def store_bars(home: Path, bars: Bars, cal: Calendar, *, source: str, adjustment: str = "raw",
               repaired: int = 0, dropped: int = 0, hours: str = "all") -> Dataset:
    """Write ``bars`` as the workspace's dataset for its ticker and cadence (atomically) and describe it."""
    columns = bars.columns()
    info = Dataset(
        ticker=bars.ticker,
        cadence=bars.cadence,
        calendar=cal.name,
        source=source,
        adjustment=adjustment,
        rows=len(bars),
        first=_iso(bars.start[0]) if len(bars) else "",
        last=_iso(bars.start[-1]) if len(bars) else "",
        data_sha=content_sha({name: values.tobytes().hex() for name, values in columns.items()}),
        repaired=repaired,
        dropped=dropped,
        hours=hours,
    )
    table = pa.table(columns).replace_schema_metadata({_METADATA_KEY: msgspec.json.encode(info)})
    write_parquet(table, bars_path(home, bars.ticker, bars.cadence))
    return info


def store_ticks(home: Path, ticker: str, ticks: Mapping[str, np.ndarray]) -> int:
    """Write a ticker's tick table (the `TICK_FIELDS` columns); returns the row count."""
    table = pa.table({field: ticks[field] for field in TICK_FIELDS})
    write_parquet(table, _ticks_path(home, ticker))
    return table.num_rows


def write_parquet(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically: a reader sees the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    pq.write_table(table, partial)
    partial.replace(path)


def _iso(ns: int) -> str:
    return str(np.datetime64(int(ns), "ns").astype("datetime64[s]")) + "Z"


def datasets(home: Path) -> list[Dataset]:
    """Every stored bar dataset, by ticker then cadence."""
    root = home / "data" / "bars"
    return [_describe(path) for path in sorted(root.glob("*/*.parquet"))] if root.is_dir() else []


def _describe(path: Path) -> Dataset:
    metadata = pq.read_schema(path).metadata or {}
    return msgspec.json.decode(metadata[_METADATA_KEY], type=Dataset)


def dataset(home: Path, ticker: str, cadence: str) -> Dataset:
    """The description of one dataset; `NotFoundError` says how to get it."""
    path = bars_path(home, ticker, cadence)
    if not path.exists():
        have = [d.cadence for d in datasets(home) if d.ticker == ticker]
        fix = (
            f"{ticker} has {', '.join(have)}: `sigma data resample {ticker} --from {have[0]} --to {cadence}`"
            if have
            else f"import it with `sigma data import FILE --ticker {ticker} --cadence {cadence}` or `sigma data synth`"
        )
        raise NotFoundError(f"no {cadence} bars for {ticker} in the workspace; {fix}")
    return _describe(path)


def load_bars(home: Path, ticker: str, cadence: str) -> tuple[Bars, Dataset]:
    """The stored bars of ``ticker`` at ``cadence`` and their description."""
    info = dataset(home, ticker, cadence)
    table = pq.read_table(bars_path(home, ticker, cadence))
    return Bars(ticker, cadence, *(table.column(name).to_numpy() for name in COLUMNS)), info


def load_ticks(home: Path, ticker: str) -> dict[str, np.ndarray] | None:
    """The ticker's tick table, or None when it has no ticks."""
    path = _ticks_path(home, ticker)
    if not path.exists():
        return None
    table = pq.read_table(path)
    return {field: table.column(field).to_numpy() for field in TICK_FIELDS}
