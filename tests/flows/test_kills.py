"""Exactly-once in effect under SIGKILL: a flow killed anywhere and restarted ends with the uninterrupted run's alerts.

Each attempt is `sigma run --recovery` in a child forked from one warm process (the
zygote below), which has imported the flow's code once: a cold start spends seconds
on imports, and these tests start the flow dozens of times. A child dies by SIGKILL
where its kill says: after some number of source items, inside its source's first
snapshot (before anything of that attempt can commit), a few milliseconds after a
snapshot was taken (while Bytewax writes the epoch to SQLite: RELIABILITY.md case 27),
or once it has read and snapshotted past an event time.

Bytewax calls a source's ``next_batch`` for an epoch only when every earlier epoch is
written to the recovery store, so a child killed in ``next_batch`` after a snapshot of
its own resumes from a snapshot; one killed before its first resumes from where the
attempt before it did. ``--snapshot-seconds 0`` snapshots after every batch, which
makes each kill's resume position a function of the input alone.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import msgspec
import pytest

from engine.schemas import Tick
from engine.workspace import Workspace
from flows.sources import FileSource, RedisStreamSource
from tests.flows.conftest import REPOSITORY, _clock, policy_copy, state_digests
from tests.flows.test_live import alerts, push, tick_rows

SECOND = 1_000_000_000
MINUTE = 60 * SECOND

ZYGOTE = r"""
import json, os, random, signal, sys, threading, traceback
import msgspec
from cli import main
from flows import sources

def say(**fields):
    sys.stdout.write(msgspec.json.encode(fields).decode() + "\n")
    sys.stdout.flush()

timers = []  # a kill due while the epoch commits: the child waits for it rather than exit first

def attempt(request):
    os.environ.update(request["env"])
    mode, at = request["kill"] or (None, 0)
    seen = {"items": 0, "snapshots": 0, "through": -1, "passed": None}
    def die():
        say(killed={"items": seen["items"], "snapshots": seen["snapshots"]})
        os.kill(os.getpid(), signal.SIGKILL)
    for source in (sources.RedisStreamSource, sources.FileSource):
        def build_part(self, step_id, for_part, resume_state, build=source.build_part):
            say(resume=resume_state)
            return build(self, step_id, for_part, resume_state)
        source.build_part = build_part
    for partition in (sources._StreamPartition, sources._FilePartition):
        def next_batch(self, original=partition.next_batch):
            if mode == "after" and seen["passed"] is not None and seen["snapshots"] > seen["passed"]:
                die()  # the batch that reached the event time is in a committed snapshot
            items = original(self)
            seen["items"] += len(items)
            if mode == "items" and seen["items"] >= at:  # like Flink's failing source: die abruptly, on this attempt only
                die()
            ticks = [item[1].ts for item in items if item[0] == "tick"]
            seen["through"] = max([seen["through"], *ticks])
            if mode == "after" and seen["passed"] is None and seen["through"] >= at:
                seen["passed"] = seen["snapshots"]
            return items
        def snapshot(self, original=partition.snapshot):
            if mode == "snapshot" and seen["snapshots"] + 1 >= at:  # the epoch being snapshotted never commits
                die()
            seen["snapshots"] += 1
            if mode == "commit" and seen["snapshots"] == at:  # the epoch is being written: die somewhere in that
                timers.append(threading.Timer(random.uniform(0.0, 0.01), die))
                timers[-1].start()
            return original(self)
        partition.next_batch, partition.snapshot = next_batch, snapshot
    return main(request["args"])

for line in sys.stdin:
    request = json.loads(line)
    child = os.fork()
    if child == 0:
        signal.alarm(300)  # a child that hangs dies of SIGALRM, and the test fails on its status instead of waiting forever
        code = 1
        try:
            code = attempt(request) or 0
            for timer in timers:
                timer.join()
        except SystemExit as exit:
            code = exit.code or 0
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(child, 0)
    say(status=os.waitstatus_to_exitcode(status))
"""


class Attempt(msgspec.Struct, frozen=True):
    """How one attempt went: its exit status (-9: killed), what its source resumed from, where it was when killed."""

    status: int
    resumed: dict | None
    """The source partition's resume state (`flows.sources.Resume` as JSON), None when it started afresh."""
    killed: dict | None
    """Source items it had read and snapshots it had taken when it died."""


class Zygote:
    """A warm Python process that runs each `sigma run` attempt in a forked child."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", ZYGOTE], cwd=REPOSITORY, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPOSITORY)})  # fmt: skip

    def run(self, home: Path, args: list[str], kill: tuple[str, int] | None = None) -> Attempt:
        """One attempt of `sigma ARGS` on workspace ``home``, killed as ``kill`` says (None: run to the end)."""
        self.process.stdin.write(json.dumps({"args": args, "env": {"SIGMA_HOME": str(home)}, "kill": kill}) + "\n")
        self.process.stdin.flush()
        resumed, killed = [], None
        for line in self.process.stdout:
            reply = json.loads(line)
            if "status" in reply:  # one source partition: built once, or not at all by an attempt that failed first
                assert len(resumed) <= 1, f"the source partition was built {len(resumed)} times"
                return Attempt(reply["status"], resumed[0] if resumed else None, killed)
            if "resume" in reply:
                resumed.append(reply["resume"])
            else:
                killed = reply["killed"]
        raise RuntimeError(f"the zygote died (exit status {self.process.wait()})")

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


@pytest.fixture(scope="module")
def zygote():
    warm = Zygote()
    yield warm
    warm.close()


def _attempts(zygote: Zygote, home: Path, args: list[str], kills: list[tuple[str, int]]) -> list[Attempt]:
    """One attempt killed at each of ``kills`` in turn, each resuming from the store the last one left, then one to the end."""
    log = []
    for kill in [*kills, None]:
        attempt = zygote.run(home, args, kill)
        assert attempt.status == (-signal.SIGKILL if kill else 0), f"attempt {len(log) + 1} ({kill}) ended with {attempt.status}"
        log.append(attempt)
    return log


def _items(partition, batches: int | None = None) -> list:
    """(kind, item) of a source partition's next batches (all of them when None), without the wall-clock receipt time."""
    out = []
    while batches is None or batches > 0:
        try:
            out += [(kind, item) for kind, item, _ in partition.next_batch()]
        except StopIteration:
            break
        batches = None if batches is None else batches - 1
    return out


def _jumpy(base: int) -> list[Tick]:
    """Ticks whose source time leaps ahead, then a ticker's first tick well behind it: where a clock restarted afresh misleads."""
    seconds = [("SPY", 5), ("SPY", 40), ("SPY", 70), ("SPY", 50), ("QQQ", 30), ("SPY", 64), ("QQQ", 55), ("SPY", 75), ("QQQ", 80),
               ("SPY", 130), ("QQQ", 140), ("SPY", 200)]  # fmt: skip
    return [Tick(ticker=ticker, ts=base + s * SECOND, price=100.0 + s / 100, size=1.0) for ticker, s in seconds]


BASE = 1710858600 * SECOND  # 2024-03-19 14:30 UTC, a minute inside the session


def test_a_file_source_resumed_from_any_snapshot_emits_the_uninterrupted_items(tmp_path):
    ticks = _jumpy(BASE)
    path = tmp_path / "ticks.jsonl"
    path.write_bytes(b"".join(msgspec.json.encode(tick) + b"\n" for tick in ticks))
    source = FileSource([path], batch=2, lateness=SECOND, idle=2 * SECOND)
    whole = _items(source.build_part("market", str(path), None))
    assert sum(kind == "clock" for kind, _ in whole) >= 2
    for cut in range(1, len(ticks) // 2 + 1):
        first = source.build_part("market", str(path), None)
        before = _items(first, cut)
        assert before + _items(source.build_part("market", str(path), first.snapshot())) == whole, f"resumed after batch {cut}"


@pytest.mark.parametrize("start", ["0", "$"])
def test_a_redis_source_restarted_with_or_without_a_snapshot_reads_what_the_uninterrupted_one_reads(redis_server, start):
    client = redis_server.client()
    ticks = _jumpy(BASE)

    def source(group: str, recovery: bool = True) -> RedisStreamSource:
        return RedisStreamSource(redis_server.url, ["ticks"], group=group, start=start, batch=2, lateness=SECOND, idle=2 * SECOND,
                                 recovery=recovery)  # fmt: skip

    groups = {name: source(name).build_part("market", "ticks", None) for name in ("whole", "cold", "warm")}  # "$" begins here
    late = source("late", recovery=False).build_part("market", "ticks", None)
    for tick in ticks:
        client.xadd("ticks", {"tick": msgspec.json.encode(tick)})
    client.xadd("ticks", {"eof": 1})
    whole = _items(groups["whole"])
    assert [item for kind, item in whole if kind == "tick"] == ticks

    _items(groups["cold"], 3)  # read, then killed before any snapshot: a restart with recovery on reads it all again
    assert _items(source("cold").build_part("market", "ticks", None)) == whole

    warm = groups["warm"]
    before = _items(warm, 2)
    snapshot = warm.snapshot()
    _items(warm, 2)  # read after the snapshot, then killed: read again after the restart
    assert before + _items(source("warm").build_part("market", "ticks", snapshot)) == whole

    read = _items(late, 3)  # without recovery the group's place is the only memory: a restart goes on from it
    rest = _items(source("late", recovery=False).build_part("market", "ticks", None))
    assert [item for kind, item in read + rest if kind == "tick"] == ticks


# -- random kills through the whole flow ---------------------------------------------

RUNS = [("redis", "0.5", 0), ("redis", "0", 1), ("files", "0", 2), ("files", "0.5", 3)]
"""(source, snapshot interval, seed) of each killed run: the review's 0.5 s, where most kills land before the
first snapshot commits, and a snapshot after every batch, where every kill after the first batch resumes from one."""
KILLS_PER_RUN = 5
MOST_ITEMS = 1500
"""The most source items a kill lets one attempt read: a run's three such kills stay under the replay's 8,589 ticks, and
each attempt resumes no later than where the one before it died, so every kill happens (the last, while an epoch is
written, waits for it)."""


def _schedule(seed: int) -> list[tuple[str, int]]:
    """Inside the first snapshot of a fresh store, then kills at random numbers of items or inside a resumed attempt's first
    snapshot, and last one while an attempt's first epoch is written."""
    rng = random.Random(seed)
    rest = [("snapshot", 1) if rng.random() < 0.2 else ("items", rng.randint(1, MOST_ITEMS)) for _ in range(KILLS_PER_RUN - 2)]
    # Last: an attempt reads on until its first snapshot, which may take the rest of the stream from the kills after it.
    return [("snapshot", 1), *rest, ("commit", 1)]


@pytest.mark.parametrize("source", ["redis", "files"])
def test_sigkill_at_random_points_then_resume_gives_the_uninterrupted_alerts(served, redis_server, zygote, tmp_path, source):
    home, replay, _ = served
    client = redis_server.client()

    def arguments(store: Path, interval: str) -> list[str]:
        client.flushall()
        given = ["--source", "files", "--file", str(replay)] if source == "files" else []
        if source == "redis":
            push(redis_server, tick_rows(replay))
        return ["run", "--redis-url", redis_server.url, *given, "--batch", "50", "--recovery", str(store), "--snapshot-seconds", interval]

    _attempts(zygote, home, arguments(tmp_path / "whole", "0.5"), [])
    expected = alerts(redis_server)
    assert len(expected) >= 10, "the fixture's eager model should alert several times in two sessions"
    states = state_digests(tmp_path / "whole")

    cold = warm = 0
    for run, (kind, interval, seed) in enumerate(RUNS):
        if kind != source:
            continue
        log = _attempts(zygote, home, arguments(tmp_path / f"run-{run}", interval), _schedule(seed))
        assert log[0].resumed is None and log[1].resumed is None, "killed inside its first snapshot, the first attempt left nothing"
        for kill, killed, after in zip(_schedule(seed), log, log[1:]):
            if kill[0] != "commit":  # a kill while the epoch is written may leave it unwritten
                assert killed.killed["snapshots"] == 0 or after.resumed is not None, "killed after a snapshot, it resumes from one"
            cold += after.resumed is None
            warm += after.resumed is not None
        got = alerts(redis_server)
        assert len(got) == len({alert["alert_id"] for alert in got}), f"run {run}: an alert was written twice"
        assert got == expected, f"run {run} ({kind}, {interval} s): kills {_schedule(seed)} changed the alerts"
        assert state_digests(tmp_path / f"run-{run}") == states, f"run {run}: resumed, a ticker's or the model's state differs"
    print(f"{source}: {cold} kills before the first snapshot committed, {warm} after one")
    assert cold >= 2 and warm >= 1


# -- the daily cap and the cooldown across a kill -------------------------------------

COOLDOWN = 120


@pytest.fixture(scope="module")
def capped(served, tmp_path_factory):
    """(home, {name: trained id}): the served workspace with the eager policy capped at 2 trades a day, one at a time, a 2 h
    cooldown; the same capped at 3; and a control without cap or cooldown, to show that both bind."""
    home = tmp_path_factory.mktemp("capped") / "home"
    shutil.copytree(served[0], home)
    with Workspace(home, clock=_clock) as space:
        eager = served[2]
        space.unpublish(eager, actor="test")
        models = {
            "capped": policy_copy(space, eager, "capped", max_trades_per_day=2.0, cooldown_minutes=float(COOLDOWN), max_positions=1.0),
            "free": policy_copy(space, eager, "free", max_trades_per_day=100.0, cooldown_minutes=0.0, max_positions=1.0),
            "three": policy_copy(space, eager, "three", max_trades_per_day=3.0, cooldown_minutes=float(COOLDOWN), max_positions=1.0),
        }  # fmt: skip
        for trained_id in models.values():
            space.publish(trained_id, actor="test")
    return home, models


def _ns(stamp: str) -> int:
    return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()) * SECOND


def _opens(found: list[dict]) -> list[tuple[int, str]]:
    """(bar end, ticker) of each entry, in time order."""
    return sorted((_ns(alert["timestamp"]), alert["ticker"]) for alert in found if alert["intent"] == "open")


def _soonest_reentry(found: list[dict]) -> int:
    """The shortest time between two entries of one ticker (every entry here buys)."""
    last: dict[str, int] = {}
    soonest = 10**20
    for end, ticker in _opens(found):
        if ticker in last:
            soonest = min(soonest, end - last[ticker])
        last[ticker] = end
    return soonest


def test_the_daily_cap_and_the_cooldown_hold_across_kills_between_the_second_and_third_trade(served, capped, redis_server, zygote,
                                                                                             tmp_path):  # fmt: skip
    _, replay, _ = served
    home, models = capped
    rows = tick_rows(replay)
    client = redis_server.client()

    def arguments(model: str, store: Path, interval: str) -> list[str]:
        client.flushall()
        push(redis_server, rows)
        # Batches of about two minutes of these ticks: a resume lands within one batch of where the kill aimed.
        return ["run", "--redis-url", redis_server.url, "--model", models[model], "--batch", "20", "--recovery", str(store),
                "--snapshot-seconds", interval]  # fmt: skip

    found = {}
    for name in ("capped", "free"):
        _attempts(zygote, home, arguments(name, tmp_path / name, "0.5"), [])
        found[name] = alerts(redis_server)
    days: dict[int, list[int]] = {}
    for end, _ in _opens(found["capped"]):
        days.setdefault(end // (86_400 * SECOND), []).append(end)
    assert [len(ends) for ends in days.values()] == [2, 2], "two trades a day: the cap"
    first, second = next(iter(days.values()))
    cooled = second + COOLDOWN * MINUTE
    free = [end for end, _ in _opens(found["free"]) if end // (86_400 * SECOND) == second // (86_400 * SECOND)]
    assert len(free) > 2, "without the cap more trades come that day: it binds"
    assert _soonest_reentry(found["capped"]) >= COOLDOWN * MINUTE, "no ticker enters again inside its cooldown"
    assert _soonest_reentry(found["free"]) < COOLDOWN * MINUTE, "without the cooldown one does: it binds"

    # Killed after the second trade of the day inside both trades' cooldowns, then again once the first trade's cooldown
    # is over but the second's is not: there only the day's count keeps the first ticker out.
    marks = [second + 3 * MINUTE, first + (COOLDOWN + 1) * MINUTE]
    assert marks[1] < cooled
    log = _attempts(zygote, home, arguments("capped", tmp_path / "killed", "0"), [("after", mark) for mark in marks])
    for mark, attempt in zip(marks, log[1:]):
        resumed_at = attempt.resumed["clock"]["latest"]  # the latest event time in the snapshot it resumed from
        assert mark <= resumed_at < cooled, "resumed after the second trade, inside its cooldown"
    assert alerts(redis_server) == found["capped"]


def test_a_third_trade_the_cap_allows_still_comes_after_a_kill_between_the_second_and_third(served, capped, redis_server, zygote,
                                                                                               tmp_path):  # fmt: skip
    """Case 24, the other side: a resumed flow counts the day's trades from its snapshot, so it neither forgets them nor
    refuses the one the cap still allows."""
    _, replay, _ = served
    home, models = capped
    rows = tick_rows(replay)
    client = redis_server.client()

    def arguments(store: Path, interval: str) -> list[str]:
        client.flushall()
        push(redis_server, rows)
        return ["run", "--redis-url", redis_server.url, "--model", models["three"], "--batch", "20", "--recovery", str(store),
                "--snapshot-seconds", interval]  # fmt: skip

    _attempts(zygote, home, arguments(tmp_path / "golden", "0.5"), [])
    golden = alerts(redis_server)
    days: dict[int, list[int]] = {}
    for end, _ in _opens(golden):
        days.setdefault(end // (86_400 * SECOND), []).append(end)
    assert max(len(ends) for ends in days.values()) == 3, "the cap of three binds on some day"
    second, third = next(ends for ends in days.values() if len(ends) == 3)[1:]
    assert third - second > 2 * MINUTE, "room for a kill between them"
    log = _attempts(zygote, home, arguments(tmp_path / "killed", "0"), [("after", second + MINUTE)])
    assert second + MINUTE <= log[1].resumed["clock"]["latest"] < third, "resumed between the second and the third trade"
    assert alerts(redis_server) == golden  # the third trade comes, and no fourth
