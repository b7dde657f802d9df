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
from engine.store import load_bars
from engine.workspace import Workspace
from flows.live import flow
from flows.sinks import ALERTS
from replay.parity import backtest
from tests.flows.conftest import _clock, policy_copy


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
    market, _, decisions, _, _ = backtest(home, trained_id, first_end, 2**62)
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


def test_the_flow_alerts_what_the_backtest_decides_on_real_daily_bars(real_daily, redis_server, tmp_path):
    home, trained_id = real_daily
    rows = _bar_feed(home, ["SPY", "AAPL"], "1d", 250)
    expected = backtest_alerts(home, trained_id, rows[0]["end"])
    assert len(expected) >= 10, "the policy trades in a year of real bars"
    assert {reason for reason, _, _ in expected.values()} >= {"entry", "time"}
    assert_same(expected, flow_alerts(home, redis_server, trained_id, rows, tmp_path / "bars.jsonl"))


# -- models evaluated inside their bars ---------------------------------------------------------------------------------

EVALUATED = {  # pack, strategy, risk profile, cadence, evaluation, sessions of minutes stored
    "daily": ("swingsigma", "mean_reversion", "aggressive", "1d", "15m", 320),
    "weekly": ("trendsigma", "channel_breakout", "balanced", "1w", "1h", 2000),
}


@pytest.fixture(scope="module", params=list(EVALUATED))
def evaluated(request, tmp_path_factory):
    """(home, trained id, evaluation cadence): a model on SPY and QQQ deciding at every interval inside its bars, trained
    on synthetic minutes stored as its bars and its intervals, both rolled up from the same minutes."""
    from engine.bars import resample
    from engine.calendar import CALENDARS
    from engine.models import SweepRequest, create_model
    from engine.packs import load_pack
    from engine.store import store_bars
    from packs import OFFICIAL
    from research import sweep, training
    from research.synthetic import generate
    from research.training import TrainRequest, fit_configuration
    from tests.flows.conftest import SMALL

    pack_name, strategy, profile, cadence, evaluation, sessions = EVALUATED[request.param]
    us = CALENDARS["us_equities"]
    home = tmp_path_factory.mktemp(f"evaluated-{request.param}") / "home"
    with Workspace(home, clock=_clock) as space:
        for ticker, (minutes, _) in generate(["SPY", "QQQ"], "1m", sessions, us, seed=21).items():
            for each in (cadence, evaluation):
                store_bars(home, resample(minutes, each, us), us, source="synthetic minutes")
        pack = load_pack(OFFICIAL / pack_name)
        spec = create_model(pack, strategy=strategy, settings={"ticker": "SPY"}, evaluation=evaluation, risk_profile=profile)
        space.add_model(spec, actor="test")
        sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name, universe=["SPY", "QQQ"]), actor="test",
                               announce=lambda line: None)  # fmt: skip
        train = TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        trained_id = training._register(space, spec, train, fit_configuration(home, pack, spec, train), "test")
    return home, trained_id, evaluation


evaluated_policies = st.fixed_dictionaries({
    "threshold": st.sampled_from([0.4, 0.45, 0.5]),
    "hours_mask": st.sampled_from([float((1 << 24) - 1), float((1 << 10) | (1 << 11) | (1 << 14))]),  # all day; 10, 11, 14
    "cooldown_minutes": st.sampled_from([0, 30, 240]),
    "max_trades_per_day": st.integers(1, 4),
    "stop_loss": st.sampled_from([0.0, 0.002, 0.01]),
    "take_profit": st.sampled_from([0.0, 0.004, 0.02]),
    "hold_bars": st.integers(1, 3),
    "max_positions": st.integers(1, 2),
    "top_pct": st.sampled_from([50.0, 100.0]),
    "entry_type": st.integers(0, 2),
    "size_by_confidence": st.just(0.0),
})  # fmt: skip


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parameters=evaluated_policies)
def test_evaluated_inside_its_bars_the_flow_alerts_what_the_backtest_decides(evaluated, redis_server, tmp_path, parameters):
    """Issue 18's parity: a daily model deciding every 15 minutes and a weekly one deciding hourly, replayed through the
    flow as a feed of their intervals, alert what the backtest decides at each interval: entries on the bar so far
    (provisional), exits by stop, target and a time stop counted in bars, under cooldowns and daily caps."""
    home, trained_id, evaluation = evaluated
    with Workspace(home, clock=_clock) as space:
        copy = policy_copy(space, trained_id, f"e{next(_copies)}", **parameters)
        space.publish(copy, actor="test")
    # The feed starts with a bar of the model (15 days, 12 weeks from the end): the flow warms on the stored bars before.
    cadence = {"15m": "1d", "1h": "1w"}[evaluation]
    bars, points = load_bars(home, "SPY", cadence)[0], load_bars(home, "SPY", evaluation)[0]
    first = bars.start[-{"1d": 15, "1w": 12}[cadence]]
    rows = _bar_feed(home, ["SPY", "QQQ"], evaluation, len(points) - int(np.searchsorted(points.start, first)))
    expected = backtest_alerts(home, copy, rows[0]["end"])
    got = flow_alerts(home, redis_server, copy, rows, tmp_path / "bars.jsonl")
    assert_same(expected, got)
    states = {json.loads(fields[b"alert"])["bar_state"] for _, fields in redis_server.client().xrange(ALERTS)}
    assert states <= {"closed", "provisional"} and (not expected or "provisional" in states)
