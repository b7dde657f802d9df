"""Bar cadences such as ``1m``, ``5m``, ``1h``, ``1d``, ``1w`` and ``1mo``: one grammar for all of Sigma."""

from __future__ import annotations

import re

import msgspec

from engine.errors import ConfigError

__all__ = ["Cadence", "parse_cadence", "cadence_timescale", "rolls_up"]

_GRAMMAR = re.compile(r"^([1-9]\d*)(m|h|d|w|mo)\Z")
_TIMESCALE = {"m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month"}
_MINUTES = {"m": 1, "h": 60}
_ORDER = {"m": 0, "h": 0, "d": 1, "w": 2, "mo": 3}  # minutes and hours are one family: 60m rolls up to 2h


class Cadence(msgspec.Struct, frozen=True):
    """How often a bar closes: ``count`` units of minutes, hours, days, weeks or months."""

    count: int
    unit: str

    @property
    def timescale(self) -> str:
        return _TIMESCALE[self.unit]

    @property
    def minutes(self) -> int | None:
        """Bar length in minutes for intraday cadences; None for days and longer (sessions vary)."""
        return self.count * _MINUTES[self.unit] if self.unit in _MINUTES else None

    @property
    def bars_per_day(self) -> float:
        """Bars in a trading day, on a regular US equity session (models carry no calendar of their own)."""
        if self.minutes is not None:
            return 390 / self.minutes
        return {"d": 1 / self.count, "w": 1 / (5 * self.count), "mo": 1 / (21 * self.count)}[self.unit]

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"


def parse_cadence(text: str, field: str = "cadence") -> Cadence:
    """The `Cadence` written as ``text``; `ConfigError` naming ``field`` if it is malformed."""
    match = _GRAMMAR.match(text)
    if match is None:
        raise ConfigError(field, f"{text!r} is not a cadence", "write e.g. 1m, 5m, 1h, 1d, 1w or 1mo")
    return Cadence(int(match.group(1)), match.group(2))


def cadence_timescale(cadence: str) -> str:
    """The data timescale of a cadence such as ``1m``, ``4h``, ``1d``; `ConfigError` if malformed."""
    return parse_cadence(cadence).timescale


def rolls_up(source: Cadence, target: Cadence) -> bool:
    """Whether bars of ``target`` are whole groups of ``source`` bars: coarser, and each bucket made of whole source bars
    (5m into 1h; 1d into 1w or 1mo; not 1d into 1m, nor 3m into 5m)."""
    if (_ORDER[source.unit], source.minutes or source.count) >= (_ORDER[target.unit], target.minutes or target.count):
        return False
    if source.minutes is not None and target.minutes is not None:
        return target.minutes % source.minutes == 0
    if source.minutes is not None:  # intraday into sessions, weeks or months: sessions are whole minutes
        return True
    return source.unit == "d" and source.count == 1 or source.unit == target.unit and target.count % source.count == 0
