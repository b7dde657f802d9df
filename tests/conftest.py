"""Shared fixtures: where the real market data lives, and how its absence is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SIGMA_SHARED_DATA", REPOSITORY.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data; skips the test when absent, unless CI requires it."""
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"real market data {path} is absent (set SIGMA_SHARED_DATA to its folder)"
        if os.environ.get("SIGMA_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " and SIGMA_REQUIRE_SHARED_DATA=1 forbids skipping")
        pytest.skip(reason)
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty SIGMA_HOME for one test."""
    home = tmp_path / "sigma-home"
    monkeypatch.setenv("SIGMA_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def real_daily(tmp_path_factory):
    """(home, trained id): a swingsigma model on real daily SPY and AAPL bars (2008-2017), published with a policy that trades.

    Its workspace is shared by the session's tests: copy it (or copy a model in it) before changing it.
    """
    from engine.models import create_model
    from engine.packs import load_pack
    from engine.workspace import Workspace
    from packs import OFFICIAL
    from research import sweep, training
    from research.data import ImportOptions, import_bars
    from research.training import TrainRequest, fit_configuration
    from tests.flows.conftest import SMALL, _clock, policy_copy

    home = tmp_path_factory.mktemp("real") / "home"
    files = {"SPY": shared_file("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv"),
             "AAPL": shared_file("aapl-daily-yahoo/yahoofinance-AAPL-20040819-20180120.csv")}  # fmt: skip
    with Workspace(home, clock=_clock) as space:
        for ticker, path in files.items():
            import_bars(home, [path], ImportOptions(ticker=ticker, cadence="1d"))
        pack = load_pack(OFFICIAL / "swingsigma")
        spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"}, evaluation="1d")  # daily bars only
        space.add_model(spec, actor="test")
        request = sweep.SweepRequest(model=spec.name, universe=list(files))
        sweep_id = sweep.start(space, pack, spec, request, actor="test", announce=lambda line: None)
        train = TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        trained_id = training._register(space, spec, train, fit_configuration(home, pack, spec, train), "test")
        copy = policy_copy(space, trained_id, "trades", threshold=0.5, side=1.0, top_pct=100.0, max_positions=2.0,
                           hours_mask=float((1 << 24) - 1), stop_loss=0.03, take_profit=0.05, hold_bars=5.0)  # fmt: skip
        space.publish(copy, actor="test")
    return home, copy
