"""Paper trading on the live stream (`sigma sim live`): the account survives a kill, with no alert or fill lost or doubled.

The live flow replays two sessions of SPY and QQQ ticks from a Redis stream into a
real redis-server; a paper account then reads the model's alert stream and the tick
stream through its own consumer group. One account runs undisturbed; another is
SIGKILLed at a random moment and restarted. Both end with the same fills, each alert
acted on once.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest

from cli import main
from flows.live import TICKS
from replay import live
from tests.conftest import REPOSITORY
from tests.flows.test_live import push, replay_stream, tick_rows


@pytest.fixture(scope="module")
def streamed(served, redis_server_module):
    """The flow run over the tick stream: its alerts on the model stream, the ticks still on theirs."""
    home, replay, trained_id = served
    replay_stream(home, redis_server_module, tick_rows(replay), group="flow")
    return home, trained_id, redis_server_module


@pytest.fixture(scope="module")
def redis_server_module(tmp_path_factory):
    from flows.redis_server import RedisServer

    server = RedisServer(tmp_path_factory.mktemp("paper-redis")).start()
    yield server
    server.stop()


def test_a_live_paper_account_killed_and_restarted_loses_and_doubles_nothing(streamed):
    home, trained_id, server = streamed
    golden = live.attach(home, "golden", [trained_id], server.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    assert len(golden.account.fills) >= 10 and golden.account.trades, "the eager model trades in two sessions"

    code = (f"from replay.live import attach; attach({str(home)!r}, 'crash', [{trained_id!r}], {server.url!r}, "
            f"ticks={TICKS!r}, until_end=True, announce=lambda line: None)")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], cwd=REPOSITORY)
    state = live.folder(home, "crash") / "state.msgpack"
    while not state.exists() and child.poll() is None:
        time.sleep(0.02)
    time.sleep(random.uniform(0.0, 0.5))  # the account takes about a second over the two sessions: mostly mid-way
    child.send_signal(signal.SIGKILL)
    child.wait()
    resumed = live.attach(home, "crash", [trained_id], server.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    assert len(resumed.account.seen) == len(set(resumed.account.seen)), "no alert acted on twice"
    assert sorted(resumed.account.seen) == sorted(golden.account.seen), "none lost"
    assert resumed.account.fills == golden.account.fills
    assert resumed.account.cash == golden.account.cash and resumed.account.equity == golden.account.equity
    assert not server.client().xpending(TICKS, "sigma-sim-crash")["pending"]


def test_a_second_process_on_one_account_is_refused(streamed, capsys, monkeypatch):
    home, trained_id, server = streamed
    monkeypatch.setenv("SIGMA_HOME", str(home))
    held = live._lock(live.folder(home, "busy"))
    try:
        assert main(["sim", "live", trained_id, "--account", "busy", "--redis-url", server.url, "--until-end"]) == 2
        err = capsys.readouterr().err
        assert "busy is already attached" in err and "--account" in err and err.count("\n") == 1
    finally:
        held.close()
    assert main(["sim", "live", trained_id, "--account", "busy", "--redis-url", server.url, "--until-end"]) == 0
    out = capsys.readouterr().out
    assert "account busy: cash" in out
    assert main(["sim", "status", "--account", "busy"]) == 0 and "live paper account busy" in capsys.readouterr().out
    assert main(["sim", "live", "no-such-model", "--account", "other", "--redis-url", server.url]) == 2
    assert "no-such-model" in capsys.readouterr().err and not live.folder(home, "other").exists()


def test_new_ticks_after_a_restart_move_the_same_account_on(streamed):
    home, trained_id, server = streamed
    before = live.attach(home, "later", [trained_id], server.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    last = live.load(home, "later").taken[TICKS]
    push(server, [])  # another eof: nothing new but the marker
    after = live.attach(home, "later", [trained_id], server.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    assert after.account.fills == before.account.fills and live.load(home, "later").taken[TICKS] != last


def test_redis_back_from_an_older_snapshot_handing_out_old_ids_again_doubles_and_loses_nothing(streamed, tmp_path):
    """Case 30: Redis restarts from an RDB older than what the account took. The streams are behind it; the alerts and
    ticks written again after the snapshot get ids the account saw before, some of them on other entries. Acting on
    content (alert ids, tick times), the account ends as the one that saw every entry once."""
    import json

    from flows.redis_server import RedisServer
    from flows.sinks import model_stream

    home, trained_id, source = streamed
    alert_stream = model_stream(trained_id)
    alerts = [fields for _, fields in source.client().xrange(alert_stream)]
    ticks = [fields for _, fields in source.client().xrange(TICKS) if b"tick" in fields]
    moment = [json.loads(fields[b"tick"])["ts"] for fields in ticks]

    def when(fields) -> int:
        from datetime import datetime

        from engine.alerts import nanoseconds
        return nanoseconds(datetime.fromisoformat(json.loads(fields[b"alert"])["timestamp"]))

    first_cut, second_cut = when(alerts[len(alerts) // 3]) - 1, when(alerts[2 * len(alerts) // 3]) - 1

    def part(low: int, high: int) -> tuple[list, list]:
        return [a for a in alerts if low < when(a) <= high], [t for t, m in zip(ticks, moment, strict=True) if low < m <= high]

    def write(server, stream: str, entries: list, start: int) -> None:
        for n, fields in enumerate(entries, start):  # explicit ids: after the rollback the same numbers come again
            server.client().xadd(stream, fields, id=f"{n}-1")

    one, two, three = part(-1, first_cut), part(first_cut, second_cut), part(second_cut, 2**62)
    assert all(len(alerts_) >= 4 for alerts_, _ in (one, two, three)), "each third of the stream has alerts"
    golden = RedisServer(tmp_path / "golden").start()
    try:
        write(golden, alert_stream, alerts, 1)
        write(golden, TICKS, ticks + [{b"eof": b"1"}], 1)
        expected = live.attach(home, "rdb-golden", [trained_id], golden.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    finally:
        golden.stop()

    server = RedisServer(tmp_path / "rolled").start()
    write(server, alert_stream, one[0], 1)
    write(server, TICKS, one[1], 1)
    server.client().save()  # the snapshot Redis will come back from
    write(server, alert_stream, two[0], 1 + len(one[0]))
    write(server, TICKS, two[1] + [{b"eof": b"1"}], 1 + len(one[1]))
    live.attach(home, "rdb", [trained_id], server.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    server.stop()  # killed: what it took since the snapshot is gone, the account's record of it is not
    server = RedisServer(tmp_path / "rolled").start()
    try:
        assert server.client().xlen(alert_stream) == len(one[0]), "back from the older snapshot"
        # The flow, resumed, writes the third part's alerts under the ids the second part's had; the feed sends the
        # second part's ticks again, then the third's.
        write(server, alert_stream, three[0], 1 + len(one[0]))
        write(server, TICKS, two[1] + three[1] + [{b"eof": b"1"}], 1 + len(one[1]))
        rolled = live.attach(home, "rdb", [trained_id], server.url, ticks=TICKS, until_end=True, announce=lambda line: None)
    finally:
        server.stop()
    assert len(rolled.account.seen) == len(set(rolled.account.seen)), "no alert acted on twice"
    assert sorted(rolled.account.seen) == sorted(expected.account.seen), "none lost, the reused ids' among them"
    assert rolled.account.fills == expected.account.fills
    assert rolled.account.cash == expected.account.cash and rolled.account.equity == expected.account.equity
