"""Incremental technical indicators with compiled batch twins, and their registry."""

from engine.indicators._base import (
    BAR_TIMESCALES,
    TICK_TIMESCALES,
    TIMESCALES,
    TOLERANCE,
    Indicator,
    Parameter,
)
from engine.indicators.registry import (
    INDICATORS,
    check_params,
    compute,
    describe,
    indicator_class,
    make,
)

__all__ = [
    "Indicator",
    "Parameter",
    "INDICATORS",
    "TIMESCALES",
    "BAR_TIMESCALES",
    "TICK_TIMESCALES",
    "TOLERANCE",
    "indicator_class",
    "check_params",
    "make",
    "compute",
    "describe",
]


def __dir__() -> list[str]:
    return __all__
