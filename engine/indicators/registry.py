"""The closed set of indicators that packs and the command line may name."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from engine.errors import ConfigError, NotFoundError
from engine.indicators._base import Indicator
from engine.indicators.averages import (
    ExponentialMovingAverage,
    SimpleMovingAverage,
    WeightedMovingAverage,
)
from engine.indicators.microstructure import (
    Microprice,
    OrderBookImbalance,
    TradeSignImbalance,
    VolumeSynchronisedProbabilityOfInformedTrading,
)
from engine.indicators.momentum import (
    MovingAverageConvergenceDivergence,
    RateOfChange,
    RelativeStrengthIndex,
    Stochastic,
)
from engine.indicators.trend import AverageDirectionalIndex
from engine.indicators.volatility import (
    AverageTrueRange,
    BollingerBands,
    DonchianChannel,
    RealisedVolatility,
    ZScore,
)
from engine.indicators.volume import (
    OnBalanceVolume,
    SessionVolumeWeightedAveragePrice,
    VolumeSurge,
)
from engine.snapshot import state

__all__ = ["INDICATORS", "indicator_class", "check_params", "make", "compute"]

INDICATORS: dict[str, type[Indicator]] = {
    cls.name: state(cls)  # each is live state, in the flow's snapshots
    for cls in (
        SimpleMovingAverage,
        ExponentialMovingAverage,
        WeightedMovingAverage,
        RelativeStrengthIndex,
        MovingAverageConvergenceDivergence,
        RateOfChange,
        Stochastic,
        BollingerBands,
        AverageTrueRange,
        RealisedVolatility,
        ZScore,
        DonchianChannel,
        AverageDirectionalIndex,
        OnBalanceVolume,
        SessionVolumeWeightedAveragePrice,
        VolumeSurge,
        OrderBookImbalance,
        Microprice,
        TradeSignImbalance,
        VolumeSynchronisedProbabilityOfInformedTrading,
    )
}


def indicator_class(name: str) -> type[Indicator]:
    """The indicator registered as ``name``, or a `NotFoundError` listing the known ones."""
    try:
        return INDICATORS[name]
    except KeyError:
        known = ", ".join(sorted(INDICATORS))
        raise NotFoundError(f"unknown indicator {name!r}; known indicators: {known}") from None


def check_params(name: str, params: Mapping[str, object], where: str = "params") -> dict[str, int | float]:
    """Validate ``params`` for indicator ``name`` and fill in defaults; raise `ConfigError` naming the field."""
    cls = indicator_class(name)
    declared = {p.name: p for p in cls.parameters}
    for key in params:
        if key not in declared:
            allowed = ", ".join(declared) or "none"
            raise ConfigError(f"{where}.{key}", f"{name} has no parameter {key!r}", f"its parameters are: {allowed}")
    checked: dict[str, int | float] = {}
    for parameter in cls.parameters:
        value = params.get(parameter.name, parameter.default)
        field = f"{where}.{parameter.name}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(field, f"expected a number, got {value!r}")
        if parameter.kind is int:
            if isinstance(value, float) and not value.is_integer():
                raise ConfigError(field, f"expected a whole number, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if not parameter.minimum <= value <= parameter.maximum:
            raise ConfigError(
                field, f"{value!r} is out of range", f"use {parameter.minimum} to {parameter.maximum}"
            )
        checked[parameter.name] = value
    conflict = cls.conflict(checked)
    if conflict is not None:
        raise ConfigError(f"{where}.{conflict[0]}", conflict[1])
    return checked


def describe(group: str | None = None) -> list[dict]:
    """The registry as data, for a person choosing a model's indicators (``sigma indicators list``, ``GET /api/indicators``):
    each indicator's group, inputs, outputs, parameters with their bounds, timescales and warm-up; ``group``'s only."""
    return [
        {
            "name": cls.name,
            "group": cls.group,
            "summary": cls.summary(),
            "inputs": list(cls.inputs),
            "outputs": list(cls.outputs),
            "parameters": [
                {"name": p.name, "default": p.default, "minimum": p.minimum, "maximum": p.maximum, "description": p.description}
                for p in cls.parameters
            ],
            "timescales": sorted(cls.timescales),
            "warmup": cls.warmup_for(),
        }
        for cls in INDICATORS.values()
        if group in (None, cls.group)
    ]


def make(name: str, params: Mapping[str, object] | None = None) -> Indicator:
    """Build a fresh incremental indicator from its registry name and (validated) parameters."""
    return INDICATORS[name](**check_params(name, params or {}))


def compute(
    name: str, inputs: Mapping[str, np.ndarray], params: Mapping[str, object] | None = None
) -> dict[str, np.ndarray]:
    """Batch-compute indicator ``name`` over column arrays; one array per output name."""
    cls = indicator_class(name)
    missing = [column for column in cls.inputs if column not in inputs]
    if missing:
        raise ConfigError("input", f"{name} needs columns {', '.join(missing)}", "add them to the input file")
    result = cls.batch(*(inputs[column] for column in cls.inputs), **check_params(name, params or {}))
    arrays = result if isinstance(result, tuple) else (result,)
    return dict(zip(cls.outputs, arrays, strict=True))
