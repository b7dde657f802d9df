"""The live dataflow end to end, against a real redis-server: replays, bad data, workers, kills."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import pyarrow.parquet as pq
import pytest
from bytewax.testing import run_main

from engine.errors import ConfigError
from engine.schemas import Tick
from flows.live import TICKS, flow
from flows.recovery import STAMP, prepare
from flows.redis_server import free_port
from flows.sinks import ALERTS, DEADLETTER, DEADLETTER_COUNTS, HEALTH, model_stream
from tests.flows.conftest import REPOSITORY, state_digests

TIMES = ("received_at", "emitted_at")


def alerts(server) -> list[dict]:
    """The combined stream's alerts by id, without the wall-clock fields (they differ between runs).

    Tickers are independent keys, so their alerts may interleave differently from run to run.
    """
    found = [{k: v for k, v in json.loads(fields[b"alert"]).items() if k not in TIMES} for _, fields in server.client().xrange(ALERTS)]
    return sorted(found, key=lambda alert: alert["alert_id"])


def ids(server) -> list[str]:
    return [alert["alert_id"] for alert in alerts(server)]


def replay_file(home: Path, server, path: Path, **options) -> None:
    run_main(flow(home, server.url, source="files", files=[path], **options))


def tick_rows(path: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if v is not None} for row in pq.read_table(path).to_pylist()]


def push(server, rows: list, *, key: str = TICKS) -> None:
    """Rows (dicts, or raw bytes) onto the tick stream, then the end-of-stream marker."""
    client = server.client()
    pipe = client.pipeline(transaction=False)
    for row in rows:
        pipe.xadd(key, {"tick": row if isinstance(row, bytes) else json.dumps(row)})
    pipe.xadd(key, {"eof": 1})
    pipe.execute()


def replay_stream(home: Path, server, rows: list, **options) -> None:
    push(server, rows)
    run_main(flow(home, server.url, **options))


def test_a_replay_alerts_each_id_once_on_the_model_and_combined_streams(served, redis_server):
    home, replay, trained_id = served
    replay_file(home, redis_server, replay)
    first = alerts(redis_server)
    assert len(first) >= 10, "the fixture's eager model should alert several times in two sessions"
    assert len(set(ids(redis_server))) == len(first)
    per_model = [json.loads(f[b"alert"])["alert_id"] for _, f in redis_server.client().xrange(model_stream(trained_id))]
    assert sorted(per_model) == ids(redis_server)
    assert {a["intent"] for a in first} == {"open", "close"}
    option = first[0]
    assert option["instrument"] == "option" and option["volatility_source"] == "realised" and option["premium"] > 0
    assert option["strike"] == round(option["strike"]), "strikes sit on the $1 grid at these prices"
    assert option["lineage"]["artifact_sha"] and option["lineage"]["pack_sha"]

    replay_file(home, redis_server, replay)  # the same input again: nothing new is written
    assert alerts(redis_server) == first


def test_a_redis_stream_gives_the_alerts_of_the_file_replay(served, redis_server):
    home, replay, _ = served
    replay_file(home, redis_server, replay)
    expected = alerts(redis_server)
    redis_server.client().flushall()
    replay_stream(home, redis_server, tick_rows(replay), batch=97)
    assert alerts(redis_server) == expected


def _bad_ticks(rows: list[dict]) -> list[tuple[int, object, str]]:
    """(position to insert before, payload, expected reason): one of each bad input, spread through the replay."""
    spy = [i for i, row in enumerate(rows) if row["ticker"] == "SPY"]
    at = spy[len(spy) // 2]
    good = rows[at]
    stamp = good["ts"]
    return [
        (spy[100], b"{not json", "malformed"),
        (spy[110], json.dumps({**good, "price": ""}).encode(), "malformed"),  # case 9: empty field
        (spy[115], json.dumps({**good, "size": -5}).encode(), "malformed"),  # case 10: negative size fails the schema
        (spy[120], json.dumps({k: v for k, v in good.items() if k != "ts"}).encode(), "malformed"),
        (at, {**good, "ts": stamp + 1, "price": 0.0}, "bad_price"),  # case 7
        (at, {**good, "ts": stamp + 2, "price": -1.0}, "bad_price"),  # case 8 (an equity)
        (at, {**good, "ts": stamp + 3, "size": 0.0}, "bad_size"),  # case 10: a trade of no size
        (at, {"ticker": "SPY", "ts": stamp + 4, "bid": good["ask"] + 0.05, "ask": good["ask"]}, "crossed_quote"),  # case 12
        (at + 1, good, "duplicate"),  # case 1: the same tick twice
        (at + 2, {**good, "ts": stamp + 5, "price": good["price"] * 5}, "outlier"),  # case 13: one bad print
        (at + 3, {**good, "ts": stamp - 30 * 60 * 1_000_000_000}, "late"),  # case 4: its bar closed half an hour ago
        (at + 4, {**good, "ticker": "ZZZZ"}, "unknown_ticker"),  # case 23
        (at + 5, {**good, "ts": 10**30}, "malformed"),  # past any calendar: refused by the schema, not an OverflowError
        (at + 6, {**good, "ts": 3_976_000_000 * 1_000_000_000}, "future"),  # case 22 on the data clock: 2096, event time stays
        (at + 7, {"ticker": "SPY", "ts": stamp + 6, "bid": 0.0, "ask": good["ask"]}, "bad_price"),  # case 7: a zero bid
    ]


def test_bad_ticks_go_to_the_dead_letter_stream_and_change_no_alert(served, redis_server):
    home, replay, _ = served
    rows = tick_rows(replay)
    replay_file(home, redis_server, replay)
    expected = alerts(redis_server)
    redis_server.client().flushall()

    bad = _bad_ticks(rows)
    mixed: list = []
    inserts = sorted(bad, key=lambda b: b[0])
    position = 0
    for index, row in enumerate(rows):
        while position < len(inserts) and inserts[position][0] == index:
            mixed.append(inserts[position][1])
            position += 1
        mixed.append(row)
    replay_stream(home, redis_server, mixed)

    assert alerts(redis_server) == expected
    client = redis_server.client()
    letters = client.xrange(DEADLETTER)
    reasons = sorted(fields[b"reason"].decode() for _, fields in letters)
    assert reasons == sorted(reason for _, _, reason in bad)
    raw = {fields[b"payload"] for _, fields in letters}
    assert b"{not json" in raw, "the raw payload is kept"
    counts = {key.decode(): int(value) for key, value in client.hgetall(DEADLETTER_COUNTS).items()}
    assert counts["SPY:malformed"] == 4 and counts[":malformed"] == 1 and counts["ZZZZ:unknown_ticker"] == 1
    assert b"ZZZZ" not in client.hgetall(HEALTH), "case 23: an unknown ticker gets no state"


def test_ticks_out_of_order_within_the_lateness_make_the_sorted_bars(served, redis_server):
    home, replay, _ = served
    rows = tick_rows(replay)
    replay_file(home, redis_server, replay)
    expected = alerts(redis_server)
    redis_server.client().flushall()
    rng = np.random.default_rng(5)
    # Case 3: each tick arrives up to 200 ms late (the lateness is 1 s); the order within that is shuffled.
    arrival = np.array([row["ts"] for row in rows]) + rng.integers(0, 200_000_000, len(rows))
    shuffled = [rows[i] for i in np.argsort(arrival, kind="stable")]
    assert shuffled != rows
    replay_stream(home, redis_server, shuffled)
    assert alerts(redis_server) == expected


def test_the_future_is_refused_on_the_wall_clock(served, redis_server):
    home, replay, _ = served
    row = tick_rows(replay)[0]
    import time

    future = {**row, "ts": time.time_ns() + 3600 * 1_000_000_000}  # case 22: an hour ahead of the wall clock
    replay_stream(home, redis_server, [future], clock="wall")
    [(_, letter)] = redis_server.client().xrange(DEADLETTER)
    assert letter[b"reason"] == b"future" and b"ahead of the wall clock" in letter[b"detail"]


def _sigma(*args: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPOSITORY, env={**os.environ, **(env or {})}, **kwargs)


def test_two_workers_and_two_processes_give_the_alerts_of_one(served, redis_server, monkeypatch, tmp_path):
    home, replay, _ = served
    env = {"SIGMA_HOME": str(home)}
    digests = {}
    for workers in ("1", "2", "4"):  # case 36: -w1 against -w2 and -w4, alerts and each ticker's and model's state
        redis_server.client().flushall()
        assert _sigma("run", "--source", "files", "--file", str(replay), "--redis-url", redis_server.url, "-w", workers,
                      "--recovery", str(tmp_path / workers), env=env).wait(300) == 0  # fmt: skip
        if workers == "1":
            expected = alerts(redis_server)
        assert alerts(redis_server) == expected
        digests[workers] = state_digests(tmp_path / workers)
    assert len(digests["1"]) == 2 + 1 + 2, "the ticker and conflict states of SPY and QQQ, the model's policy state"
    for workers in ("2", "4"):  # each ticker's state and the model's, fed by every ticker's worker, are those of one worker
        assert digests[workers] == digests["1"]

    redis_server.client().flushall()
    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    cluster = [_sigma("run", "--source", "files", "--file", str(replay), "--redis-url", redis_server.url,
                      "-i", str(i), "-a", addresses, env=env) for i in (0, 1)]  # fmt: skip
    assert [process.wait(120) for process in cluster] == [0, 0]
    assert alerts(redis_server) == expected


KILLER = """
import os, signal, sys
from flows import sources
after = int(os.environ["SIGMA_TEST_KILL_AFTER"])
emitted = 0
original = sources._StreamPartition.next_batch
def next_batch(self):
    global emitted
    items = original(self)
    emitted += len(items)
    if emitted >= after:  # like Flink's failing source: die abruptly, mid-stream, on this attempt only
        os.kill(os.getpid(), signal.SIGKILL)
    return items
sources._StreamPartition.next_batch = next_batch
join = sources._StreamPartition._join
def _join(self, resume):
    print("resuming after", resume, flush=True)
    join(self, resume)
sources._StreamPartition._join = _join
from cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_recovery_store_without_a_layout_stamp_is_refused(tmp_path):
    store = tmp_path / "store"
    prepare(store, 2)
    prepare(store, 2)  # the same layout: accepted
    (store / STAMP).unlink()
    (store / "sigma-code.json").write_text(json.dumps({"code": "0" * 64, "partitions": 2}))  # how stores were stamped before
    with pytest.raises(ConfigError, match="predates layout stamps"):
        prepare(store, 2)
    (store / "sigma-code.json").unlink()
    with pytest.raises(ConfigError, match="without a Sigma layout stamp"):
        prepare(store, 2)


def test_ticks_decode_with_msgspec_as_the_flow_reads_them(served):
    _, replay, _ = served
    row = tick_rows(replay)[0]
    assert msgspec.json.decode(json.dumps(row), type=Tick).ts == row["ts"]


def test_sigma_run_says_what_it_serves_and_what_it_did(served, redis_server, tmp_path):
    home, replay, trained_id = served
    env = {"SIGMA_HOME": str(home)}
    done = _sigma("run", "--source", "files", "--file", str(replay), "--redis-url", redis_server.url, env=env,
                  stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    start, end = err.strip().splitlines()[0], err.strip().splitlines()[-1]
    assert start.startswith(f"sigma run: 1 model(s) ({trained_id}) on ticks from {replay}") and redis_server.url in start
    rows = len(tick_rows(replay))
    alerted = redis_server.client().xlen(ALERTS)
    assert f"read {rows:,} ticks and 0 bars" in end and f"{alerted:,} alerts emitted" in end

    wrong = tmp_path / "wrong.csv"  # a header that names none of the tick fields: every row is refused
    wrong.write_text("symbol,time,last\n" + "".join(f"SPY,{i},1.0\n" for i in range(50)))
    done = _sigma("run", "--source", "files", "--file", str(wrong), "--redis-url", redis_server.url, env=env,
                  stderr=subprocess.PIPE, text=True)  # fmt: skip
    _, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert "0 alerts emitted; 50 messages dead-lettered (malformed 50); see {sigma}:deadletter" in err.strip().splitlines()[-1]


def test_distinct_trades_sharing_a_timestamp_are_all_kept(served, tmp_path):
    """Case 2: many trades share a millisecond (real SPY ticks do); duplicate detection must not key on the time alone."""
    home, replay, _ = served
    rows = tick_rows(replay)[:3000]
    twins = {i: {**rows[i], "size": rows[i]["size"] + 1.0, "trade_id": f"twin-{i}"} for i in range(0, 3000, 7) if "price" in rows[i]}

    def bars(feed: list[dict], name: str) -> dict[tuple[str, int], float]:
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in feed))
        scores = tmp_path / f"{name}.scores.jsonl"
        run_main(flow(home, None, source="files", files=[path], alert_file=tmp_path / f"{name}.alerts.jsonl", scores_file=scores))
        letters = tmp_path / f"{name}.alerts.deadletter.jsonl"
        assert not letters.exists() or not letters.read_text().strip(), letters.read_text()[:300]
        scored = [msgspec.json.decode(line) for line in scores.read_bytes().splitlines()]
        return {(row[1]["ticker"], row[1]["end"]): row[1]["volume"] for row in scored}

    alone = bars(rows, "alone")
    together = bars([row for i, row in enumerate(rows) for row in ([row, twins[i]] if i in twins else [row])], "together")
    added: dict[tuple[str, int], float] = {}
    for i, twin in twins.items():  # each twin's size lands in the bar its timestamp falls in
        key = next(k for k in alone if k[0] == twin["ticker"] and k[1] > twin["ts"] and k[1] - 60_000_000_000 <= twin["ts"])
        added[key] = added.get(key, 0.0) + twin["size"]
    assert added and all(together[key] == pytest.approx(alone[key] + added.get(key, 0.0)) for key in alone)


def test_a_paced_replay_alerts_as_the_full_speed_one(served, tmp_path):
    """Case 25: cooldowns and daily caps run on event time, so pacing a replay (here 20,000x) changes no alert."""
    home, replay, _ = served

    def replayed(name: str, speed: float | None) -> list[dict]:
        path = tmp_path / f"{name}.jsonl"
        run_main(flow(home, None, source="files", files=[replay], alert_file=path, speed=speed))
        found = [{k: v for k, v in json.loads(line).items() if k not in TIMES} for line in path.read_text().splitlines()]
        return sorted(found, key=lambda alert: alert["alert_id"])

    fast = replayed("fast", None)
    assert fast and replayed("paced", 20_000.0) == fast


def test_stored_bars_export_as_a_feed_the_flow_replays(served, tmp_path, monkeypatch, capsys):
    from cli import main

    home = served[0]
    monkeypatch.setenv("SIGMA_HOME", str(home))
    for suffix in (".parquet", ".jsonl"):
        path = tmp_path / f"feed{suffix}"
        assert main(["data", "export", "SPY,QQQ", "--cadence", "1m", "--from", "2024-03-15", "--output", str(path)]) == 0
        assert f"--file {path} --kind bars" in capsys.readouterr().out
        alerts = tmp_path / f"alerts{suffix}.jsonl"
        run_main(flow(home, None, source="files", files=[path], kind="bars", alert_file=alerts))
        letters = alerts.with_suffix(".deadletter.jsonl")
        assert not letters.exists() or not letters.read_text().strip(), "every exported bar is a bar the flow takes"
    rows = [json.loads(line) for line in (tmp_path / "feed.jsonl").read_text().splitlines()]
    assert {row["ticker"] for row in rows} == {"SPY", "QQQ"} and rows == sorted(rows, key=lambda row: (row["end"], row["ticker"]))
    assert main(["data", "export", "SPY", "--output", str(tmp_path / "feed.txt")]) == 2


def test_option_alerts_name_the_expiry_and_strike_their_policy_chose(served, tmp_path):
    """A sweep row's dte_target and strike_selection reach the live alerts: the contract the backtest priced."""
    import shutil

    from engine.alerts import nanoseconds
    from engine.options import contract_expiry
    from engine.workspace import Workspace
    from tests.flows.conftest import _clock, policy_copy

    home, replay, eager = served
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    with Workspace(copy, clock=_clock) as space:
        dated = policy_copy(space, eager, "dated", expiry_sessions=10.0, strike_score=-0.35)  # a 36-delta option: out of the money
    found = {}
    for name in (eager, dated):
        path = tmp_path / f"{name}.jsonl"
        run_main(flow(copy, None, source="files", files=[replay], alert_file=path, models=[name], paper=True))
        found[name] = [json.loads(line) for line in path.read_text().splitlines() if json.loads(line)["intent"] == "open"]
    assert found[eager] and len(found[dated]) == len(found[eager])
    further = []
    def day(text: str) -> int:
        return int((np.datetime64(text[:10]) - np.datetime64("1970-01-01")).astype(int))

    for plain, chosen in zip(found[eager], found[dated], strict=True):
        end = nanoseconds(datetime.fromisoformat(plain["timestamp"]))
        assert day(plain["expiration"]) == contract_expiry(_clock_of(), end, 0)[0], "the model's own default: 0DTE"
        assert day(chosen["expiration"]) == contract_expiry(_clock_of(), end, 10)[0] > day(plain["expiration"])
        further.append((chosen["strike"] - plain["strike"]) * (1 if chosen["option_type"] == "call" else -1))
    assert min(further) >= 0 < max(further), "further out of the money (or on the same listed strike)"


def _clock_of():
    from engine.calendar import CALENDARS, ExchangeClock

    return ExchangeClock(CALENDARS["us_equities"])


def test_ctrl_c_stops_a_one_worker_run_as_an_interruption(served, redis_server):
    """Ctrl-C of `sigma run` on one worker (Bytewax turns the signal into its runtime error there) is an interruption,
    exit 130, with the run's summary; never an internal error."""
    home, _, _ = served
    run = _sigma("run", "--redis-url", redis_server.url, env={"SIGMA_HOME": str(home)}, stderr=subprocess.PIPE, text=True)
    client = redis_server.client()
    deadline = time.monotonic() + 300  # bounds a broken start only
    while not (client.exists(TICKS) and client.xinfo_groups(TICKS)):  # the flow reads the stream through its group
        assert run.poll() is None and time.monotonic() < deadline, "the flow did not start"
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err
    assert "sigma: error: interrupted" in err and "internal error" not in err and "sigma run: " in err


def test_ctrl_c_is_told_wherever_in_the_run_it_lands():
    """Bytewax gives Ctrl-C back as its runtime error: "signal received" from its own loop, or with the KeyboardInterrupt
    as the cause from a step's Python code (the CI run that found it: inside the source's next_batch)."""
    from bytewax.errors import BytewaxRuntimeError

    from cli.live import _interrupted

    in_a_step = BytewaxRuntimeError('error calling `StatefulSourcePartition.next_batch` in step "sigma.market"')
    in_a_step.__cause__ = KeyboardInterrupt()
    assert _interrupted(in_a_step) and _interrupted(BytewaxRuntimeError("signal received"))
    broken = BytewaxRuntimeError('error calling `StatefulSourcePartition.next_batch` in step "sigma.market"')
    broken.__cause__ = ValueError("a defect")
    assert not _interrupted(broken)
