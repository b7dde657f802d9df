"""Paper runs end to end: real daily bars through the live flow and a private redis-server, the broker, the parity report.

- Under the backtest's fill convention a replay's decisions and trades are the
  research backtest's: the parity diff is empty.
- Under the market convention every difference names a cause.
- A run killed at a random moment (SIGKILL, the flow and redis-server orphaned)
  and resumed takes the same alerts, once each, and ends with the same account.
- Bad input is refused with the field named, exit 2, nothing written.
"""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import msgspec
import numpy as np
import pytest

from cli import main
from engine.workspace import Workspace
from flows.redis_server import RedisServer
from replay import gate, parity, sim
from replay.broker import FillSettings
from research import review
from tests.conftest import REPOSITORY
from tests.flows.conftest import _clock

pytestmark = pytest.mark.skipif(not RedisServer.installed(), reason="needs a redis-server binary (Debian: apt-get install redis-server)")
FROM = date(2017, 1, 1)


@pytest.fixture(scope="module")
def paper_home(real_daily, tmp_path_factory):
    """A copy of the real daily workspace whose trading model is not published: paper comes before live."""
    home = tmp_path_factory.mktemp("paper") / "home"
    shutil.copytree(real_daily[0], home)
    with Workspace(home, clock=_clock) as space:
        space.unpublish(real_daily[1], actor="test")
    return home, real_daily[1]


def _run(home, trained_id, convention: str, **fill) -> sim.SimRun:
    settings = msgspec.convert({"convention": convention, **fill}, FillSettings)
    request = sim.SimRequest(models=[trained_id], start=FROM, fill=settings)
    with Workspace(home, clock=_clock) as space:
        run = sim.start(space, request, actor="test")
    return sim.execute(home, run.run_id, announce=lambda line: None)


@pytest.fixture(scope="module")
def golden(paper_home):
    home, trained_id = paper_home
    return _run(home, trained_id, "backtest")


def test_a_replay_of_real_daily_bars_is_the_backtest_under_its_fill_convention(paper_home, golden):
    home, _ = paper_home
    assert golden.status == "done" and golden.transport == "private-redis"
    report = parity.report(home, golden.run_id)
    assert report.decisions >= 100 and report.trades >= 50, "a year of real bars trades"
    assert report.scores >= 2 * 250, "every bar of both tickers scored alike"
    assert report.empty, report.differences[:5]
    scores = home / "sim" / golden.run_id / "scores.jsonl"
    kept = scores.read_bytes()
    lines = kept.splitlines()
    row = msgspec.json.decode(lines[-1])
    row[2] = (row[2] or 0.5) + 1e-6  # one bar scored differently by the flow
    scores.write_bytes(b"\n".join(lines[:-1] + [msgspec.json.encode(row)]) + b"\n")
    try:
        [changed] = parity.report(home, golden.run_id).differences
    finally:
        scores.write_bytes(kept)
    assert (changed.what, changed.field) == ("probability", "probability")
    assert report.features == report.scores, "every scored bar's feature row compared"
    features = home / "sim" / golden.run_id / "features.jsonl"
    kept = features.read_bytes()
    lines = kept.splitlines()
    model, ticker, end, values = msgspec.json.decode(lines[-1])
    values[3] = float(np.float32(values[3] * 1.001))  # one feature of one bar built differently by the flow
    features.write_bytes(b"\n".join(lines[:-1] + [msgspec.json.encode([model, ticker, end, values])]) + b"\n")
    try:
        [changed] = parity.report(home, golden.run_id).differences
    finally:
        features.write_bytes(kept)
    with Workspace(home, clock=_clock) as space:
        names = review.load_scorer(space, golden.request.models[0]).manifest.features
    assert (changed.what, changed.field) == ("features", names[3]) and ticker in changed.key
    book = sim.account(home, golden.run_id)
    assert {t.reason for t in book.trades} >= {"time", "take_profit"}
    ends = [at for at, _, _ in book.equity]
    assert len(ends) >= 250 and ends == sorted(set(ends))  # a mark at every bar end, once


@pytest.fixture(scope="module")
def option_home(real_daily, tmp_path_factory):
    """A copy of the real daily workspace with the strategy traded as 30-session SPY calls and puts, swept, trained and
    given a policy that trades; not published."""
    from engine.models import create_model
    from engine.packs import load_pack
    from packs import OFFICIAL
    from research import sweep, training
    from research.training import TrainRequest, fit_configuration
    from tests.flows.conftest import SMALL, policy_copy

    home = tmp_path_factory.mktemp("options") / "home"
    shutil.copytree(real_daily[0], home)
    pack = load_pack(OFFICIAL / "swingsigma")
    with Workspace(home, clock=_clock) as space:
        spec = create_model(pack, strategy="momentum_swing", instrument="options", settings={"underlying": "SPY"},
                            evaluation="1d", taken=[model.name for model in space.models()])  # fmt: skip
        space.add_model(spec, actor="test")
        request = sweep.SweepRequest(model=spec.name, universe=["SPY"])
        sweep_id = sweep.start(space, pack, spec, request, actor="test", announce=lambda line: None)
        train = TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        trained_id = training._register(space, spec, train, fit_configuration(home, pack, spec, train), "test")
        copy = policy_copy(space, trained_id, "trades", threshold=0.5, side=0.0, top_pct=100.0, max_positions=1.0,
                           hours_mask=float((1 << 24) - 1), stop_loss=0.03, take_profit=0.05, hold_bars=5.0, expiry_sessions=30.0)  # fmt: skip
    return home, copy


def test_an_option_replay_trades_the_contracts_the_backtest_priced(option_home):
    """The backtest, the alerts and the paper broker hold one contract rule: under the backtest's fill convention a
    replay of an option model on real daily bars is its backtest, strike, expiry, premium and P&L alike."""
    home, trained_id = option_home
    run = _run(home, trained_id, "backtest")
    report = parity.report(home, run.run_id)
    assert report.trades >= 20, "a year of real bars trades options"
    assert report.empty, report.differences[:5]
    book = sim.account(home, run.run_id)
    held = [trade.instrument for trade in book.trades]
    assert held and all(" C " in name or " P " in name for name in held), held[:3]
    path = home / "sim" / run.run_id / "alerts.jsonl"
    kept = path.read_bytes()
    lines = kept.splitlines()
    first = msgspec.json.decode(lines[0])
    first["strike"] += 1.0  # the flow named another contract than the backtest priced
    path.write_bytes(b"\n".join([msgspec.json.encode(first), *lines[1:]]) + b"\n")
    try:
        [changed] = parity.report(home, run.run_id).differences
    finally:
        path.write_bytes(kept)
    assert (changed.what, changed.field, changed.key) == ("decision", "strike", first["alert_id"])


def test_under_the_market_convention_each_difference_names_its_cause(paper_home):
    home, trained_id = paper_home
    run = _run(home, trained_id, "market", slippage_bps=8)
    report = parity.report(home, run.run_id)
    assert report.differences
    assert all(d.cause != "unexplained" for d in report.differences), [d for d in report.differences if d.cause == "unexplained"][:3]
    assert report.return_gap["fees"] < 0  # a $1 minimum on a few shares costs more than 5 bps
    assert report.return_gap["fill prices"] < 0  # 8 bps of slippage against the policy's


def test_a_killed_run_resumes_with_every_alert_once_and_the_same_account(paper_home, golden):
    home, trained_id = paper_home
    request = sim.SimRequest(models=[trained_id], start=FROM, fill=FillSettings(convention="backtest"))
    with Workspace(home, clock=_clock) as space:
        run = sim.start(space, request, actor="test")
    code = f"from replay.sim import execute; execute({str(home)!r}, {run.run_id!r}, announce=lambda line: None)"
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPOSITORY)
    folder = home / "sim" / run.run_id
    while not (folder / "flow.log").exists() and child.poll() is None:
        time.sleep(0.05)
    time.sleep(random.uniform(0.0, 4.0))  # somewhere in the flow (it takes several seconds), or just after it
    child.send_signal(signal.SIGKILL)
    child.wait()
    killed = sim.load(home, run.run_id)
    assert killed.shown_status == ("done" if killed.status == "done" else "killed")  # never shown running with no process
    assert sim.cancel(home, run.run_id) and not (folder / "cancel").exists()  # nothing to ask to stop
    resumed = sim.execute(home, run.run_id, announce=lambda line: None)
    assert resumed.status == "done"
    ids = [alert.alert_id for alert in sim.alerts(folder)]
    golden_ids = [alert.alert_id for alert in sim.alerts(home / "sim" / golden.run_id)]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(golden_ids)
    assert sim.account(home, run.run_id).trades == sim.account(home, golden.run_id).trades
    assert not _processes_in(folder), "the killed run's flow and redis-server were stopped by the resume, and the resume's by its end"


def _processes_in(folder) -> list[int]:
    """Processes working in ``folder`` or naming its run on their command line."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if folder.name.encode() in (proc / "cmdline").read_bytes() or (proc / "cwd").resolve().is_relative_to(folder):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_a_second_take_of_the_alerts_takes_nothing_twice(paper_home, golden):
    home, _ = paper_home
    folder = home / "sim" / golden.run_id
    before = (folder / "alerts.jsonl").read_bytes()
    server = RedisServer(folder / "redis", appendonly=True).start()  # the run's own, from its append-only file
    try:
        client = server.client()
        stream = next(key for key in client.scan_iter("{sigma}:alerts:*"))
        assert client.xpending(stream, sim.GROUP)["pending"] == 0  # every alert acknowledged once written
        assert sim._take_alerts(folder, golden, server.url) == len(sim.alerts(folder))
    finally:
        server.stop()
    assert (folder / "alerts.jsonl").read_bytes() == before


@pytest.mark.parametrize(("arguments", "field"), [
    (["no-such-model"], "no-such-model"),
    (["{model}", "--tickers", "MSFT"], "--tickers"),
    (["{model}", "--from", "2030-01-01"], "--from/--to"),
    (["{model}", "--from", "2017-02-01", "--to", "2017-01-01"], "--to"),
    (["{model}", "--fill", "participation=2"], "--fill"),
    (["{model}", "--fill", "nonsense=1"], "--fill"),
    (["{model}", "--speed", "fast"], "--speed"),
    (["{model}", "--speed", "0x"], "--speed"),
])  # fmt: skip
def test_bad_input_is_refused_naming_the_field_and_writes_nothing(paper_home, monkeypatch, capsys, arguments, field):
    home, trained_id = paper_home
    monkeypatch.setenv("SIGMA_HOME", str(home))
    before = sorted((home / "sim").iterdir())
    assert main(["sim", "run", *[a.format(model=trained_id) for a in arguments]]) == 2
    message = capsys.readouterr().err
    assert field in message and message.count("\n") == 1, message
    assert sorted((home / "sim").iterdir()) == before


def test_a_feed_of_one_kind_of_prices_only_and_of_the_model_s_own(paper_home, tmp_path):
    """Case 15: a paper feed is made of stored bars of one adjustment, and serves a model only on prices of the kind it
    was trained on; either refusal comes before anything is written."""
    from engine.calendar import CALENDARS
    from engine.errors import ConfigError
    from engine.store import load_bars, store_bars

    home, trained_id = tmp_path / "home", paper_home[1]
    shutil.copytree(paper_home[0], home)
    for ticker, refusal in (("AAPL", "prices are normalised differently \\(SPY raw, AAPL total_return\\)"),
                            ("SPY", f"{trained_id} was trained on raw prices, which a feed of total_return prices does not")):
        bars, info = load_bars(home, ticker, "1d")
        store_bars(home, bars, CALENDARS[info.calendar], source=info.source, adjustment="total_return")
        with Workspace(home, clock=_clock) as space, pytest.raises(ConfigError, match=refusal):
            sim.start(space, sim.SimRequest(models=[trained_id], start=FROM), actor="test")
        assert sim.runs(home) == sim.runs(paper_home[0])


def test_the_run_records_its_lineage_and_fill_settings(paper_home, golden):
    home, trained_id = paper_home
    stored = sim.load(home, golden.run_id)
    assert stored.lineage[trained_id]["artifact_sha"] and set(stored.lineage["data"]) == {"SPY", "AAPL"}
    assert msgspec.to_builtins(stored.request.fill)["convention"] == "backtest"
    assert [r.run_id for r in sim.runs(home)].count(golden.run_id) == 1


def test_the_trust_gate_refuses_a_failing_paper_record_and_force_is_audited(paper_home, golden, monkeypatch, capsys):
    home, trained_id = paper_home
    monkeypatch.setenv("SIGMA_HOME", str(home))
    with Workspace(home, clock=_clock) as space:  # the same artifact without training's verdict: only the trust gate decides
        record = space.trained(trained_id)
        manifest = {key: value for key, value in record.manifest.items() if key != "check"}
        manifest["trained_id"] = clean = f"{trained_id}-clean"
        space.add_trained(clean, record.model, record.sweep, record.rank, record.artifact_sha, manifest, actor="test")
    assert main(["publish", clean]) == 2
    assert "has no paper record" in capsys.readouterr().err
    assert gate.stage(home, clean, published=False) == "trained"

    costly = _run(home, clean, "market", fees={"per_share": 0.0, "minimum": 100.0})  # $100 a fill on trades of a few shares
    verdict = gate.judge(home, costly.run_id)
    assert verdict.status == "FAIL"
    failed = {result.gate for result in verdict.gates if result.status == "FAIL"}
    assert "max_return_gap" in failed
    assert gate.stage(home, clean, published=False) == f"paper FAIL ({costly.run_id})"
    assert main(["publish", clean]) == 2
    err = capsys.readouterr().err
    assert "failed the trust gate" in err and "return gap to the backtest" in err and "--force --reason" in err
    assert main(["publish", clean, "--force", "--reason", "desk override for a test"]) == 0
    with Workspace(home, clock=_clock) as space:
        entry = space.audit_log(clean)[-1]
        assert space.trained(clean).published_at is not None
    assert entry.action == "model.publish" and entry.details["forced"] and entry.details["reason"] == "desk override for a test"
    assert costly.run_id in entry.details["paper"] and entry.actor
    with Workspace(home, clock=_clock) as space:
        space.unpublish(clean, actor="test")


def test_a_replay_under_the_backtest_convention_tracks_the_backtest(paper_home, golden):
    home, _ = paper_home
    verdict = gate.judge(home, golden.run_id)
    by_gate = {result.gate: result for result in verdict.gates}
    assert verdict.metrics["decision_agreement"] == 1.0 and by_gate["min_decision_agreement"].status == "PASS"
    assert verdict.metrics["slippage_bps"] == pytest.approx(0.0, abs=1e-6)
    assert by_gate["max_return_gap"].status == "PASS"  # fixed quantities against the backtest's constant weights: a small gap
    assert sim.load(home, golden.run_id).verdict["status"] == verdict.status


def test_the_report_is_one_self_contained_html_page_with_its_charts_and_verdict(paper_home, golden, monkeypatch, capsys):
    from html.parser import HTMLParser

    home, _ = paper_home
    monkeypatch.setenv("SIGMA_HOME", str(home))
    assert main(["sim", "report", golden.run_id, "--json"]) == 0
    shown = msgspec.json.decode(capsys.readouterr().out)
    assert shown["parity"]["differences"] == [] and shown["run"]["verdict"]["status"] in ("PASS", "MARGINAL", "FAIL")

    class Page(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags, self.links, self.text = {}, [], []

        def handle_starttag(self, tag, attrs):
            self.tags[tag] = self.tags.get(tag, 0) + 1
            self.links += [value for name, value in attrs if name in ("src", "href") and value and not value.startswith("#")]

        def handle_data(self, data):
            self.text.append(data)

    page = Page()
    page.feed((home / "sim" / golden.run_id / "report.html").read_text())
    page.close()
    text = " ".join(page.text)
    assert page.links == [], "the report loads nothing from elsewhere"
    assert page.tags["svg"] == 2 and page.tags["path"] == 4  # equity and drawdown, paper and backtest each
    assert "matched fills is at 0.00 bps" in " ".join(page.text)  # the backtest's own fills: no histogram to draw
    assert "Trust gate" in text and "No difference." in text and "decisions alike" in text
    assert page.tags["tr"] >= 50, "a row per trade"


def test_a_passing_paper_record_does_not_promise_live_over_trainings_verdict(paper_home, golden, monkeypatch, capsys):
    """The trust gate's line says `sigma publish` may follow only when training did not mark the model not publishable."""
    from cli import sim as sim_command
    from engine.workspace import TrainedRecord

    home, _ = paper_home
    monkeypatch.setenv("SIGMA_HOME", str(home))
    passing = msgspec.structs.replace(golden, verdict={**(golden.verdict or {"gates": []}), "status": "PASS"})
    monkeypatch.setattr(TrainedRecord, "refusal", property(lambda record: ""))  # training let it through
    sim_command._print_verdict(passing)
    assert "(may go live: `sigma publish`)" in capsys.readouterr().out
    monkeypatch.setattr(TrainedRecord, "refusal", property(lambda record: "out of fold, trades 16 is below the gate 30"))
    sim_command._print_verdict(passing)
    line = capsys.readouterr().out.splitlines()[0]
    assert "may go live" not in line and "not publishable: out of fold, trades 16 is below the gate 30" in line
