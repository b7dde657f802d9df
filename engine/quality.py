"""Data-quality invariants for a bar dataset, each reported with counts and examples.

FAIL marks data a backtest must not run on (time going backwards, duplicate bars,
non-positive prices, negative volume, many missing values); WARN marks data that is
usable once a person knows about it (OHLC repairs, gaps against the calendar, outlier
prints such as unadjusted splits, bars outside session hours, zero volume).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal
from zoneinfo import ZoneInfo

import msgspec
import numpy as np

from engine.bars import Bars
from engine.cadence import parse_cadence
from engine.calendar import Calendar, close_minutes, session_days, trading_days
from engine.schemas import LARGEST

__all__ = ["Finding", "QualityReport", "check_bars", "ohlc_violations", "OUTLIER_MADS", "NAN_FAIL_SHARE"]

Status = Literal["PASS", "WARN", "FAIL"]

OUTLIER_MADS = 12.0
"""A return or bar range this many robust deviations from the median is an outlier print."""
NAN_FAIL_SHARE = 0.01
"""Above this share of rows with a missing value, a dataset fails."""
_EXAMPLES = 3


class Finding(msgspec.Struct, frozen=True):
    """One invariant's verdict on a dataset: how many rows break it, and the first few."""

    check: str
    status: Status
    count: int
    detail: str
    examples: list[str] = []


class QualityReport(msgspec.Struct, frozen=True):
    """Every invariant's finding for one dataset."""

    dataset: str
    rows: int
    findings: list[Finding]

    @property
    def status(self) -> Status:
        statuses = {finding.status for finding in self.findings}
        return "FAIL" if "FAIL" in statuses else "WARN" if "WARN" in statuses else "PASS"

    def render(self) -> str:
        lines = [f"{self.dataset}: {self.rows:,} bars, {self.status}"]
        for finding in self.findings:
            lines.append(f"  {finding.status:<4} {finding.check}: {finding.detail}")
            lines.extend(f"         e.g. {example}" for example in finding.examples)
        return "\n".join(lines)


def ohlc_violations(bars: Bars) -> np.ndarray:
    """Rows whose high is below open or close, or whose low is above them (NaN rows excluded)."""
    with np.errstate(invalid="ignore"):
        return (bars.high < np.maximum(bars.open, bars.close)) | (bars.low > np.minimum(bars.open, bars.close))


def check_bars(bars: Bars, cal: Calendar, *, negative_prices: bool = False) -> QualityReport:
    """Check every invariant on ``bars`` traded on ``cal``; ``negative_prices`` for spreads and some futures."""

    def when(rows: np.ndarray) -> list[str]:
        zone = ZoneInfo(cal.timezone)
        picked = np.flatnonzero(rows)[:_EXAMPLES]
        return [
            f"{datetime.fromtimestamp(bars.start[i] / 1e9, UTC).astimezone(zone):%Y-%m-%d %H:%M %Z}"
            f" O={bars.open[i]:g} H={bars.high[i]:g} L={bars.low[i]:g} C={bars.close[i]:g} V={bars.volume[i]:g}"
            for i in picked
        ]

    def finding(check: str, rows: np.ndarray, bad: Status, what: str, fix: str = "") -> Finding:
        count = int(rows.sum())
        if count == 0:
            return Finding(check, "PASS", 0, f"no {what}")
        return Finding(check, bad, count, f"{count:,} {what}" + (f"; {fix}" if fix else ""), when(rows))

    steps = np.diff(bars.start)
    backwards = np.r_[False, steps < 0]
    repeated = np.r_[False, steps == 0]
    prices = np.stack([bars.open, bars.high, bars.low, bars.close])
    missing = np.isnan(prices).any(axis=0) | np.isnan(bars.volume)
    nan_share = missing.mean() if len(bars) else 0.0
    with np.errstate(invalid="ignore"):
        non_positive = (prices <= 0).any(axis=0) if not negative_prices else np.zeros(len(bars), bool)
        negative_volume = bars.volume < 0
        zero_volume = bars.volume == 0
        huge = (np.abs(prices) >= LARGEST).any(axis=0) | (np.abs(bars.volume) >= LARGEST)  # infinity among them
    findings = [
        finding("monotonic timestamps", backwards, "FAIL", "bars earlier than the bar before", "sort the file by time"),
        finding("duplicates", repeated, "FAIL", "bars repeat the previous start time", "keep one row per bar"),
        finding("prices", non_positive, "FAIL", "bars with a zero or negative price", "drop them, or declare negative prices"),
        finding("volume", negative_volume, "FAIL", "bars with negative volume"),
        finding("magnitude", huge, "FAIL", "bars with a price or volume of 1e15 or more (or infinite)",
                "check the file's units and --price-scale: no market trades there"),
        finding("zero volume", zero_volume, "WARN", "bars with zero volume (no trades, or an index)"),
        Finding(
            "missing values",
            "PASS" if nan_share == 0 else "WARN" if nan_share <= NAN_FAIL_SHARE else "FAIL",
            int(missing.sum()),
            f"{nan_share:.2%} of bars have a missing price or volume",
            when(missing),
        ),
        finding("OHLC consistency", ohlc_violations(bars), "WARN", "bars with low above open/close or high below them"),
        _outliers(bars, when),
        *_gaps(bars, cal, when),
    ]
    return QualityReport(f"{bars.ticker} {bars.cadence}", len(bars), findings)


def _robust_outliers(values: np.ndarray) -> np.ndarray:
    finite = values[np.isfinite(values)]
    if len(finite) < 10:
        return np.zeros(len(values), bool)
    median = np.median(finite)
    spread = 1.4826 * np.median(np.abs(finite - median))
    spread = max(spread, 1e-4 * max(abs(median), 1e-12), 1e-12)
    with np.errstate(invalid="ignore"):
        return np.abs(values - median) / spread > OUTLIER_MADS


def _outliers(bars: Bars, when) -> Finding:
    with np.errstate(invalid="ignore", divide="ignore"):
        moves = np.r_[np.nan, np.log(bars.close[1:] / bars.close[:-1])]
        ranges = np.log(bars.high / bars.low)
    rows = _robust_outliers(moves) | _robust_outliers(ranges)
    count = int(rows.sum())
    if count == 0:
        return Finding("outlier prints", "PASS", 0, f"no move or range beyond {OUTLIER_MADS:g} robust deviations")
    detail = (
        f"{count:,} bars move or range beyond {OUTLIER_MADS:g} robust deviations"
        " (bad prints, or unadjusted splits: import split-adjusted prices)"
    )
    return Finding("outlier prints", "WARN", count, detail, when(rows))


def _gaps(bars: Bars, cal: Calendar, when) -> list[Finding]:
    if len(bars) == 0:
        return []
    session, inside = session_days(bars.start, cal)
    outside = ~inside
    findings = []
    cadence = parse_cadence(bars.cadence)
    minutes = cadence.minutes
    if minutes is not None:
        findings.append(
            Finding(
                "session hours",
                "WARN" if outside.any() else "PASS",
                int(outside.sum()),
                f"{int(outside.sum()):,} bars outside {cal.name} session hours (extended hours)"
                if outside.any()
                else "every bar is inside session hours",
                when(outside),
            )
        )
    expected = trading_days(cal, int(session.min()), int(session.max()))
    present = np.unique(session[inside]) if minutes is not None else np.unique(session)
    absent = np.setdiff1d(expected, present)
    if cadence.unit in ("w", "mo"):
        absent = absent[:0]  # a coarse bar covers many sessions; only daily and intraday gaps are meaningful
    missing_bars = 0
    if minutes is not None and len(present) > 2:
        # The first and last sessions may be cut by the file's edges; they are not gaps.
        length = (close_minutes(present, cal) - cal.open_minute) % 1440  # an early close is a shorter session, not a gap
        per_session = -(-np.where(length == 0, 1440, length) // minutes)
        counts = np.bincount(np.searchsorted(present, session[inside]), minlength=len(present))
        missing_bars = int(np.clip(per_session[1:-1] - counts[1:-1], 0, None).sum())
    if len(absent) == 0 and missing_bars == 0:
        findings.append(Finding("gaps", "PASS", 0, f"no missing {cal.name} sessions or bars"))
        return findings
    position = np.searchsorted(expected, absent)  # runs of consecutive trading sessions
    runs = np.split(absent, np.flatnonzero(np.diff(position) > 1) + 1) if len(absent) else []
    longest = sorted(runs, key=len, reverse=True)[:_EXAMPLES]
    examples = [f"{len(run)} sessions missing {_day(run[0])} to {_day(run[-1])}" for run in longest]
    detail = f"{len(absent):,} trading sessions missing"
    if minutes is not None:
        detail += f", {missing_bars:,} bars missing inside the sessions present (minutes without trades?)"
    findings.append(Finding("gaps", "WARN", len(absent) + missing_bars, detail, examples))
    return findings


def _day(number: int) -> str:
    return str(np.datetime64(int(number), "D"))
