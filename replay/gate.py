"""The trust gate: a trained model goes live only on a paper record that passes (trained -> paper -> live).

A finished paper run is judged by `engine.gates.PaperGates`: the pack's minimum
trades and maximum drawdown for the model's risk profile, the sessions it traded,
and how closely it tracked the research backtest of the same artifact over the same
bars (return and Sharpe gap, decisions alike, median slippage against the
backtest's fills), each PASS, MARGINAL or FAIL with its reason. The verdict is
stored with the run. ``sigma publish`` asks `refusal` first; ``--force`` publishes
anyway and the audit log keeps who, why and what was overridden.
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from engine.errors import ConfigError
from engine.gates import GateResult, PaperGates, Status, evaluate, overall
from engine.workspace import Workspace
from packs import catalog
from replay import sim

__all__ = ["Verdict", "judge", "refusal", "stage", "publish"]


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """A paper run's verdict: the gates, what they read, and the worst status."""

    status: Status
    gates: list[GateResult]
    metrics: dict[str, float]
    thresholds: PaperGates


def judge(home: Path, run_id: str) -> Verdict:
    """Judge a finished paper run and store the verdict with it."""
    from replay import parity  # the research backtest: loaded only to judge

    run = sim.load(home, run_id)
    book = sim.account(home, run_id)
    report = parity.report(home, run_id)
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        thresholds = None
        for model in run.request.models:
            spec = space.model(space.trained(model).model)
            pack = catalog(home).get(f"{spec.pack}@{spec.pack_version}")
            gates = PaperGates.of(pack.gates[spec.risk_profile])
            thresholds = gates if thresholds is None else _stricter(thresholds, gates)
    days = {datetime.fromtimestamp(fill.at / 1e9, UTC).date() for fill in book.fills}
    metrics = {
        "trades": float(len(book.trades)),
        "max_drawdown": report.paper["max_drawdown"],
        "trading_days": float(len(days)),
        "return_gap": abs(report.paper["total_return"] - report.backtest["total_return"]),
        "sharpe_gap": abs(report.paper["sharpe"] - report.backtest["sharpe"]),
        "decision_agreement": report.agreement,
        "slippage_bps": statistics.median(report.slippage_bps) if report.slippage_bps else 0.0,
        "paper_return": report.paper["total_return"],
        "backtest_return": report.backtest["total_return"],
        "paper_sharpe": report.paper["sharpe"],
        "backtest_sharpe": report.backtest["sharpe"],
    }
    assert thresholds is not None
    results = evaluate(thresholds, metrics)
    verdict = Verdict(status=overall(results), gates=results, metrics=metrics, thresholds=thresholds)
    sim.record_verdict(home, run_id, msgspec.to_builtins(verdict))
    return verdict


def _stricter(a: PaperGates, b: PaperGates) -> PaperGates:
    return PaperGates(min_trades=max(a.min_trades, b.min_trades), max_drawdown=min(a.max_drawdown, b.max_drawdown))


def _records(home: Path, trained_id: str) -> list[sim.SimRun]:
    return [run for run in sim.runs(home) if trained_id in run.request.models and run.status == "done" and run.verdict]


def stage(home: Path, trained_id: str, published: bool) -> str:
    """Where a model stands: ``live``, ``paper PASS|MARGINAL|FAIL (run)``, or ``trained`` (no paper record yet)."""
    if published:
        return "live"
    records = _records(home, trained_id)
    if not records:
        return "trained"
    latest = records[-1]
    return f"paper {latest.verdict['status']} ({latest.run_id})"


def refusal(home: Path, trained_id: str) -> str:
    """Why ``trained_id`` may not go live yet; empty when its latest judged paper run passes (PASS or MARGINAL)."""
    records = _records(home, trained_id)
    if not records:
        return f"it has no paper record: run `sigma sim run {trained_id}` first"
    latest = records[-1]
    if latest.verdict["status"] != "FAIL":
        return ""
    failed = [gate["reason"] for gate in latest.verdict["gates"] if gate["status"] == "FAIL"]
    return f"its paper run {latest.run_id} failed the trust gate: {'; '.join(failed)}"


def publish(space: Workspace, trained_id: str, *, actor: str, force: bool = False, reason: str | None = None) -> tuple[int, list[str]]:
    """Switch ``trained_id`` on for alerting through both verdicts, training's and the paper record's; (registry version,
    what was overridden). `ConfigError` names the verdict that refuses it; ``force`` overrides both, and the audit log
    keeps who, why and what."""
    refused = space.trained(trained_id).refusal
    if refused and not force:
        raise ConfigError("publish", f"{trained_id} is not publishable: its sweep row's policy, re-run on its own calibrated "
                                     f"probabilities: {refused}",
                          f"train another row, or `sigma publish {trained_id} --force` to publish it anyway (audited)")  # fmt: skip
    paper = refusal(space.home, trained_id)
    if paper and not force:
        raise ConfigError("publish", f"{trained_id} may not go live: {paper}",
                          f"paper-trade it until it passes, or `sigma publish {trained_id} --force --reason WHY` (audited)")  # fmt: skip
    version = space.publish(trained_id, actor=actor, forced=bool(refused or paper), paper=paper, reason=reason)
    overridden = ([f"over its training verdict ({refused})"] if refused else []) + ([f"without a passing paper record ({paper})"] if paper else [])
    return version, overridden
