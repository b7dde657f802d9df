"""The live flow's latency and throughput, beside the floors measured in the same run.

500 tickers, one published model per ticker (a zerosigma one-minute model scoring
with ONNX Runtime), ticks on a Redis stream of a private redis-server. A producer
writes ticks at a fixed rate, event time running 60 times faster than the wall
clock so that bars close every second; each ticker's policy trades on every bar, so
bar closes become alerts. Latency is from the wall-clock receipt of the data that
closed the bar (``received_at``: the closing tick, or the clock item) to the return
of the alert's XADD. Then the maximum: a pre-filled stream read as fast as the flow goes.

Floors: one XADD round trip and one alert's share of a pipelined batch, one ONNX
single-row score, and Bytewax's own per-item latency at source batch sizes 1 and
500 (the flow reads up to 500 entries per call: it takes what is there, so at low
rates a batch is a few ticks).

    python -m benchmarks.live
"""

from __future__ import annotations

import json
import statistics
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from pathlib import Path

import bytewax.operators as op
import msgspec
import numpy as np
import redis
from bytewax.dataflow import Dataflow
from bytewax.inputs import DynamicSource, StatelessSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import run_main

from engine.calendar import CALENDARS
from engine.models import create_model
from engine.packs import load_pack
from engine.workspace import Workspace
from flows import live, sinks
from flows.registry import Registry
from packs import OFFICIAL
from research import sweep, training
from research.data import store_bars
from research.synthetic import generate
from tests.flows.conftest import RedisServer

TICKERS = [f"T{i:03d}" for i in range(500)]
SPEEDUP = 60  # event seconds per wall second
US = CALENDARS["us_equities"]


def _trained(home: Path) -> str:
    """One trained zerosigma model (bar features only) on a synthetic market."""
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        for bars, _ in generate(["SPY"], "1m", 12, US, seed=11, start=date(2024, 3, 1)).values():
            store_bars(home, bars, US, source="synthetic")
        pack = load_pack(OFFICIAL / "zerosigma")
        spec = create_model(pack, strategy="vwap_reversion", settings={"underlying": "SPY"})
        space.add_model(spec, actor="bench")
        sweep_id = sweep.start(space, pack, spec, sweep.SweepRequest(model=spec.name), actor="bench", announce=lambda line: None)
        request = training.TrainRequest(sweep=sweep_id, rank=1, grid={"n_estimators": [100], "max_depth": [5], "learning_rate": [0.1]})
        trained_id = training._register(space, spec, request, training.fit_configuration(home, pack, spec, request), "bench")
        space.publish(trained_id, actor="bench")
    # History for every ticker, so that each warms its indicators before its first live bar, as a deployment does.
    for bars, _ in generate(TICKERS, "1m", 2, US, seed=5, start=date(2024, 3, 14)).values():
        store_bars(home, bars, US, source="synthetic")
    return trained_id


class _Universe(Registry):
    """The published model, served as 500 models, one per ticker, each trading every bar."""

    def refresh(self, *, force: bool = False) -> bool:
        if self.version != -1:
            return False
        super().refresh(force=True)
        [model] = self.models.values()
        parameters = {**model.parameters, "threshold": 0.0, "side": 0.0, "hours_mask": float((1 << 24) - 1), "top_pct": 100.0, "max_positions": 1.0, "hold_bars": 1.0}
        self.models = {
            f"m{ticker}": msgspec.structs.replace(model, trained_id=f"m{ticker}", universe=(ticker,), parameters=parameters,
                                                  cooldown_minutes=0, max_trades_per_day=100_000)  # fmt: skip
            for ticker in TICKERS
        }
        self.by_ticker = {model.universe[0]: [model] for model in self.models.values()}
        return True


_latencies: list[int] = []


class _TimedWriter(sinks._AlertWriter):
    def flush(self) -> None:
        received = [_received_ns(alert) for alert in self.pending]
        super().flush()
        if not self.pending:
            done = time.time_ns()
            _latencies.extend(done - at for at in received)


def _received_ns(alert) -> int:
    return int(alert.received_at.timestamp() * 1_000_000) * 1000


def _produce(client: redis.Redis, rate: int, seconds: float, start_ns: int, stop: threading.Event) -> int:
    """Write ``rate`` ticks a second for ``seconds``, round-robin over the tickers; event time runs SPEEDUP x."""
    rng = np.random.default_rng(1)
    prices = rng.uniform(50, 150, len(TICKERS))
    sent = 0
    began = time.perf_counter()
    step = 0.002
    while time.perf_counter() - began < seconds and not stop.is_set():
        due = int((time.perf_counter() - began) * rate)
        pipe = client.pipeline(transaction=False)
        while sent < due:
            i = sent % len(TICKERS)
            prices[i] *= 1 + rng.normal(0, 0.0005)
            event = start_ns + int((time.perf_counter() - began) * SPEEDUP * 1e9)
            pipe.xadd(live.TICKS, {"tick": json.dumps({"ticker": TICKERS[i], "ts": event, "price": round(prices[i], 2), "size": 100.0})})
            sent += 1
        pipe.execute()
        time.sleep(step)
    client.xadd(live.TICKS, {"eof": 1})
    return sent


def _run_flow(home: Path, url: str) -> float:
    began = time.perf_counter()
    run_main(live.flow(home, url, lateness_ms=0, group=f"bench-{time.time_ns()}"))
    return time.perf_counter() - began


def _percentiles(values: list[int]) -> str:
    if not values:
        return "no alerts"
    p50, p99 = np.percentile(values, [50, 99]) / 1e6
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {max(values) / 1e6:7.2f} ms  ({len(values):,} alerts)"


def _floors(url: str, scorer) -> None:
    client = redis.Redis.from_url(url)
    single = []
    for _ in range(2000):
        began = time.perf_counter_ns()
        client.xadd("floor", {"alert": "x" * 600})
        single.append(time.perf_counter_ns() - began)
    pipelined = []
    for _ in range(20):
        pipe = client.pipeline(transaction=False)
        for _ in range(500):
            pipe.xadd("floor", {"alert": "x" * 600})
        began = time.perf_counter_ns()
        pipe.execute()
        pipelined.append((time.perf_counter_ns() - began) / 500)
    row = np.zeros((1, len(scorer.manifest.features)), dtype=np.float32)
    scores = []
    for _ in range(5000):
        began = time.perf_counter_ns()
        scorer.score(row)
        scores.append(time.perf_counter_ns() - began)
    print(f"floor: XADD round trip            p50 {statistics.median(single) / 1e3:7.1f} µs  p99 {np.percentile(single, 99) / 1e3:7.1f} µs")
    print(f"floor: XADD pipelined, per alert  p50 {statistics.median(pipelined) / 1e3:7.1f} µs")
    print(f"floor: ONNX single-row score      p50 {statistics.median(scores) / 1e3:7.1f} µs  p99 {np.percentile(scores, 99) / 1e3:7.1f} µs")
    for size in (1, 500):
        print(f"floor: Bytewax per-item latency, source batch {size:>3}: {_bytewax_item_latency(size)}")


def _bytewax_item_latency(size: int) -> str:
    seen: list[int] = []

    class Part(StatelessSourcePartition):
        def __init__(self) -> None:
            self.left = 20_000

        def next_batch(self) -> list:
            if self.left <= 0:
                raise StopIteration
            self.left -= size
            now = time.perf_counter_ns()
            return [now] * size

    class Source(DynamicSource):
        def build(self, step_id, worker_index, worker_count):
            return Part()

    class Writer(StatelessSinkPartition):
        def write_batch(self, items: list) -> None:
            now = time.perf_counter_ns()
            seen.extend(now - stamp for stamp in items)

    class Sink(DynamicSink):
        def build(self, step_id, worker_index, worker_count):
            return Writer()

    flow = Dataflow("floor")
    keyed = op.key_on("key", op.input("in", flow, Source()), lambda stamp: str(stamp % 7))
    op.output("out", op.key_rm("rm", keyed), Sink())
    run_main(flow)
    p50, p99 = np.percentile(seen, [50, 99]) / 1e3
    return f"p50 {p50:7.1f} µs  p99 {p99:7.1f} µs"


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="sigma-bench-live-"))
    home = folder / "home"
    print("training the model ...", flush=True)
    _trained(home)
    server = RedisServer(folder / "redis").start()
    live.Registry = _Universe  # 500 one-ticker models from the one artifact
    sinks._AlertWriter = _TimedWriter
    try:
        scorer = next(iter(_Universe(home).models.values())).scorer
        _floors(server.url, scorer)
        client = server.client()
        start_ns = int(datetime(2024, 3, 19, 13, 30, tzinfo=UTC).timestamp()) * 1_000_000_000
        for rate, seconds in ((1_000, 12.0), (20_000, 12.0)):
            client.flushall()
            _latencies.clear()
            stop = threading.Event()
            flow_thread = threading.Thread(target=_run_flow, args=(home, server.url))
            client.xgroup_create(live.TICKS, "sigma", id="0", mkstream=True)
            flow_thread.start()
            sent = _produce(client, rate, seconds, start_ns, stop)
            flow_thread.join()
            print(f"{rate:>7,} ticks/s x {seconds:.0f} s ({sent:,} ticks, 500 tickers): receipt -> XADD {_percentiles(_latencies)}")
        client.flushall()
        _latencies.clear()
        total = 400_000
        sent = 0
        pipe = client.pipeline(transaction=False)
        rng = np.random.default_rng(2)
        prices = rng.uniform(50, 150, len(TICKERS))
        for n in range(total):
            i = n % len(TICKERS)
            event = start_ns + n * (60_000_000_000 // 20_000)  # 20,000 ticks per event minute: a bar a minute per ticker
            pipe.xadd(live.TICKS, {"tick": json.dumps({"ticker": TICKERS[i], "ts": event, "price": round(prices[i], 2), "size": 100.0})})
            sent += 1
            if n % 10_000 == 0:
                pipe.execute()
        pipe.xadd(live.TICKS, {"eof": 1})
        pipe.execute()
        seconds = _run_flow(home, server.url)
        print(f"maximum: {sent:,} pre-filled ticks in {seconds:.2f} s = {sent / seconds:,.0f} ticks/s sustained "
              f"(budget >= 100,000); receipt -> XADD {_percentiles(_latencies)}")  # fmt: skip
    finally:
        server.stop()


if __name__ == "__main__":
    main()
