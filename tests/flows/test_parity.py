"""Backtest = replay through the live dataflow: the backtest's decisions are the alerts the flow writes, bar by bar.

The backtest scores the stored bars with the model's pipeline and runs its policy
over the replayed window (`research.backtest.replay`); the flow replays the same
window as a bar feed, warmed from the history before it, and writes alerts to a
real redis-server. Every entry and exit must match: the same bar, ticker, intent,
reason, price and size. Random policies (cooldowns, daily caps, stops, targets,
time stops, entry types, sizing, ranking over the universe) on synthetic bars, and
one on real daily bars from ../shared/data.
"""

from __future__ import annotations

import itertools
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from bytewax.testing import run_main
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.alerts import alert_id
from engine.calendar import calendar
from engine.models import create_model
from engine.packs import load_pack
from engine.policy import Policy
from engine.workspace import Workspace
from flows.live import flow
from flows.sinks import ALERTS
from packs import OFFICIAL, catalog
from research import review, sweep, training
from research.backtest import replay
from engine.store import load_bars
from research.data import ImportOptions, import_bars
from research.training import TrainRequest, fit_configuration
from tests.conftest import shared_file
from tests.flows.conftest import SMALL, _clock, policy_copy


def _bar_feed(home: Path, tickers: list[str], cadence: str, count: int) -> list[dict]:
    """The stored bars of every ticker from the start of the first ticker's last ``count`` on, as a bar feed in event-time order."""
    first, _ = load_bars(home, tickers[0], cadence)
    cut = first.start[-count]
    rows = []
    for ticker in tickers:
        bars, _ = load_bars(home, ticker, cadence)
        for i in range(int(np.searchsorted(bars.start, cut)), len(bars)):
            rows.append({"ticker": ticker, "start": int(bars.start[i]), "end": int(bars.end[i]), "open": float(bars.open[i]),
                         "high": float(bars.high[i]), "low": float(bars.low[i]), "close": float(bars.close[i]),
                         "volume": float(bars.volume[i])})  # fmt: skip
    return sorted(rows, key=lambda row: (row["end"], row["ticker"]))


def backtest_alerts(home: Path, trained_id: str, first_end: int) -> dict[str, tuple]:
    """The backtest's decisions from the bar ending at ``first_end`` on, as alert id -> (reason, price, size).

    The last bar is left out: a backtest closes everything there, the flow decides as on any other bar.
    """
    with Workspace(home, clock=_clock) as space:
        scorer = review.load_scorer(space, trained_id)
        spec = space.model(space.trained(trained_id).model)
        request = space.sweep_request(scorer.manifest.sweep)
    pack = catalog(home).get(f"{spec.pack}@{spec.pack_version}")
    universe = []
    for ticker in request.universe:
        bars, dataset = load_bars(home, ticker, spec.cadence)
        cal = calendar(dataset.calendar)
        universe.append((bars, review.replay_history(home, scorer, bars, cal)))
    axis = np.unique(np.concatenate([bars.start for bars, _ in universe]))
    stored = np.full((len(axis), len(universe)), np.nan)
    for j, (bars, probabilities) in enumerate(universe):
        stored[np.searchsorted(axis, bars.start), j] = probabilities
    prepared = sweep.build_market([(bars, None) for bars, _ in universe], cal, spec, pack.strategies[spec.strategy].label, request,
                                  stored=stored)  # fmt: skip
    market = prepared.market.window(slice(int(np.searchsorted(prepared.market.end, first_end)), None))
    policy = Policy.from_parameters(scorer.manifest.policy["parameters"])
    _, _, decisions = replay(market, policy.row())
    return {alert_id(trained_id, d.ticker, int(market.end[d.bar]), d.intent): (d.reason, d.price, d.size)
            for d in decisions if d.bar < len(market) - 1}  # fmt: skip


def flow_alerts(home: Path, server, trained_id: str, rows: list[dict], path: Path) -> dict[str, tuple]:
    """The flow's alerts replaying ``rows`` as a bar feed, but those of the last bar, as alert id -> (reason, price, size)."""
    server.client().flushall()
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_main(flow(home, server.url, source="files", files=[path], kind="bars", models=[trained_id]))
    last = datetime.fromtimestamp(rows[-1]["end"] / 1e9, UTC)
    found = {}
    for _, fields in server.client().xrange(ALERTS):
        alert = json.loads(fields[b"alert"])
        if datetime.fromisoformat(alert["timestamp"]) < last:
            found[alert["alert_id"]] = (alert["reason"], alert["entry_price"], alert["position_size"])
    return found


def assert_same(expected: dict[str, tuple], got: dict[str, tuple]) -> None:
    assert sorted(got) == sorted(expected), {"only in the flow": sorted(set(got) - set(expected)),
                                             "only in the backtest": sorted(set(expected) - set(got))}  # fmt: skip
    for key, (reason, price, size) in expected.items():
        assert got[key][0] == reason, key
        assert got[key][1] == pytest.approx(price, rel=1e-12), key
        assert got[key][2] == pytest.approx(size, rel=1e-12), key


@pytest.fixture(scope="module")
def parity_home(served, tmp_path_factory):
    home = tmp_path_factory.mktemp("parity") / "home"
    shutil.copytree(served[0], home)
    return home, served[2]


_copies = itertools.count()
policies = st.fixed_dictionaries({
    "threshold": st.sampled_from([0.36, 0.4, 0.45]),
    "cooldown_minutes": st.sampled_from([0, 5, 30]),
    "max_trades_per_day": st.integers(1, 8),
    "stop_loss": st.sampled_from([0.0, 0.001, 0.003]),
    "take_profit": st.sampled_from([0.0, 0.002, 0.005]),
    "hold_bars": st.integers(1, 8),
    "max_positions": st.integers(1, 2),
    "top_pct": st.sampled_from([50.0, 100.0]),
    "entry_type": st.integers(0, 2),
    "position_size": st.sampled_from([0.03, 0.2]),
    "max_exposure": st.sampled_from([0.05, 1.0]),
})  # fmt: skip


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parameters=policies)
def test_the_flow_alerts_what_the_backtest_decides_on_synthetic_bars(parity_home, redis_server, tmp_path, parameters):
    home, trained_id = parity_home
    with Workspace(home, clock=_clock) as space:
        copy = policy_copy(space, trained_id, f"p{next(_copies)}", **parameters)
        space.publish(copy, actor="test")
    rows = _bar_feed(home, ["SPY", "QQQ"], "1m", 390)
    expected = backtest_alerts(home, copy, rows[0]["end"])
    assert_same(expected, flow_alerts(home, redis_server, copy, rows, tmp_path / "bars.jsonl"))


@pytest.fixture(scope="module")
def real_served(tmp_path_factory):
    """A swingsigma model on real daily SPY and AAPL bars (2008-2017), trained and published with a policy that trades."""
    home = tmp_path_factory.mktemp("real") / "home"
    files = {"SPY": shared_file("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv"),
             "AAPL": shared_file("aapl-daily-yahoo/yahoofinance-AAPL-20040819-20180120.csv")}  # fmt: skip
    with Workspace(home, clock=_clock) as space:
        for ticker, path in files.items():
            import_bars(home, [path], ImportOptions(ticker=ticker, cadence="1d"))
        pack = load_pack(OFFICIAL / "swingsigma")
        spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"})
        space.add_model(spec, actor="test")
        request = sweep.SweepRequest(model=spec.name, universe=list(files))
        sweep_id = sweep.start(space, pack, spec, request, actor="test", announce=lambda line: None)
        train = TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        trained_id = training._register(space, spec, train, fit_configuration(home, pack, spec, train), "test")
        copy = policy_copy(space, trained_id, "trades", threshold=0.5, side=1.0, top_pct=100.0, max_positions=2.0,
                           hours_mask=float((1 << 24) - 1), stop_loss=0.03, take_profit=0.05, hold_bars=5.0)  # fmt: skip
        space.publish(copy, actor="test")
    return home, copy


def test_the_flow_alerts_what_the_backtest_decides_on_real_daily_bars(real_served, redis_server, tmp_path):
    home, trained_id = real_served
    rows = _bar_feed(home, ["SPY", "AAPL"], "1d", 250)
    expected = backtest_alerts(home, trained_id, rows[0]["end"])
    assert len(expected) >= 10, "the policy trades in a year of real bars"
    assert {reason for reason, _, _ in expected.values()} >= {"entry", "time"}
    assert_same(expected, flow_alerts(home, redis_server, trained_id, rows, tmp_path / "bars.jsonl"))
