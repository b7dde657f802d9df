"""RELIABILITY.md §4.1 cases sent through a running flow: bar feeds, halts, conflicts, publishing mid-run, /healthz."""

from __future__ import annotations

import json
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import msgspec
from bytewax.testing import run_main

from engine.store import load_bars
from engine.workspace import Workspace
from flows.live import TICKS, flow
from flows.redis_server import free_port
from flows.sinks import DEADLETTER, HEALTH
from flows.steps import Status
from tests.flows.conftest import policy_copy
from tests.flows.test_live import _sigma, alerts, push, tick_rows

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
NOW = datetime(2024, 3, 19, 14, 31, tzinfo=UTC)


def _own_home(served, tmp_path: Path) -> Path:
    """A copy of the served workspace that a test may publish into."""
    home = tmp_path / "home"
    shutil.copytree(served[0], home)
    return home


def _bar_rows(home: Path, count: int) -> list[dict]:
    """The last ``count`` stored one-minute bars of SPY and QQQ as a bar feed, in event-time order."""
    rows = []
    for ticker in ("SPY", "QQQ"):
        bars, _ = load_bars(home, ticker, "1m")
        for i in range(len(bars) - count, len(bars)):
            rows.append({"ticker": ticker, "start": int(bars.start[i]), "end": int(bars.end[i]), "open": float(bars.open[i]),
                         "high": float(bars.high[i]), "low": float(bars.low[i]), "close": float(bars.close[i]),
                         "volume": float(bars.volume[i])})  # fmt: skip
    return sorted(rows, key=lambda row: (row["end"], row["ticker"]))


def _replay_bars(home: Path, server, rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_main(flow(home, server.url, source="files", files=[path], kind="bars"))


def _health(server) -> dict[str, Status]:
    return {ticker.decode(): msgspec.json.decode(value, type=Status) for ticker, value in server.client().hgetall(HEALTH).items()}


def _dead_letters(server) -> list[tuple[str, dict]]:
    return [(fields[b"reason"].decode(), json.loads(fields[b"payload"])) for _, fields in server.client().xrange(DEADLETTER)]


def test_a_bar_feed_drops_reordered_and_revised_bars_and_repairs_ohlc(served, redis_server, tmp_path):
    """Cases 5, 6 and 11: a bar before the last one and a second version of a bar are refused, first wins; OHLC is repaired."""
    home = served[0]
    rows = _bar_rows(home, 390)
    _replay_bars(home, redis_server, rows, tmp_path / "clean.jsonl")
    expected = alerts(redis_server)
    assert len(expected) >= 4, "the eager model alerts within a session of bars"
    clean = _health(redis_server)

    redis_server.client().flushall()
    spy = [i for i, row in enumerate(rows) if row["ticker"] == "SPY"]
    stale = dict(rows[spy[100]])  # case 5: an old bar arrives again after later ones
    revised = {**rows[spy[200]], "close": rows[spy[200]]["close"] * 1.01, "volume": 1e9}  # case 6: same interval, new values
    faulty = list(rows)
    faulty.insert(spy[200] + 1, revised)
    faulty.insert(spy[150], stale)
    _replay_bars(home, redis_server, faulty, tmp_path / "faulty.jsonl")
    assert alerts(redis_server) == expected, "the refused bars changed no decision"
    letters = _dead_letters(redis_server)
    assert [(reason, payload["start"]) for reason, payload in letters] == [
        ("out_of_order_bar", stale["start"]), ("duplicate_bar", revised["start"])]  # fmt: skip
    assert letters[1][1]["volume"] == 1e9, "the dead letter keeps the refused revision as it came"
    health = _health(redis_server)
    assert health["SPY"].bars == clean["SPY"].bars, "no bar counted twice"
    assert health["SPY"].refused == {"out_of_order_bar": 1, "duplicate_bar": 1}

    redis_server.client().flushall()
    broken = [dict(row) for row in rows]
    bad = broken[spy[300]]
    bad["high"] = min(bad["open"], bad["close"]) - 0.01  # case 11: a high below the body, as in Yahoo's SPY 2015-03-05
    _replay_bars(home, redis_server, broken, tmp_path / "broken.jsonl")
    health = _health(redis_server)
    assert health["SPY"].refused == {"ohlc_repaired": 1} and health["SPY"].bars == clean["SPY"].bars, "repaired and kept, counted"
    assert not _dead_letters(redis_server)


def _run_stream(home: Path, server, **options) -> threading.Thread:
    thread = threading.Thread(target=lambda: run_main(flow(home, server.url, **options)), daemon=True)
    thread.start()
    return thread


def _wait(condition, seconds: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_halted_ticker_closes_its_bar_by_the_clock_fabricates_nothing_and_resumes(served, redis_server):
    """Cases 16 and 17: SPY falls silent for 20 minutes mid-session while QQQ trades on."""
    home, replay, _ = served
    rows = tick_rows(replay)
    first = rows[0]["ts"] - rows[0]["ts"] % MINUTE
    halt, resume = first + 60 * MINUTE, first + 80 * MINUTE
    before = [row for row in rows if row["ts"] < halt]
    silent = [row for row in rows if halt <= row["ts"] < resume and row["ticker"] == "QQQ"]
    after = [row for row in rows if row["ts"] >= resume]
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for row in before + silent:
        pipe.xadd(TICKS, {"tick": json.dumps(row)})
    pipe.execute()
    thread = _run_stream(home, redis_server, lateness_ms=0)
    last_spy = max(row["ts"] for row in before if row["ticker"] == "SPY")
    spy_bar_end = last_spy - last_spy % MINUTE + MINUTE
    # Only QQQ's time moves on, yet SPY's last bar before the halt closes: the source's clock closed it.
    _wait(lambda: "SPY" in _health(redis_server) and _health(redis_server)["SPY"].last_bar_end == spy_bar_end, what="the clock")
    _wait(lambda: _health(redis_server)["QQQ"].last_bar_end >= resume - MINUTE, what="QQQ through the halt")
    spy = _health(redis_server)["SPY"]
    assert spy.last_bar_end == spy_bar_end and spy.last_tick == last_spy, "no SPY bar fabricated during the halt"
    halted_alerts = [a for a in alerts(redis_server) if a["ticker"] == "SPY" and a["timestamp"] > _iso(spy_bar_end)]
    assert not halted_alerts, "no alert on a silent ticker"
    push(redis_server, after)  # SPY trades again, then the end of the stream
    thread.join(120)
    assert not thread.is_alive()
    spy = _health(redis_server)["SPY"]
    minutes = sorted({row["ts"] // MINUTE for row in before + after if row["ticker"] == "SPY"})
    day = 1440
    breaks = sum(b - a > 1 and a // day == b // day for a, b in zip(minutes, minutes[1:]))
    assert (spy.bars, spy.gaps) == (len(minutes), breaks), "a bar for each minute that traded, the halt among the gaps"
    assert halt // MINUTE - 1 in minutes and resume // MINUTE in minutes, "the halt is a gap of its own"
    assert any(a["ticker"] == "SPY" and a["timestamp"] > _iso(resume) for a in alerts(redis_server)), "SPY alerts again"


def test_a_trading_ticker_closes_its_own_bar_and_the_clock_closes_a_silent_ones_idle_later(served, redis_server):
    """A minute's end is not one burst: QQQ's next tick closes QQQ's bar; SPY's waits for SPY, or for the clock ``idle`` later."""
    home, replay, _ = served
    rows = tick_rows(replay)
    traded: dict[int, set[str]] = {}
    for row in rows:
        traded.setdefault(row["ts"] // MINUTE, set()).add(row["ticker"])
    first = min(m for m, tickers in traded.items() if tickers == {"SPY", "QQQ"}) * MINUTE  # a minute both trade in
    minute = [row for row in rows if row["ts"] < first + MINUTE]
    last_qqq = [row for row in minute if row["ticker"] == "QQQ"][-1]

    def qqq(at: int) -> dict:
        return {**{k: v for k, v in last_qqq.items() if k != "trade_id"}, "ts": at}

    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for row in minute + [qqq(first + MINUTE + SECOND)]:  # QQQ trades on; SPY stays silent
        pipe.xadd(TICKS, {"tick": json.dumps(row)})
    pipe.execute()
    thread = _run_stream(home, redis_server, lateness_ms=0, idle_ms=5000)
    _wait(lambda: _bar_end(redis_server, "QQQ") == first + MINUTE, what="QQQ's own tick to close its bar")
    assert _bar_end(redis_server, "SPY") < first + MINUTE, "SPY's bar waits: it was silent for less than the idle time"
    client.xadd(TICKS, {"tick": json.dumps(qqq(first + MINUTE + 6 * SECOND))})  # the source's time passes SPY's end + idle
    _wait(lambda: _bar_end(redis_server, "SPY") == first + MINUTE, what="the clock to close SPY's bar")
    push(redis_server, [])
    thread.join(120)
    assert not thread.is_alive()


def _bar_end(server, ticker: str) -> int:
    status = _health(server).get(ticker)
    return -1 if status is None else status.last_bar_end


def _iso(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat().replace("+00:00", "Z")


def _publish_copy(home: Path, trained_id: str, suffix: str, **parameters: float) -> str:
    with Workspace(home, clock=lambda: NOW) as space:
        copy = policy_copy(space, trained_id, suffix, **parameters)
        space.publish(copy, actor="test")
    return copy


def test_two_models_signalling_one_ticker_at_once_are_resolved_by_the_rule(served, redis_server, tmp_path):
    home = _own_home(served, tmp_path)
    first, replay = served[2], served[1]
    second = _publish_copy(home, first, "twin", threshold=0.35)
    order = [second, first]
    run_main(flow(home, redis_server.url, source="files", files=[replay], conflict="first-wins", order=order))
    found = alerts(redis_server)
    entries: dict[tuple[str, str], list[dict]] = {}
    for alert in found:
        if alert["intent"] == "open":
            entries.setdefault((alert["ticker"], alert["timestamp"]), []).append(alert)
    assert entries and all(len(group) == 1 for group in entries.values()), "one entry per ticker and bar close"
    contested = [group[0] for group in entries.values() if group[0]["resolution"]]
    assert contested, "the two models signalled together at least once"
    for alert in contested:
        assert alert["model_id"] == second and alert["resolution"].startswith("first-wins among ")
        assert first in alert["resolution"]
    closes = [a for a in found if a["intent"] == "close"]
    opened = {(a["model_id"], a["ticker"]) for a in found if a["intent"] == "open"}
    assert all((a["model_id"], a["ticker"]) in opened for a in closes), "no close of a position the trader never opened"


def test_a_model_published_while_the_flow_runs_alerts_without_a_restart(served, redis_server, tmp_path):
    home = _own_home(served, tmp_path)
    trained_id, replay = served[2], served[1]
    rows = tick_rows(replay)
    middle = rows[len(rows) // 2]["ts"]
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for row in rows:
        if row["ts"] < middle:
            pipe.xadd(TICKS, {"tick": json.dumps(row)})
    last = pipe.execute()[-1]
    thread = _run_stream(home, redis_server, poll_seconds=0.05)
    _wait(lambda: any(group["last-delivered-id"] == last for group in client.xinfo_groups(TICKS)), what="the first half read")
    _wait(lambda: client.xlen(DEADLETTER) == 0 and len(alerts(redis_server)) >= 4, what="the first model's alerts")
    newcomer = _publish_copy(home, trained_id, "late", threshold=0.35)
    with Workspace(home, clock=lambda: NOW) as space:
        space.kill(trained_id, True, actor="test")
    time.sleep(0.3)  # the registry polls every 0.05 s of wall time, on the next batch
    push(redis_server, [row for row in rows if row["ts"] >= middle])
    thread.join(120)
    assert not thread.is_alive()
    found = alerts(redis_server)
    late = [a for a in found if a["model_id"] == newcomer]
    assert late and all(a["timestamp"] >= _iso(middle - MINUTE) for a in late), "the new model alerts on what came after it"
    killed = [a for a in found if a["model_id"] == trained_id and a["timestamp"] > _iso(middle + MINUTE)]
    assert all(a["intent"] == "close" for a in killed), "a killed model only closes positions"


def test_healthz_answers_over_http(served, redis_server):
    home, replay, _ = served
    run_main(flow(home, redis_server.url, source="files", files=[replay]))
    port = free_port()
    server = _sigma("health", "--serve", str(port), "--stale-seconds", "1e12", "--redis-url", redis_server.url,
                    env={"SIGMA_HOME": str(home)})  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/healthz"
        _wait(lambda: _get(url) is not None, 30, "the health server")
        status, body = _get(url)
        assert status == 200 and body["healthy"] and body["redis"] == "ok"
        assert [t["ticker"] for t in body["tickers"]] == ["QQQ", "SPY"]
        redis_server.stop()
        status, body = _get(url)
        assert status == 503 and body["redis"].startswith("unreachable")
    finally:
        server.terminate()
        server.wait(10)


def _get(url: str) -> tuple[int, dict] | None:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
    except OSError:
        return None



def test_inputs_far_beyond_the_training_range_score_within_bounds_and_the_same_every_run(served, redis_server, tmp_path):
    """Case 35: SPY's prices jump tenfold mid-feed; the trees' scores stay probabilities, reproducible bit for bit."""
    home = served[0]
    rows = _bar_rows(home, 390)
    spy = [row for row in rows if row["ticker"] == "SPY"]
    for row in spy[200:]:
        row.update({name: row[name] * 10 for name in ("open", "high", "low", "close")})
    _replay_bars(home, redis_server, rows, tmp_path / "jump.jsonl")
    first = alerts(redis_server)
    jump = _iso(spy[200]["end"])
    assert any(a["ticker"] == "SPY" and a["timestamp"] > jump for a in first), "the model still scores SPY after the jump"
    assert all(0.0 <= a["confidence"] <= 1.0 for a in first)
    redis_server.client().flushall()
    _replay_bars(home, redis_server, rows, tmp_path / "again.jsonl")
    assert alerts(redis_server) == first, "the same input, the same scores to the last bit"


def test_a_redis_restart_without_persistence_rejoins_the_recreated_stream_and_reports_the_gap(served, redis_server, capfd):
    """Case 29: stream and group vanish with the restart; the source recreates its group, says from where the gap runs,
    and goes on with what the producer writes afterwards."""
    from flows.redis_server import RedisServer

    home, replay, _ = served
    rows = tick_rows(replay)
    half = len(rows) // 2
    client = redis_server.client()
    pipe = client.pipeline(transaction=False)
    for row in rows[:half]:
        pipe.xadd(TICKS, {"tick": json.dumps(row)})
    pipe.execute()
    last = client.xrevrange(TICKS, count=1)[0][0]
    thread = _run_stream(home, redis_server)

    def read_through() -> bool:
        groups = client.xinfo_groups(TICKS)
        return bool(groups) and groups[0]["last-delivered-id"] == last

    _wait(read_through, 300, "the first half to be read")
    redis_server.stop()  # killed: without persistence, stream, group and alerts are gone
    again = RedisServer(redis_server.folder)
    again.port, again.url = redis_server.port, redis_server.url
    again.start()
    try:
        push(again, rows[half:])  # the producer writes on into a new stream, then ends it
        thread.join(300)
        assert not thread.is_alive(), "the flow went on after the restart and ended with the stream"
        err = capfd.readouterr().err
        assert f"consumer group sigma vanished after entry {last.decode()}" in err and "lost to this flow" in err
        after = _health(again)
        assert after and max(status.last_bar_end for status in after.values()) >= rows[-1]["ts"] - MINUTE, "the second half was read"
    finally:
        again.stop()


def test_a_running_flow_rides_out_a_redis_outage_with_bounded_backoff_and_writes_every_alert_once(served, tmp_path, capfd,
                                                                                                    monkeypatch):  # fmt: skip
    """Case 31 in a running flow: Redis is away when the flow starts writing; the sinks buffer, retry with a growing and
    bounded backoff and say so; Redis comes back after several retries; every alert is written, once."""
    from flows import sinks
    from flows.redis_server import RedisServer

    home, replay, _ = served
    up = RedisServer(tmp_path / "up").start()
    try:
        run_main(flow(home, up.url, source="files", files=[replay]))
        expected = alerts(up)
    finally:
        up.stop()
    assert expected

    away = RedisServer(tmp_path / "away")  # not started yet
    failures = threading.Semaphore(0)
    flush = sinks._Writer.flush

    def counted(self) -> None:
        flush(self)
        if self.pending:
            failures.release()

    monkeypatch.setattr(sinks._Writer, "flush", counted)

    def come_back() -> None:
        for _ in range(6):  # six failed tries of the sinks, however long the machine takes to get there
            failures.acquire(timeout=300)
        away.start()

    returning = threading.Thread(target=come_back)
    returning.start()
    try:
        run_main(flow(home, away.url, source="files", files=[replay]))
        returning.join(60)
        assert alerts(away) == expected, "every alert, once"
    finally:
        away.stop()
    delays = [float(found) for found in re.findall(r"Redis unreachable .*?; [\d,]+ items buffered, retrying in ([\d.]+) s", capfd.readouterr().err)]
    assert len(delays) >= 6 and max(delays) <= 2.0, delays
    assert {0.05, 0.1, 0.2} <= set(delays), "a backoff that doubles from 50 ms (each sink has its own), bounded at 2 s"


def test_negative_prices_pass_for_a_futures_models_ticker_only(served, redis_server, tmp_path):
    """Case 8: a price below zero (a spread, WTI in April 2020) is refused unless the instrument allows it: the ticker
    of a published futures model takes one, a stock's or an option underlying's ticker dead-letters it."""
    from datetime import date

    from engine.calendar import CALENDARS
    from engine.models import SweepRequest, create_model
    from engine.packs import load_pack
    from engine.store import store_bars
    from packs import OFFICIAL
    from research import sweep, training
    from research.synthetic import generate
    from research.training import TrainRequest, fit_configuration
    from tests.flows.conftest import SMALL, _clock

    home = _own_home(served, tmp_path)
    cme = CALENDARS["cme_globex"]
    bars, _ = generate(["CL"], "1w", 3000, cme, seed=3, start=date(2012, 6, 4))["CL"]  # 600 weeks, to 2024-01
    with Workspace(home, clock=_clock) as space:
        store_bars(home, bars, cme, source="synthetic")
        pack = load_pack(OFFICIAL / "trendsigma")
        spec = create_model(pack, strategy=next(iter(pack.strategies)), instrument="futures", settings={"contract": "CL"},
                            evaluation="1w")  # fmt: skip
        space.add_model(spec, actor="test")
        sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name), actor="test", announce=lambda line: None)
        train = TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        space.publish(training._register(space, spec, train, fit_configuration(home, pack, spec, train), "test"), actor="test")
    at = int(datetime(2024, 3, 19, 14, 30, tzinfo=UTC).timestamp()) * SECOND
    rows = [{"ticker": "CL", "ts": at, "price": -37.63, "size": 1.0}, {"ticker": "CL", "ts": at + SECOND, "price": 0.0, "size": 1.0},
            {"ticker": "SPY", "ts": at + 2 * SECOND, "price": -1.0, "size": 1.0}]  # fmt: skip
    path = tmp_path / "negative.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    run_main(flow(home, redis_server.url, source="files", files=[path]))
    letters = [(reason, payload["ticker"], payload["price"]) for reason, payload in _dead_letters(redis_server)]
    assert letters == [("bad_price", "CL", 0.0), ("bad_price", "SPY", -1.0)], "CL's -37.63 is a price; zero never is"
