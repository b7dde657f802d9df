"""The preview matrix: a model's features over a short window, and how much of each is missing.

A feature missing on more than 30% of the window's bars FAILs (its warm-up is too
long for the data, or its inputs are absent); 10% to 30% WARNs.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import numpy as np

from engine.calendar import calendar, session_days
from engine.features import feature_matrix, model_features
from engine.models import ModelSpec
from engine.store import load_bars, load_ticks

__all__ = ["Column", "Preview", "preview", "FAIL_SHARE", "WARN_SHARE"]

FAIL_SHARE = 0.30
WARN_SHARE = 0.10


class Column(msgspec.Struct, frozen=True):
    """One feature column of the preview: its share of missing values and verdict."""

    feature: str
    nan_share: float
    status: str


class Preview(msgspec.Struct, frozen=True):
    """A model's feature matrix over a window of its data, column by column."""

    model: str
    ticker: str
    bars: int
    columns: list[Column]

    @property
    def status(self) -> str:
        statuses = {column.status for column in self.columns}
        return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"

    def render(self) -> str:
        lines = [f"{self.model} on {self.ticker}: {len(self.columns)} features over the last {self.bars:,} bars"]
        lines += [f"  {c.status:<4} {c.feature:<24} {c.nan_share:6.1%} missing" for c in self.columns]
        lines.append(f"Status: {self.status}")
        return "\n".join(lines)


def preview(home: Path, spec: ModelSpec, window: int = 2000) -> Preview:
    """Build ``spec``'s features over the last ``window`` bars of its data and judge each column."""
    bars, info = load_bars(home, spec.instrument.symbol, spec.cadence)
    bars = bars.select(slice(max(0, len(bars) - window), len(bars)))
    session, _ = session_days(bars.start, calendar(info.calendar))
    features = model_features(spec.features, spec.indicators)
    matrix = feature_matrix(features, spec.indicators, bars, session, load_ticks(home, bars.ticker))
    shares = np.isnan(matrix).mean(axis=0) if len(bars) else np.ones(len(features))
    columns = [
        Column(feature.name, float(share), "FAIL" if share > FAIL_SHARE else "WARN" if share >= WARN_SHARE else "PASS")
        for feature, share in zip(features, shares)
    ]
    return Preview(spec.name, bars.ticker, len(bars), columns)
