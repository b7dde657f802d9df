"""Quality gates on backtest results: PASS, MARGINAL or FAIL, each with a reason a person can read.

MARGINAL is a band just short of a gate: the result misses it by no more than 10% of
the threshold (at least ``MARGINAL_FLOOR`` for the gate, so that a zero threshold
still has a band). A marginal result may be kept for review; a failing one may not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

__all__ = ["Gates", "PaperGates", "GateResult", "PolicyCheck", "Status", "evaluate", "overall", "MARGINAL_FRACTION", "MARGINAL_FLOOR"]

Status = Literal["PASS", "MARGINAL", "FAIL"]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]

MARGINAL_FRACTION = 0.10
MARGINAL_FLOOR = {
    "min_trades": 1.0, "min_sharpe": 0.05, "max_drawdown": 0.005, "min_win_rate": 0.01,
    "min_deflated_sharpe": 0.01, "max_pbo": 0.01, "min_trading_days": 1.0, "max_return_gap": 0.005, "max_sharpe_gap": 0.05,
    "min_decision_agreement": 0.01, "max_slippage_bps": 1.0,
}  # fmt: skip


class Gates(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Thresholds a configuration must meet; drawdown and win rate are fractions (0.2 = 20%)."""

    min_trades: Annotated[int, msgspec.Meta(ge=0)]
    min_sharpe: float
    max_drawdown: Fraction
    min_win_rate: Fraction | None = None
    min_deflated_sharpe: Fraction | None = None
    """Probability that the Sharpe ratio beats the best of as many luck-only trials (0.95 is strict)."""
    max_pbo: Fraction | None = None
    """Highest probability of backtest overfitting the sweep may show."""


class PaperGates(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a paper record must show before its model goes live: trained -> paper -> live.

    ``min_trades`` and ``max_drawdown`` are the pack's gates for the model's risk
    profile (`of`); the tracking gates hold the paper run to the research backtest of
    the same artifact over the same bars.
    """

    min_trades: Annotated[int, msgspec.Meta(ge=0)]
    max_drawdown: Fraction
    min_trading_days: Annotated[int, msgspec.Meta(ge=0)] = 20
    """Sessions with at least one fill."""
    max_return_gap: Annotated[float, msgspec.Meta(ge=0)] = 0.05
    """|paper total return - backtest total return|, as fractions of equity."""
    max_sharpe_gap: Annotated[float, msgspec.Meta(ge=0)] = 0.75
    min_decision_agreement: Fraction = 0.95
    """The share of the backtest's decisions the replay alerted alike."""
    max_slippage_bps: Annotated[float, msgspec.Meta(ge=0)] = 20.0
    """Median of the paper fills against the backtest's fills of the same trades, in basis points, worse counted positive."""

    @classmethod
    def of(cls, gates: Gates) -> PaperGates:
        """The trust gate of a pack's risk-profile gates."""
        return cls(min_trades=gates.min_trades, max_drawdown=gates.max_drawdown)


class GateResult(msgspec.Struct, frozen=True):
    """The verdict of one gate on one result."""

    gate: str
    status: Status
    value: float
    threshold: float
    reason: str


class PolicyCheck(msgspec.Struct, frozen=True, kw_only=True):
    """A trained model's sweep row, its policy re-run on the model's own calibrated probabilities, and the verdict.

    Stored in the sealed manifest: ``sigma publish`` refuses a model that is not
    publishable, naming ``reason``, unless forced (and audited).
    """

    row: dict[str, float]
    """What the leaderboard row promised: development-window Sharpe, return, trades, drawdown, win rate; holdout Sharpe, trades."""
    row_gate: Status
    universe: list[str]
    """The tickers the row was ranked on; the re-run trades the model's own symbol."""
    gates: list[GateResult]
    """The row's gates on the re-run out of fold (the window the row was gated on)."""
    status: Status
    publishable: bool
    reason: str = ""
    """Why not, when it is not publishable."""


_LABELS = {
    "min_trades": ("trades", "{:.0f}"),
    "min_sharpe": ("Sharpe", "{:.2f}"),
    "max_drawdown": ("max drawdown", "{:.1%}"),
    "min_win_rate": ("win rate", "{:.1%}"),
    "min_deflated_sharpe": ("deflated Sharpe", "{:.2f}"),
    "max_pbo": ("probability of backtest overfitting", "{:.0%}"),
    "min_trading_days": ("trading days", "{:.0f}"),
    "max_return_gap": ("return gap to the backtest", "{:.2%}"),
    "max_sharpe_gap": ("Sharpe gap to the backtest", "{:.2f}"),
    "min_decision_agreement": ("decisions alike", "{:.1%}"),
    "max_slippage_bps": ("median slippage against the backtest", "{:.1f} bps"),
}
_METRIC = {
    "min_trades": "trades", "min_sharpe": "sharpe", "max_drawdown": "max_drawdown", "min_win_rate": "win_rate",
    "min_deflated_sharpe": "deflated_sharpe", "max_pbo": "pbo", "min_trading_days": "trading_days", "max_return_gap": "return_gap",
    "max_sharpe_gap": "sharpe_gap", "min_decision_agreement": "decision_agreement", "max_slippage_bps": "slippage_bps",
}  # fmt: skip
_CEILINGS = frozenset({"max_drawdown", "max_pbo", "max_return_gap", "max_sharpe_gap", "max_slippage_bps"})


def _judge(gate: str, value: float, threshold: float) -> GateResult:
    label, form = _LABELS[gate]
    if gate == "max_pbo" and value != value:  # one configuration, or none traded: no choice among them to be luck
        return GateResult(gate, "PASS", value, threshold, f"{label} undefined (one configuration, or none traded)")
    shown, limit = form.format(value), form.format(threshold)
    if shown == limit and value != threshold:  # "Sharpe 0.70 is below the gate 0.70": more digits tell them apart
        shown, limit = f"{value:.6g}", f"{threshold:.6g}"
    band = max(MARGINAL_FRACTION * abs(threshold), MARGINAL_FLOOR[gate])
    # Distance on the wrong side of the gate: positive means it was missed.
    shortfall = value - threshold if gate in _CEILINGS else threshold - value
    if shortfall <= 0.0:
        relation = "within" if gate in _CEILINGS else "meets"
        return GateResult(gate, "PASS", value, threshold, f"{label} {shown} {relation} the gate {limit}")
    status: Status = "MARGINAL" if shortfall <= band else "FAIL"
    relation = "above" if gate in _CEILINGS else "below"
    near = " (within the marginal band)" if status == "MARGINAL" else ""
    return GateResult(gate, status, value, threshold, f"{label} {shown} is {relation} the gate {limit}{near}")


def evaluate(gates: Gates | PaperGates, metrics: Mapping[str, float]) -> list[GateResult]:
    """Judge ``metrics`` against every gate that is set, each reading its metric (`_METRIC`: ``min_trades`` reads ``trades``)."""
    results = []
    for gate in gates.__struct_fields__:
        metric = _METRIC[gate]
        threshold = getattr(gates, gate)
        if threshold is None:
            continue
        if metric not in metrics:
            raise KeyError(f"metrics lack {metric!r}, needed by the gate {gate}")
        results.append(_judge(gate, float(metrics[metric]), float(threshold)))
    return results


def overall(results: list[GateResult]) -> Status:
    """The worst status among the results."""
    statuses = {result.status for result in results}
    return "FAIL" if "FAIL" in statuses else "MARGINAL" if "MARGINAL" in statuses else "PASS"
