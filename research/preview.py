"""The preview matrix: a model's features over a short window, and how much of each is missing.

The indicators warm up on the bars stored before the window, so the window shows the
features a model would see. Where the store does not reach back far enough, the rows
an indicator spends warming up are counted apart from missing data: they say "store
more history, or loosen the pack's ``warmup_tolerance``", not "the data has holes".
A feature missing on more than 30% of the window's bars FAILs (its inputs are absent
or broken); 10% to 30% WARNs.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from engine.calendar import calendar, session_days
from engine.features import Feature, feature_matrix, model_features, needs_ticks, warmup_bars
from engine.indicators import make
from engine.models import ModelSpec
from engine.store import load_bars, load_ticks

__all__ = ["Column", "Preview", "preview", "FAIL_SHARE", "WARN_SHARE"]

FAIL_SHARE = 0.30
WARN_SHARE = 0.10


class Column(msgspec.Struct, frozen=True):
    """One feature column of the preview: its shares of missing and warming-up bars, and its verdict (on missing)."""

    feature: str
    nan_share: float
    """Bars of the window where the feature is undefined for want of data (not warm-up)."""
    warmup_share: float
    """Bars of the window spent warming up, because the store holds too little history before it."""
    status: str


class Preview(msgspec.Struct, frozen=True):
    """A model's feature matrix over a window of its data, column by column."""

    model: str
    ticker: str
    bars: int
    history: int
    """Stored bars before the window that warmed the indicators."""
    warmup: int
    """Bars the slowest feature needs before its first value."""
    columns: list[Column]

    @property
    def status(self) -> str:
        statuses = {column.status for column in self.columns}
        return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"

    def render(self) -> str:
        lines = [f"{self.model} on {self.ticker}: {len(self.columns)} features over the last {self.bars:,} bars, "
                 f"warmed on {self.history:,} stored bars before them (the slowest feature needs {self.warmup:,})"]  # fmt: skip
        for c in self.columns:
            warming = f"  {c.warmup_share:6.1%} warming up" if c.warmup_share else ""
            lines.append(f"  {c.status:<4} {c.feature:<24} {c.nan_share:6.1%} missing{warming}")
        if any(c.warmup_share for c in self.columns):
            lines.append("Warming up: the store holds too little history before the window; "
                         "import more, or loosen the pack's warmup_tolerance")  # fmt: skip
        lines.append(f"Status: {self.status}")
        return "\n".join(lines)


def preview(home: Path, spec: ModelSpec, window: int = 2000) -> Preview:
    """Build ``spec``'s features over the last ``window`` bars of its data, warmed on the bars before, and judge each column."""
    bars, info = load_bars(home, spec.instrument.symbol, spec.cadence)
    features = model_features(spec.features, spec.indicators)
    warmup = warmup_bars(features, spec.indicators)
    first = max(0, len(bars) - window)
    begin = max(0, first - warmup)
    span = bars.select(slice(begin, len(bars)))
    session, _ = session_days(span.start, calendar(info.calendar))
    matrix = feature_matrix(features, spec.indicators, span, session, load_ticks(home, bars.ticker))
    history, shown = first - begin, len(bars) - first
    columns = []
    for feature, values in zip(features, matrix.T, strict=True):
        warming = min(shown, max(0, _warming_rows(feature, spec, values) - history))
        missing = np.isnan(values[history + warming :]).sum() / shown if shown else 1.0
        status = "FAIL" if missing > FAIL_SHARE else "WARN" if missing >= WARN_SHARE else "PASS"
        columns.append(Column(feature.name, float(missing), warming / shown if shown else 0.0, status))
    return Preview(spec.name, bars.ticker, shown, history, warmup, columns)


def _warming_rows(feature: Feature, spec: ModelSpec, values: np.ndarray) -> int:
    """Leading rows of ``values`` that are undefined because the indicator is still warming up.

    A bar indicator warms up in at most ``warmup - 1`` bars; leading NaNs beyond them are
    missing data. A tick indicator counts ticks, not bars: its whole leading run is warm-up.
    """
    defined = np.flatnonzero(~np.isnan(values))
    leading = int(defined[0]) if defined.size else len(values)
    if needs_ticks(feature.indicator):
        return leading
    return min(leading, make(feature.indicator, spec.indicators[feature.indicator]).warmup - 1)
