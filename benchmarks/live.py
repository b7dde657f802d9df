"""The live flow's latency and throughput, beside the floors measured in the same run.

500 tickers, one published model per ticker (a zerosigma one-minute model scoring
with ONNX Runtime), ticks on a Redis stream of a private redis-server. A producer
process writes ticks at a fixed rate, round-robin over the tickers. Each ticker
trades every 1.5 s of event time, as a liquid name does, so event time runs faster
than the wall clock (3 times at 1,000 ticks/s, 60 times at 20,000) and a run spans
several minute ends: at each, every ticker's bar closes with its own next tick (the
flow's clock would close it only after 2 s of silence). Two
alert densities: one ticker in ten has a model that trades on every bar (an exit and
an entry: 100 alerts at each minute's end), then every ticker's does (1,000 alerts,
the worst case); the other models trade at no hour. Latency is from the wall-clock
receipt of the data that closed the bar (``received_at``: the closing tick, or the
clock item) to the return of the alert's XADD; beside it, to the policy's decision,
for every bar close whether it alerts or not. Then the maximum: a pre-filled stream
read as fast as the flow goes.

Every ticker is warmed (its stored history replayed into its indicators, once per
flow start, about 7 ms a ticker) by a first tick before anything is measured: the
figures are the steady state a deployment runs in. Each ticker's ticks continue the
price of its stored history (a level 30% away would start its features afresh, and
its model would score nothing); the stage tables count the closes left unscored.

Floors: one XADD round trip and one alert's share of a pipelined batch, the Lua
writes of one minute's 1,000 alerts (what a burst costs Redis alone), one ONNX
single-row score and one 500-row score, and Bytewax's own per-item latency at source
batch sizes 1 and 500 (the flow reads up to 500 entries per call: it takes what is
there, so at low rates a batch is a few ticks).

Where a bar close's time goes: the flow's step objects (`TickerStep`, `score`,
`PolicyStep`, `ConflictStep`, the alert and health writers) driven directly, in this
process, over the same workspace, universe and tick pattern (every ticker trading every
1.5 s of event time), with ``perf_counter_ns`` around each call: the cost per bar
close per (ticker, model) of each stage, median and p99 over the closes, and its share
of their sum. Twice: 500 ticks a batch (a minute's end at 20,000 ticks/s, or the
pre-filled maximum: every ticker's close in one or two batches, one ONNX call and one
pipelined write for them all) and one tick a batch (a trickle, each close alone). A
batched stage's cost per close is its call's time over the closes in it. A second
pass wraps the inner calls (screen, bar builder, features, the policy kernel, the
alert builder) with timers to split the ticker and policy steps; the table's own
figures come from the pass without them. Not in it: Bytewax's hops between the steps
(five keyed or batched operators; see its per-item floor) and the source's XREADGROUP
and JSON decoding.

Daily models deciding every 5 minutes (issue 18's scenario): 500 swingsigma models on
daily bars, one per ticker, each evaluated at every 5-minute interval of the session
(its pack's finest), every one trading. At each interval's end every ticker's model
is scored on the day's bar so far, peeked from its committed features without
committing it (an evaluation point); the interval ending at the close commits the day
(its bar close). The stage table puts the two side by side, over the session's last
25 minutes (five points and the close per ticker), and a flow run at 20,000 ticks/s
from 15:49:50 on gives their latencies from receipt to XADD.

    python -m benchmarks.live               # floors, stages, end-to-end runs, the maximum (about 7 minutes)
    python -m benchmarks.live --stages      # floors and stages only (about two minutes)
    python -m benchmarks.live --evaluation  # floors and the daily models deciding every 5 minutes only
"""

from __future__ import annotations

import argparse
import multiprocessing
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

from engine.alerts import build_alert, nanoseconds
from engine import signals as signals_module
from engine.bar_builder import BarBuilder
from engine.bars import resample
from engine.calendar import CALENDARS, ExchangeClock
from engine.features import FeatureVector
from engine.options import contract_expiry
from engine.models import SweepRequest, create_model
from engine.packs import load_pack
from engine.pipeline import Closed
from engine.policy import ALL_DAY
from engine.schemas import Alert, Bar, Tick
from engine.screening import TickScreen
from engine.signals import Scored, Signal, Signals
from engine.store import load_bars, store_bars
from engine.workspace import Workspace
from flows import live, sinks, sources, steps
from flows.redis_server import RedisServer
from flows.registry import Registry
from packs import OFFICIAL
from research import sweep, training
from research.synthetic import generate

TICKERS = [f"T{i:03d}" for i in range(500)]
TRADES_EVERY = 1.5  # event seconds between one ticker's ticks: a liquid name; event time runs rate x 1.5 / 500 times the wall clock
US = CALENDARS["us_equities"]
DAILY_START, DAILY_SESSIONS = date(2023, 1, 3), 320  # the daily scenario's history: its indicators warm on 320 daily bars
CLOSE, POINT, TICK = "bar close", "evaluation point", "tick"  # what a tick through the ticker step closed


def _trained(home: Path) -> str:
    """One trained zerosigma model (bar features only) on a synthetic market."""
    for bars, _ in generate(["SPY"], "1m", 12, US, seed=11, start=date(2024, 3, 1)).values():
        store_bars(home, bars, US, source="synthetic")
    trained_id = _published(home, "zerosigma", strategy="vwap_reversion", settings={"underlying": "SPY"})
    _history(home)
    return trained_id


def _trained_daily(home: Path) -> str:
    """One trained swingsigma model on daily bars deciding every 5 minutes (its finest), on synthetic minutes stored as
    its bars and its intervals; each of the 500 tickers gets a year and a third of daily bars to warm on."""
    for minutes, _ in generate(["SPY"], "1m", DAILY_SESSIONS, US, seed=21, start=DAILY_START).values():
        for cadence in ("1d", "5m"):
            store_bars(home, resample(minutes, cadence, US), US, source="synthetic minutes")
    trained_id = _published(home, "swingsigma", strategy="mean_reversion", settings={"ticker": "SPY"}, evaluation="5m",
                            risk_profile="aggressive")  # fmt: skip
    for bars, _ in generate(TICKERS, "1d", DAILY_SESSIONS, US, seed=5, start=DAILY_START).values():
        store_bars(home, bars, US, source="synthetic")
    return trained_id


def _published(home: Path, pack_name: str, **model) -> str:
    """Create the pack's model, sweep it simply, train its leaderboard's first row and publish it."""
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        pack = load_pack(OFFICIAL / pack_name)
        spec = create_model(pack, **model)
        space.add_model(spec, actor="bench")
        sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name), actor="bench", announce=lambda line: None)
        request = training.TrainRequest(sweep=sweep_id, rank=1, grid={"n_estimators": [100], "max_depth": [5], "learning_rate": [0.1]})
        trained_id = training._register(space, spec, request, training.fit_configuration(home, pack, spec, request), "bench")
        space.publish(trained_id, actor="bench")
    return trained_id


def _history(home: Path) -> None:
    """History for every ticker, so that each warms its indicators before its first live bar, as a deployment does.

    Six sessions (March 8 to 15): the realised volatility that prices the option alerts
    takes five sessions of one-minute bars (`engine.options.volatility_window`); with
    less, every bar's volatility is NaN and the option model never trades.
    """
    for bars, _ in generate(TICKERS, "1m", 6, US, seed=5, start=date(2024, 3, 8)).values():
        store_bars(home, bars, US, source="synthetic")


class _Universe(Registry):
    """The published model, served as 500 models, one per ticker; one in ``trading`` trades every bar, the rest never."""

    trading = 1

    def refresh(self, *, force: bool = False) -> bool:
        if self.version != -1:
            return False
        super().refresh(force=True)
        [model] = self.models.values()
        every_bar = msgspec.structs.replace(model.policy, threshold=0.0, side=0, hours_mask=ALL_DAY, top_pct=100.0, max_positions=1,
                                            hold_bars=1, cooldown_minutes=0, max_trades_per_day=100_000, size_by_confidence=False)  # fmt: skip
        # A fixed size: sized by confidence, a buy at a probability under 0.5 commits nothing and never alerts.
        never = msgspec.structs.replace(every_bar, hours_mask=1)  # midnight only: no bar of the session ends in it
        self.models = {
            f"m{ticker}": msgspec.structs.replace(model, trained_id=f"m{ticker}", universe=(ticker,),
                                                  policy=never if i % self.trading else every_bar)  # fmt: skip
            for i, ticker in enumerate(TICKERS)
        }
        self.by_ticker = {model.universe[0]: [model] for model in self.models.values()}
        return True


_latencies: list[int] = []  # receipt -> XADD, per alert
_decisions: list[int] = []  # receipt -> the policy's decision, per bar close
_measured: dict[str, int] = {}  # wall-clock receipt of the first tick at or after "from" (event time)
_recording = threading.Event()  # off once the producer is done: the closes of the stream's end are no live bar closes


class _TimedReader(sources.Reader):
    def accept(self, kind: str, item, received: int, payload: bytes | None = None) -> tuple:
        if "at" not in _measured and kind == "tick" and item.ts >= _measured.get("from", 0):
            _measured["at"] = received
            _latencies.clear()
            _decisions.clear()
        return super().accept(kind, item, received, payload)


class _TimedWriter(sinks._AlertWriter):
    def flush(self) -> None:
        through = _measured.get("through", 1 << 62)  # a bar the stream's end closes was closed by no tick: not a live close
        received = [nanoseconds(alert.received_at) for alert in self.pending if nanoseconds(alert.timestamp) <= through]
        super().flush()
        if not self.pending and _recording.is_set():
            done = time.time_ns()
            _latencies.extend(done - at for at in received)


class _TimedPolicy(steps.PolicyStep):
    def _decide(self, model, rows: list, out: list) -> None:
        super()._decide(model, rows, out)
        done = time.time_ns()
        if _recording.is_set():
            _decisions.extend(done - row.received_at for row in rows)


def _tick(ticker: str, event: int, price: float) -> dict:
    """A stream entry of one trade, its JSON formatted by hand: the producer writes 20,000 a second."""
    return {"tick": f'{{"ticker":"{ticker}","ts":{event},"price":{price:.2f},"size":100.0}}'}


def _opening(home: Path) -> list[float]:
    """Each ticker's last stored close at the published model's cadence: the live ticks continue the history the
    indicators warmed on (a price level 30% away would start the features afresh, and the models would score nothing)."""
    [model] = Registry(home).models.values()
    return [float(load_bars(home, ticker, model.cadence)[0].close[-1]) for ticker in TICKERS]


def _warm(client: redis.Redis, event: int, prices: list[float]) -> None:
    """One tick per ticker, then wait until the flow has read past a fence: every ticker has warmed its indicators."""
    pipe = client.pipeline(transaction=False)
    for ticker, price in zip(TICKERS, prices, strict=True):
        pipe.xadd(live.TICKS, _tick(ticker, event, price))
    pipe.execute()
    _read_through(client, client.xadd(live.TICKS, _tick(TICKERS[0], event, prices[0])))


def _read_through(client: redis.Redis, entry: bytes) -> None:
    """Wait until the flow has read the stream through ``entry`` (it reads again only once its steps took the last batch)."""
    while True:
        groups = client.xinfo_groups(live.TICKS)
        if groups and groups[0]["last-delivered-id"] == entry:
            return
        time.sleep(0.05)


def _produce(url: str, rate: int, seconds: float, start_ns: int, opening: list[float], sent_out) -> None:
    """Write ``rate`` ticks a second for ``seconds``, round-robin over the tickers, each trading every TRADES_EVERY event seconds.

    It runs in a process of its own, as a feed handler does: in the flow's process it
    would hold the GIL while the flow waits, and the figures would be the producer's.
    """
    client = redis.Redis.from_url(url)
    speedup = rate * TRADES_EVERY / len(TICKERS)
    # Each tick's price walk drawn up front: the producer shares the machine's two cores with the flow and Redis,
    # and every microsecond it spends is one the flow may wait for.
    moves = iter(np.random.default_rng(1).normal(0, 0.0005, int(rate * seconds * 1.1) + 1).tolist())
    prices = list(opening)
    sent = 0
    began = time.perf_counter()
    step = 0.002
    while time.perf_counter() - began < seconds:
        now = time.perf_counter() - began
        due = int(now * rate)
        event = start_ns + int(now * speedup * 1e9)  # one event time per write: ticks of one write are simultaneous
        pipe = client.pipeline(transaction=False)
        while sent < due:
            i = sent % len(TICKERS)
            prices[i] *= 1 + next(moves)
            pipe.execute_command("XADD", live.TICKS, "*", *_tick(TICKERS[i], event, prices[i]).popitem())
            sent += 1
        pipe.execute()
        time.sleep(step)
    sent_out.put(sent)


def _produced(url: str, rate: int, seconds: float, start_ns: int, prices: list[float]) -> int:
    """Run the producer in its own process; the ticks it wrote."""
    context = multiprocessing.get_context("spawn")
    sent = context.Queue()
    producer = context.Process(target=_produce, args=(url, rate, seconds, start_ns, prices, sent))
    producer.start()
    count = sent.get()
    producer.join()
    return count


def _run_flow(home: Path, url: str, batch: int = 500) -> None:
    run_main(live.flow(home, url, lateness_ms=0, group=f"bench-{time.time_ns()}", batch=batch))


def _maximum(client: redis.Redis, home: Path, url: str, start_ns: int, batch: int, total: int = 400_000, runs: int = 3) -> None:
    """The flow's throughput over a pre-filled stream of ``total`` ticks, read ``runs`` times (a fresh consumer group each)."""
    client.flushall()
    prices = _opening(home)
    pipe = client.pipeline(transaction=False)
    warming = -(-len(TICKERS) // batch) * batch  # whole batches: no measured tick waits behind a ticker's warm-up
    for n in range(warming):
        pipe.xadd(live.TICKS, _tick(TICKERS[n % len(TICKERS)], start_ns - 60_000_000_000 + n, prices[n % len(TICKERS)]))
    for n in range(total):
        event = start_ns + n * (60_000_000_000 // 20_000)  # 20,000 ticks per event minute: a bar a minute per ticker
        pipe.xadd(live.TICKS, _tick(TICKERS[n % len(TICKERS)], event, prices[n % len(TICKERS)]))
        if n % 10_000 == 0:
            pipe.execute()
    pipe.xadd(live.TICKS, {"eof": 1})
    pipe.execute()
    _Universe.trading = 1
    rates = []
    for _ in range(runs):
        _latencies.clear()
        _measured.clear()
        _measured["from"] = start_ns
        _measured["through"] = start_ns + (total - 1) * (60_000_000_000 // 20_000)
        _recording.set()
        _run_flow(home, url, batch)
        _recording.clear()
        rates.append(total / ((time.time_ns() - _measured["at"]) / 1e9))
        for marker in client.scan_iter(f"{sinks.PREFIX}:alert-ids:*", count=10_000):  # the next run writes its alerts as the first did
            client.delete(marker)
    print(f"maximum: {total:,} pre-filled ticks after the warm-up, read {runs} times at batch {batch}: median {statistics.median(rates):,.0f} ticks/s "
          f"sustained (budget >= 100,000; runs {', '.join(f'{rate:,.0f}' for rate in rates)}); every ticker alerts at each minute's end, "
          f"last run receipt -> XADD {_percentiles(_latencies)}")  # fmt: skip


def _percentiles(values: list[int], what: str = "alerts") -> str:
    if not values:
        return f"no {what}"
    p50, p99 = np.percentile(values, [50, 99]) / 1e6
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms  max {max(values) / 1e6:7.2f} ms  ({len(values):,} {what})"


def _sample_alert(model) -> Alert:
    """An option alert as the flow writes it (about 1 kB of JSON)."""
    end = int(datetime(2024, 3, 19, 15, 0, tzinfo=UTC).timestamp()) * 1_000_000_000
    bar = Bar(ticker="T000", start=end - 60_000_000_000, end=end, open=100.0, high=100.5, low=99.5, close=100.2)
    scored = Scored(model.trained_id, bar, 0.6, 11, 19801, 5000.5, 5000.51, 0.2, False, time.time_ns(), 1)
    expiry, _ = contract_expiry(model.clock, end, max(model.policy.expiry_sessions, 0))
    signal = Signal(scored, 1, "open", "entry", 100.2, 0.1, 99.8, 100.6, 0.6, 100.0, expiry)
    return build_alert(signal, model.settings, model.lineage, model.clock, multiplier=model.multiplier, emitted_at=time.time_ns())


def _floors(url: str, scorer, alert: Alert) -> None:
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
    bursts = []
    writer = sinks._AlertWriter(url, 10_000, 100_000, 600)
    for n in range(10):
        writer.pending.extend(msgspec.structs.replace(alert, alert_id=f"{alert.alert_id}:{n}:{i}") for i in range(1000))
        began = time.perf_counter_ns()
        writer.flush()
        bursts.append(time.perf_counter_ns() - began)
    row = np.zeros((1, len(scorer.manifest.features)), dtype=np.float32)
    block = np.zeros((len(TICKERS), len(scorer.manifest.features)), dtype=np.float32)
    scores, blocks = [], []
    for _ in range(5000):
        began = time.perf_counter_ns()
        scorer.score(row)
        scores.append(time.perf_counter_ns() - began)
    for _ in range(200):
        began = time.perf_counter_ns()
        scorer.score(block)
        blocks.append(time.perf_counter_ns() - began)
    print(f"floor: XADD round trip            p50 {statistics.median(single) / 1e3:7.1f} µs  p99 {np.percentile(single, 99) / 1e3:7.1f} µs")
    print(f"floor: XADD pipelined, per alert  p50 {statistics.median(pipelined) / 1e3:7.1f} µs")
    print(f"floor: one minute's 1,000 alerts written once (Lua SET NX + 2 XADD each)  p50 {statistics.median(bursts) / 1e6:6.2f} ms")
    print(f"floor: ONNX single-row score      p50 {statistics.median(scores) / 1e3:7.1f} µs  p99 {np.percentile(scores, 99) / 1e3:7.1f} µs")
    print(f"floor: ONNX 500-row score         p50 {statistics.median(blocks) / 1e3:7.1f} µs")
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


# -- where a bar close's time goes: the steps driven directly --------------------------------------------------------

_ALERT_WRITER = sinks._AlertWriter  # the product's writer: main() swaps in the timed one for the flow runs


class _Inner:
    """Timers around a few inner calls (class attributes swapped in this process only), summed per outer call."""

    def __init__(self) -> None:
        self.spent: dict[str, int] = {}
        self._undo: list = []

    def wrap(self, owner, name: str, label: str) -> None:
        original = getattr(owner, name)
        spent = self.spent
        clock = time.perf_counter_ns

        def timed(*args, **kwargs):
            began = clock()
            try:
                return original(*args, **kwargs)
            finally:
                spent[label] = spent.get(label, 0) + clock() - began

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def take(self) -> dict[str, int]:
        taken = dict(self.spent)
        self.spent.clear()
        return taken

    def undo(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)


def _ticks(start_ns: int, seconds: float, opening: list[float]) -> list[Tick]:
    """Every ticker trading every TRADES_EVERY event seconds from ``start_ns``, round-robin, each price a random walk
    from its ``opening``."""
    spacing = int(TRADES_EVERY * 1e9) // len(TICKERS)  # event ns between consecutive ticks
    total = int(seconds * 1e9) // spacing
    moves = np.random.default_rng(2).normal(0, 0.0005, total).tolist()
    prices = list(opening)
    ticks = []
    for n in range(total):
        i = n % len(TICKERS)
        prices[i] *= 1 + moves[n]
        ticks.append(Tick(ticker=TICKERS[i], ts=start_ns + n * spacing, price=round(prices[i], 2), size=100.0))
    return ticks


def _kind(row) -> str:
    """What a model's row at a close is: its bar's close, or an evaluation point inside the bar (the bar so far, peeked)."""
    return CLOSE if row.closes else POINT


def _stage_samples(home: Path, url: str, ticks: list[Tick], *, batch: int, inner: _Inner | None) -> dict[str, dict[str, list[float]]]:
    """Drive the flow's steps over ``ticks``, ``batch`` at a time: nanoseconds per close by kind (`CLOSE`, `POINT`, or
    `TICK` for a tick that closes nothing) and stage. A batched stage's call is shared by the closes in it."""
    registry = _Universe(home)
    lateness = 0  # as the benchmark's flow runs (lateness_ms=0)
    tickers = {ticker: steps.TickerStep(registry, lateness, None) for ticker in TICKERS}
    policies = {model: steps.PolicyStep(registry, None) for model in registry.models}
    conflicts = {ticker: steps.ConflictStep("highest-confidence", (), None) for ticker in TICKERS}
    alert_writer = _ALERT_WRITER(url, 10_000, sinks.MAXLEN, 7 * 86_400)
    health_writer = sinks._HealthWriter(url, 100_000)
    for tick in ticks[: len(TICKERS)]:  # the warm-up (stored history into the indicators), untimed
        warming = Tick(ticker=tick.ticker, ts=ticks[0].ts - 1_000_000_000, price=tick.price, size=100.0)
        tickers[tick.ticker].on_batch([("tick", warming, time.time_ns())])
    samples: dict[str, dict[str, list[float]]] = {}

    def record(kind: str, stage: str, ns: float, closes: int = 1) -> None:
        samples.setdefault(kind, {}).setdefault(stage, []).extend([ns / closes] * closes)

    def shared(stage: str, ns: float, rows: list) -> None:
        for row in rows:
            record(_kind(row), stage, ns, len(rows))

    clock = time.perf_counter_ns
    for first in range(0, len(ticks), batch):
        closes: list = []
        statuses: list = []
        for tick in ticks[first : first + batch]:  # a batch's ticks reach each ticker's step as a batch of its own (one tick here)
            item = ("tick", tick, time.time_ns())
            step = tickers[tick.ticker]
            began = clock()
            out, _ = step.on_batch([item])
            spent = clock() - began
            split = inner.take() if inner else {}
            closed = [o for o in out if type(o) is Closed]
            if not closed:
                record(TICK, "ticker step", spent)
                continue
            kind = _kind(closed[0].scored)  # one model per ticker: one row
            record(kind, "ticker step", spent, len(closed))
            for label, ns in split.items():
                record(kind, f"ticker step: {label}", ns, len(closed))
            if inner:
                record(kind, "ticker step: the rest", spent - sum(split.values()), len(closed))
            closes += closed
            statuses += [o for o in out if type(o) is steps.Status]
        if not closes:
            continue
        began = clock()
        scored = steps.score(registry, closes)
        shared("score", clock() - began, scored)
        for row in scored:  # NaN: the features are warming up, and the close measures no model
            samples[_kind(row)].setdefault("unscored", []).extend([1] * (row.probability != row.probability))
        decided = []
        kinds = {}
        for row in scored:  # one model per ticker: each model's batch is its one row
            kind = kinds[row.bar.ticker] = _kind(row)
            began = clock()
            out, _ = policies[row.model].on_batch([row])
            spent = clock() - began
            split = inner.take() if inner else {}
            record(kind, "policy", spent)
            for label, ns in split.items():
                record(kind, f"policy: {label}", ns)
            if inner:
                record(kind, "policy: the rest", spent - sum(split.values()))
            decided += out
        by_ticker: dict[str, list] = {}
        for d in decided:
            by_ticker.setdefault(d.ticker, []).append(d)
        alerts = []
        for ticker, group in by_ticker.items():
            began = clock()
            out, _ = conflicts[ticker].on_batch(group)
            record(kinds[ticker], "conflict", clock() - began, len(group))
            alerts += out
            samples.setdefault(kinds[ticker], {}).setdefault("alerts", []).append(len(out))
        began = clock()
        alert_writer.write_batch(alerts)
        shared("alert sink", clock() - began, scored)
        began = clock()
        health_writer.write_batch(statuses)
        shared("health sink", clock() - began, scored)
    alert_writer.close()
    health_writer.close()
    return samples


def _stages(title: str, home: Path, url: str, ticks: list[Tick]) -> None:
    """Print each stage's cost per close, by kind of close, for 500 ticks a batch and one."""
    client = redis.Redis.from_url(url)
    _Universe.trading = 1
    steps.compile_helpers()
    main_rows = ("ticker step", "score", "policy", "conflict", "alert sink", "health sink")
    minutes = (ticks[-1].ts - ticks[0].ts) / 60e9
    for batch in (500, 1):
        client.flushall()
        plain = _stage_samples(home, url, ticks, batch=batch, inner=None)
        inner = _Inner()
        inner.wrap(TickScreen, "check", "screen")
        inner.wrap(BarBuilder, "add", "bar builder")
        inner.wrap(BarBuilder, "advance", "bar builder")
        inner.wrap(FeatureVector, "update_bar", "features")
        inner.wrap(FeatureVector, "peek_bar", "features: peek of the bar so far")
        inner.wrap(ExchangeClock, "session_clock", "session clock (options)")
        inner.wrap(signals_module, "live_step", "kernel (live_step)")
        inner.wrap(Signals, "close", "Signals.close")
        inner.wrap(steps, "build_alert", "build_alert")
        client.flushall()
        try:
            split = _stage_samples(home, url, ticks, batch=batch, inner=inner)
        finally:
            inner.undo()
        for kinds in split.values():
            if "policy: Signals.close" in kinds:  # the kernel runs inside Signals.close: the driver is the difference
                close, kernel = kinds.pop("policy: Signals.close"), kinds["policy: kernel (live_step)"]
                kinds["policy: Signals.close driver"] = [a - b for a, b in zip(close, kernel, strict=True)]
                kinds["policy: the rest"] = [a + b for a, b in zip(kinds["policy: the rest"], kernel, strict=True)]
        kinds = [kind for kind in (POINT, CLOSE) if kind in plain]
        medians = {kind: {stage: statistics.median(plain[kind][stage]) for stage in main_rows} for kind in kinds}
        wholes = {kind: sum(medians[kind].values()) for kind in kinds}
        counts = ", ".join(f"{len(plain[kind]['ticker step']):,} {kind}s ({sum(plain[kind].get('alerts', [])):,} alerts, "
                           f"{len(plain[kind].get('unscored', [])):,} unscored)" for kind in kinds)  # fmt: skip
        print(f"stages, {title}, {batch} tick{'s' if batch > 1 else ''} a batch over {minutes:.1f} event minutes: {counts}; "
              f"µs per close per (ticker, model)")  # fmt: skip
        print(f"  {'':<36}" + "".join(f"{kind:>26}" for kind in kinds))
        print(f"  {'stage':<36}" + f"{'median':>10} {'p99':>8} {'share':>6}" * len(kinds))

        def cells(rows: dict[str, dict[str, list[float]]], stage: str, share: bool) -> str:
            out = ""
            for kind in kinds:
                values = rows[kind].get(stage)
                if not values:
                    out += f"{'':>26}"
                    continue
                median = statistics.median(values)
                fraction = f"{median / wholes[kind]:6.0%}" if share else f"{'':>6}"
                out += f"{median / 1e3:10.1f} {np.percentile(values, 99) / 1e3:8.1f} {fraction}"
            return out

        for stage in main_rows:
            print(f"  {stage:<36}{cells(plain, stage, True)}")
            labels = sorted({key for kind in kinds for key in split.get(kind, {}) if key.startswith(f"{stage}: ")})
            for label in labels:
                print(f"    {label[len(stage) + 2:]:<34}{cells(split, label, False)}")
        print(f"  {'sum of the medians':<36}" + "".join(f"{wholes[kind] / 1e3:10.1f}{'':>16}" for kind in kinds)
              + "   (indented: the inner calls, timed in a second pass; they need not sum to their stage)")  # fmt: skip
        other = statistics.median(plain[TICK]["ticker step"])
        print(f"  and each tick that closes nothing, through the ticker step: {other / 1e3:.1f} µs "
              f"(p99 {np.percentile(plain[TICK]['ticker step'], 99) / 1e3:.1f})")  # fmt: skip


def _end_to_end(client: redis.Redis, home: Path, url: str, start_ns: int, rate: int, seconds: float) -> None:
    """The flow over a stream that a producer writes at ``rate`` ticks a second from event time ``start_ns``: latencies."""
    client.flushall()
    flow_thread = threading.Thread(target=_run_flow, args=(home, url))
    flow_thread.start()
    prices = _opening(home)
    _warm(client, start_ns - 1_000_000_000, prices)  # in the first measured bar: no ticker is silent when it starts
    _latencies.clear()
    _decisions.clear()
    _recording.set()
    sent = _produced(url, rate, seconds, start_ns, prices)
    _read_through(client, client.xinfo_stream(live.TICKS)["last-generated-id"])
    time.sleep(0.5)  # the last batch through the steps
    _recording.clear()
    client.xadd(live.TICKS, {"eof": 1})
    flow_thread.join()
    print(f"  {rate:>6,} ticks/s x {seconds:.0f} s ({sent:,} ticks): receipt -> XADD      {_percentiles(_latencies)}")
    print(f"  {'':>30}  receipt -> decision  {_percentiles(_decisions, 'closes')}")


def _live_close(home: Path) -> int:
    """UTC nanoseconds of the close of the session after the last one the daily history holds: the benchmark's day."""
    clock = ExchangeClock(US)
    day = clock.session(int(load_bars(home, TICKERS[0], "1d")[0].end[-1]) - 1)[0] + 1
    while not clock.trades(day):
        day += 1
    return clock.session_bounds(day)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", action="store_true", help="the floors and the stage costs only, not the flow runs")
    parser.add_argument("--minutes", type=int, default=6, help="event minutes of ticks the stage harness drives (default 6)")
    parser.add_argument("--maximum", action="store_true", help="the floors and the pre-filled maximum only")
    parser.add_argument("--evaluation", action="store_true",
                        help="the floors and the daily models deciding every 5 minutes only (stages and a flow run)")  # fmt: skip
    parser.add_argument("--batch", type=int, default=500, help="entries the flow reads per call in the pre-filled maximum (default 500, the flow's own)")
    parser.add_argument("--home", type=Path,
                        help="where this benchmark keeps its trained workspaces (reused as they are): HOME for the minute "
                             "model, HOME-daily for the daily one")  # fmt: skip
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sigma-bench-live-"))
    home = arguments.home or folder / "home"
    daily = home.with_name(f"{home.name}-daily")
    if not (home / "sigma.db").exists():
        print("training the model ...", flush=True)
        _trained(home)
    if not arguments.maximum and not (daily / "sigma.db").exists():
        print("training the daily model ...", flush=True)
        _trained_daily(daily)
    server = RedisServer(folder / "redis").start()
    live.Registry = _Universe  # 500 one-ticker models from the one artifact
    live.PolicyStep = _TimedPolicy
    sinks._AlertWriter = _TimedWriter
    sources.Reader = _TimedReader
    try:
        model = next(iter(_Universe(home).models.values()))
        _floors(server.url, model.scorer, _sample_alert(model))
        client = server.client()
        start_ns = int(datetime(2024, 3, 19, 13, 29, 50, tzinfo=UTC).timestamp()) * 1_000_000_000
        if arguments.maximum:
            _maximum(client, home, server.url, start_ns, arguments.batch)
            return
        close = _live_close(daily)
        daily_title = "500 daily models deciding every 5 minutes, the last 25 of the session"
        if not arguments.evaluation:
            _stages("500 one-minute option models", home, server.url, _ticks(start_ns, arguments.minutes * 60, _opening(home)))
        _stages(daily_title, daily, server.url, _ticks(close - 25 * 60_000_000_000 - 10_000_000_000, 25 * 60 + 40, _opening(daily)))
        if arguments.stages:
            return
        if not arguments.evaluation:
            for trading, density in ((10, "one ticker in ten trades every bar"), (1, "every ticker trades every bar (worst case)")):
                _Universe.trading = trading
                print(f"{density}:")
                for rate, seconds in ((1_000, 45.0), (20_000, 12.0)):  # three and twelve minutes of event time
                    _end_to_end(client, home, server.url, start_ns, rate, seconds)
        _Universe.trading = 1
        print(f"{daily_title[:-len(', the last 25 of the session')]}, every model trading, 15:49:50 to the close and on:")
        _end_to_end(client, daily, server.url, close - 10 * 60_000_000_000 - 10_000_000_000, 20_000, 12.0)
        if not arguments.evaluation:
            _maximum(client, home, server.url, start_ns, arguments.batch)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
