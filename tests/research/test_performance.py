"""The linter's performance hook: each official pack's default strategy earns its place over a year."""

from __future__ import annotations

import pytest

from engine.packs import BacktestSummary, lint, load_pack
from packs import OFFICIAL
from research.performance import pack_performance


@pytest.mark.parametrize("name", ["swingsigma", "trendsigma", "zerosigma"])
def test_official_packs_pass_the_one_year_backtest(name):
    pack = load_pack(OFFICIAL / name)
    summary = pack_performance(pack)
    assert summary.trades >= 10 and summary.sharpe > -0.5
    assert pack_performance(pack) == summary  # seeded: the same verdict every run
    report = lint(pack, performance=pack_performance)
    assert report.checks[-1].name == "Backtest performance" and report.status != "REJECTED"


def test_a_pack_that_never_trades_is_rejected():
    pack = load_pack(OFFICIAL / "swingsigma")
    report = lint(pack, performance=lambda pack: BacktestSummary(trades=3, sharpe=1.0))
    assert report.status == "REJECTED" and "needs >= 10 trades" in report.checks[-1].detail
