"""The indicator contract: fixed-size state, O(1) `update`, NaN until warm, a batch twin.

Every indicator is a class with its state in ``__slots__``. ``update(*inputs)`` takes
one value per name in ``inputs`` (in that order), returns nothing and allocates
nothing; the outputs named in ``outputs`` are plain attributes, NaN until ``warmup``
updates have been taken. ``batch(*arrays, **params)`` computes the same numbers over
whole numpy arrays with a compiled loop that does the same arithmetic in the same
order, so the two agree to the last bit.

``peek(*inputs)`` gives what ``update(*inputs)`` would, without changing the
indicator: a model evaluated inside a bar that is still forming reads the forming
bar's features from a twin, and the bar's close commits it as usual.

Non-finite inputs (NaN, ±inf) are skipped: state and outputs stay as they were, and
batch repeats the previous output at that row. The test ``x - x != 0.0`` is true for
exactly those values and costs one subtraction; for several inputs, their sum is tested
once (any NaN or infinity makes the sum non-finite).
"""

from __future__ import annotations

import math
from typing import ClassVar

import msgspec
import numpy as np

from engine.snapshot import copy_state

__all__ = ["Indicator", "Parameter", "BAR_TIMESCALES", "TICK_TIMESCALES", "TIMESCALES", "TOLERANCE", "converged_after"]

TIMESCALES = ("tick", "minute", "hour", "day", "week", "month")
BAR_TIMESCALES = frozenset({"minute", "hour", "day", "week", "month"})
TICK_TIMESCALES = frozenset({"tick"})


def converged_after(decay: float, tolerance: float) -> int:
    """Updates after which ``decay ** n`` (a recursion's memory of its seed) is below ``tolerance``."""
    return math.ceil(math.log(tolerance) / math.log(decay))


class Parameter(msgspec.Struct, frozen=True):
    """One tunable parameter of an indicator: its default and inclusive bounds."""

    name: str
    default: int | float
    minimum: int | float
    maximum: int | float
    description: str

    @property
    def kind(self) -> type:
        return type(self.default)


TOLERANCE = Parameter("tolerance", 1e-9, 1e-12, 1e-2, "share of its seed a recursive indicator may still remember at its "
                      "first value: larger starts sooner, and depends more on where history starts")  # fmt: skip
"""The seed error a recursive indicator (EMA, Wilder's smoothing) allows before it counts as warm.

The default, 1e-9, leaves three orders of magnitude under a 1e-6 relative promise for
seeds that start far (even 100x) from the value unlimited history would give; a pack
that cannot spare the history declares a larger one (``warmup_tolerance``).
"""


class Indicator:
    """Base of every incremental indicator; see the module docstring for the contract."""

    __slots__ = ("warmup",)

    name: ClassVar[str]
    """Registry name used in packs and on the command line."""
    group: ClassVar[str]
    inputs: ClassVar[tuple[str, ...]]
    """Bar or tick fields consumed by ``update``, in argument order."""
    outputs: ClassVar[tuple[str, ...]]
    """Attributes that hold the results; the first is also ``value``."""
    parameters: ClassVar[tuple[Parameter, ...]] = ()
    price_outputs: ClassVar[frozenset[str]] = frozenset()
    """Outputs in the instrument's price units (levels, spreads, ranges), which depend on its price scale."""
    timescales: ClassVar[frozenset[str]] = BAR_TIMESCALES
    anchor: ClassVar[str | None] = None
    """``"session"`` when history must start at a session open to be exact."""

    warmup: int
    """Updates after which outputs are defined and, for a recursive indicator, remember at most ``tolerance`` of its seed."""

    @classmethod
    def warmup_for(cls, **params: int | float) -> int:
        """Warm-up length for these parameters (defaults fill the rest)."""
        return cls(**params).warmup

    @classmethod
    def conflict(cls, params: dict[str, int | float]) -> tuple[str, str] | None:
        """(parameter, problem) when valid parameters contradict each other, else None."""
        return None

    @classmethod
    def summary(cls) -> str:
        """First line of the docstring: what the indicator is for."""
        return (cls.__doc__ or "").strip().splitlines()[0]

    @property
    def ready(self) -> bool:
        """True once outputs are defined: after exactly ``warmup`` updates with finite inputs."""
        return not math.isnan(self.value)

    @property
    def params(self) -> dict[str, int | float]:
        return {p.name: getattr(self, p.name) for p in self.parameters}

    @property
    def value(self) -> float:
        return getattr(self, self.outputs[0])

    def peek(self, *inputs: float, into: Indicator | None = None) -> Indicator:
        """This indicator as ``update(*inputs)`` would leave it, itself unchanged: a twin holding the outcome.

        ``into`` is a twin of the same parameters to overwrite (one from an earlier
        peek), so a caller peeking at every evaluation point allocates nothing.
        """
        twin = into if into is not None else type(self)(**self.params)
        copy_state(self, twin)
        twin.update(*inputs)
        return twin

    def reset(self) -> None:
        """Forget everything, as if freshly built with the same parameters."""
        self.__init__(**self.params)  # type: ignore[misc]

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"


def as_input(array: object) -> np.ndarray:
    """A contiguous float64 view of one batch input."""
    return np.ascontiguousarray(array, dtype=np.float64)
