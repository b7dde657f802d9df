"""Redis faults and readers: the sink outlives an outage, the group reader recovers work, the registry follows publishing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest
import redis

from engine.schemas import Lineage, StockAlert
from engine.workspace import Workspace
from flows.redis_server import RedisServer
from flows.registry import Registry
from flows.sinks import ALERTS, AlertSink, SinkOverflow, model_stream
from tests.flows.conftest import REPOSITORY

LINEAGE = Lineage(pack_sha="a" * 64, indicator_set_sha="b" * 64, model_config_sha="c" * 64, policy_sha="d" * 64)
NOW = datetime(2024, 3, 19, 14, 31, tzinfo=UTC)
SECOND = 1_000_000_000


def _alert(number: int, model: str = "m") -> StockAlert:
    return StockAlert(alert_id=f"{model}:SPY:{number}:open", timestamp=NOW, model_id=model, action="BUY", ticker="SPY",
                      quantity=100, confidence=0.7, entry_price=100.0, valid_until=NOW, lineage=LINEAGE, received_at=NOW,
                      emitted_at=NOW)  # fmt: skip


def test_the_sink_buffers_through_an_outage_writes_once_after_it_and_fails_loudly_past_its_bound(tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    writer = AlertSink(server.url, buffer=5).build("alerts", 0, 1)
    writer.write_batch([_alert(1), _alert(1)])  # a re-emitted alert (a resume) is written once
    assert server.client().xlen(ALERTS) == 1 and server.client().xlen(model_stream("m")) == 1
    server.stop()  # case 31: Redis goes away
    writer.write_batch([_alert(2), _alert(3)])  # buffered, the flow goes on
    assert len(writer.pending) == 2
    restarted = RedisServer(tmp_path / "redis")
    restarted.port, restarted.url = server.port, server.url
    restarted.start()  # case 29: back without persistence, the streams are gone
    writer.retry_at = 0.0
    writer.write_batch([_alert(4)])
    assert [json.loads(f[b"alert"])["alert_id"] for _, f in restarted.client().xrange(ALERTS)] == ["m:SPY:2:open", "m:SPY:3:open",
                                                                                                   "m:SPY:4:open"]  # fmt: skip
    restarted.stop()
    writer.retry_at = 0.0
    with pytest.raises(SinkOverflow, match="stopping the flow rather than dropping them"):
        writer.write_batch([_alert(n) for n in range(10, 16)])


def _tail(server: RedisServer, *args: str) -> list[dict]:
    result = subprocess.run([sys.executable, "-m", "cli", "alerts", "tail", "--redis-url", server.url, *args],
                            cwd=REPOSITORY, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_the_group_reader_claims_a_dead_members_alerts_and_sets_poison_aside(redis_server):
    client = redis_server.client()
    writer = AlertSink(redis_server.url).build("alerts", 0, 1)
    writer.write_batch([_alert(n) for n in range(12)])
    client.xadd(ALERTS, {"alert_id": "broken", "alert": b"{not an alert"})  # case 33: a poison entry
    client.xgroup_create(ALERTS, "desk", id="0")
    client.xreadgroup("desk", "dead-member", {ALERTS: ">"}, count=10)  # case 32: it dies holding 10 unacknowledged alerts
    got = _tail(redis_server, "--group", "desk", "--consumer", "peer", "--min-idle-ms", "0", "--max-deliveries", "1")
    assert sorted(alert["alert_id"] for alert in got) == sorted(f"m:SPY:{n}:open" for n in range(12)), "every alert, once"
    assert client.xpending(ALERTS, "desk")["pending"] == 0, "all acknowledged"
    [(_, poison)] = client.xrange(f"{ALERTS}:poison")
    assert poison[b"alert"] == b"{not an alert"
    assert len(_tail(redis_server)) == 12, "without a group: the whole stream (the poison entry skipped)"


def test_a_dead_members_alerts_wait_for_the_idle_time_and_a_poison_entry_for_its_deliveries(redis_server):
    """Case 32 with a real idle time: a live member's alerts are not taken from it; once idle, they are claimed, and each
    claim counts as a delivery."""
    client = redis_server.client()
    writer = AlertSink(redis_server.url).build("alerts", 0, 1)
    writer.write_batch([_alert(n, "w") for n in range(12)])
    client.xadd(ALERTS, {"alert_id": "broken", "alert": b"{not an alert"})
    client.xgroup_create(ALERTS, "desk", id="0")
    client.xreadgroup("desk", "slow-member", {ALERTS: ">"}, count=10)
    tail = ("--group", "desk", "--consumer", "peer", "--max-deliveries", "3")
    early = _tail(redis_server, *tail, "--min-idle-ms", "600000")  # ten minutes: the slow member is not dead yet
    assert [alert["alert_id"] for alert in early] == ["w:SPY:10:open", "w:SPY:11:open"], "only the new alerts"
    holders = {c["name"].decode(): c["pending"] for c in client.xinfo_consumers(ALERTS, "desk")}
    assert holders == {"slow-member": 10, "peer": 1}, "the slow member keeps its ten; the poison entry waits, delivered once"
    [poison] = client.xpending_range(ALERTS, "desk", "-", "+", 10, consumername="peer")
    assert poison["times_delivered"] == 1
    time.sleep(0.05)  # the slow member's entries idle past 10 ms
    late = _tail(redis_server, *tail, "--min-idle-ms", "10")
    assert sorted(alert["alert_id"] for alert in late) == sorted(f"w:SPY:{n}:open" for n in range(10)), "claimed once idle"
    # The poison entry came twice more (the peer's own pending, then the claim of idle entries): its third delivery.
    [(_, set_aside)] = client.xrange(f"{ALERTS}:poison")
    assert set_aside[b"source_id"] == poison["message_id"] and client.xpending(ALERTS, "desk")["pending"] == 0
    assert _tail(redis_server, *tail, "--min-idle-ms", "10") == []


def test_a_silent_ticker_is_flagged_stale_on_its_own(served, redis_server):
    """Case 17: one ticker's feed goes silent while another's goes on; health names the silent one, only it."""
    from flows.health import render, report
    from flows.sinks import HealthSink
    from flows.steps import Status

    home, _, _ = served
    now = time.time_ns()
    writer = HealthSink(redis_server.url).build("health", 0, 1)
    writer.write_batch([Status("SPY", now, now - 5 * SECOND, now, 400, 0, {"outlier": 2, "locked_quote": 3}),
                        Status("QQQ", now - 600 * SECOND, now - 600 * SECOND, now - 600 * SECOND, 390, 0, {})])  # fmt: skip
    health = report(home, redis_server.url, stale_seconds=120.0)
    assert not health.healthy and [problem for problem in health.problems if "no bar for" in problem] == [health.problems[0]]
    assert health.problems[0].startswith("QQQ: no bar for 60") and not any(p.startswith("SPY") for p in health.problems)
    ages = {ticker["ticker"]: ticker["last_data_age_s"] for ticker in health.tickers}
    assert ages["QQQ"] >= 600 > 120 > ages["SPY"]
    [spy] = [ticker for ticker in health.tickers if ticker["ticker"] == "SPY"]
    assert (spy["refused"], spy["remarks"]) == (2, {"locked_quote": 3}), "a locked quote is kept with a remark, not refused"
    assert "refused 2  locked_quote 3" in render(health)


def test_the_registry_follows_publish_unpublish_and_the_kill_switch(served):
    home, _, trained_id = served
    registry = Registry(home, poll_seconds=0.0)
    assert trained_id in registry.models and registry.tickers == ["QQQ", "SPY"] and not registry.models[trained_id].killed
    with Workspace(home, clock=lambda: NOW) as space:
        base = trained_id.removesuffix("-eager")
        space.publish(base, actor="test")
        assert registry.refresh() and set(registry.models) == {trained_id, base}
        assert registry.models[base].scorer is not None and registry.models[base].universe == ("SPY", "QQQ")
        space.kill(base, True, actor="test")
        registry.refresh()
        assert registry.models[base].killed
        space.unpublish(base, actor="test")
        registry.refresh()
        assert set(registry.models) == {trained_id}
    assert not registry.refresh(), "nothing changed: nothing reloaded"


def test_health_reports_redis_models_tickers_and_dead_letters(served, redis_server, monkeypatch):
    from bytewax.testing import run_main

    from flows.health import report
    from flows.live import flow

    home, replay, trained_id = served
    run_main(flow(home, redis_server.url, source="files", files=[replay]))
    health = report(home, redis_server.url, stale_seconds=1e12)
    assert health.healthy and health.redis == "ok" and health.heartbeat_age_s is not None
    assert [m["trained_id"] for m in health.models] == [trained_id]
    assert [t["ticker"] for t in health.tickers] == ["QQQ", "SPY"] and all(t["bars"] > 300 for t in health.tickers)
    stale = report(home, redis_server.url, stale_seconds=0.0)
    assert not stale.healthy and any("no bar for" in problem for problem in stale.problems)
    redis_server.stop()
    down = report(home, redis_server.url)
    assert not down.healthy and down.redis.startswith("unreachable")


def test_the_demo_runs_the_whole_pipeline_into_redis_or_a_file(tmp_path, redis_server):
    env = {**os.environ, "SIGMA_HOME": str(tmp_path / "home"), "REDIS_URL": redis_server.url}
    done = subprocess.run([sys.executable, "-m", "cli", "demo"], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    count = redis_server.client().xlen(ALERTS)
    assert count > 0 and f"{count} alerts" in done.stdout and "sigma alerts tail" in done.stdout
    assert re.search(r"trust gate: (PASS|MARGINAL|FAIL)", done.stdout) and "sigma sim report sim-" in done.stdout

    # No REDIS_URL but a redis-server on the PATH: the demo starts a private one and leaves it running for a look.
    env = {**env, "SIGMA_HOME": str(tmp_path / "private")}
    del env["REDIS_URL"]
    done = subprocess.run([sys.executable, "-m", "cli", "demo"], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    pid = int(re.search(r"private redis-server \(pid (\d+)\)", done.stdout).group(1))
    try:
        url = re.search(r"--redis-url (redis://\S+)", done.stdout).group(1)
        assert redis.Redis.from_url(url).xlen(ALERTS) == count, "the same alerts as through the given Redis"
    finally:
        os.kill(pid, signal.SIGKILL)

    bare = tmp_path / "bin"  # a PATH without redis-server, and no REDIS_URL: alerts go to a file
    bare.mkdir()
    env = {"PATH": str(bare), "SIGMA_HOME": str(tmp_path / "other"), "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "cli", "demo"], cwd=REPOSITORY, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    alerts = (tmp_path / "other" / "alerts.jsonl").read_text().splitlines()
    assert "local stream file" in done.stdout and len(alerts) == count, "the same alerts as through Redis"
    assert "no redis-server installed" in done.stdout and "trust gate:" in done.stdout  # the paper run's alerts went to its file


def test_a_slow_consumer_is_warned_before_the_trim_and_what_the_trim_took_is_counted_on_every_alert_stream(served, redis_server):
    """Case 34: the lag alarm comes at half the trim length; after the trim, each group's loss is counted (unread and
    pending), on the per-model streams too; an unknown lag is a problem; the group reader says what it lost."""
    from flows.health import render, report

    home = served[0]
    client = redis_server.client()
    writer = AlertSink(redis_server.url, maxlen=1_000).build("alerts", 0, 1)
    writer.write_batch([_alert(n) for n in range(2)])
    for stream in (ALERTS, model_stream("m")):
        client.xgroup_create(stream, "slow", id="0")
        client.xreadgroup("slow", "gone", {stream: ">"}, count=2)  # it took two alerts and never acknowledged them
    writer.write_batch([_alert(n) for n in range(2, 80)])
    calm = report(home, redis_server.url, stale_seconds=1e12, maxlen=200)
    assert [(c["stream"], c["lag"], c["pending"], c["lost_unread"], c["lost_pending"]) for c in calm.consumers] == [
        (ALERTS, 78, 2, 0, 0), (model_stream("m"), 78, 2, 0, 0)] and not calm.problems  # fmt: skip
    alarmed = report(home, redis_server.url, stale_seconds=1e12, maxlen=100)
    assert alarmed.problems == [f"{stream} group slow is 78 alerts behind; the stream keeps about 100: past that its oldest "
                                "unread alerts are trimmed away" for stream in (ALERTS, model_stream("m"))]  # fmt: skip
    for stream in (ALERTS, model_stream("m")):  # the trim a backlog above MAXLEN brings: 68 unread and the 2 pending are gone
        client.xtrim(stream, maxlen=10, approximate=False)
    lost = report(home, redis_server.url, stale_seconds=1e12, maxlen=100)
    assert [(c["lost_unread"], c["lost_pending"]) for c in lost.consumers] == [(68, 2), (68, 2)]
    assert f"{model_stream('m')} group slow: 68 alerts were trimmed before it read them: lost to this group" in lost.problems
    assert f"{ALERTS} group slow: 2 pending alerts were trimmed before they were acknowledged: a consumer that has not acted on " \
           "them cannot read them again" in lost.problems  # fmt: skip
    assert "68 lost unread, 2 lost pending" in render(lost)

    result = subprocess.run([sys.executable, "-m", "cli", "alerts", "tail", "--redis-url", redis_server.url, "--group", "slow",
                             "--consumer", "gone"], cwd=REPOSITORY, capture_output=True, text=True, timeout=60)  # fmt: skip
    got = [json.loads(line) for line in result.stdout.splitlines()]
    assert [alert["alert_id"] for alert in got] == [f"m:SPY:{n}:open" for n in range(70, 80)], "what the stream still holds"
    assert "2 alert(s) pending in group slow were trimmed" in result.stderr and "lost" in result.stderr
    assert client.xpending(ALERTS, "slow")["pending"] == 0, "the trimmed pending entries were acknowledged"

    ids = [entry_id for entry_id, _ in client.xrange(model_stream("m"))]
    client.xgroup_create(model_stream("m"), "moved", id=ids[3])  # a group set to an id by hand: Redis cannot count its lag
    unknown = report(home, redis_server.url, stale_seconds=1e12)
    assert any(problem.startswith(f"{model_stream('m')} group moved: Redis cannot count its lag") for problem in unknown.problems)
    assert not unknown.healthy
