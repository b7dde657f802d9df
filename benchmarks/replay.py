"""Replay speed: stored one-minute bars through the live flow and the paper broker (`sigma sim`), beside the anchors.

A zerosigma model trained on a universe of ``--tickers`` synthetic tickers is
paper-traded over the last ``--sessions`` sessions of its stored history, the way
``sigma sim run`` does: the live dataflow in a child process over the bar feed, the
alerts through a private redis-server and its consumer group, then the broker over
the same bars. Each run pays a fixed cost (the child's start, warming every ticker
from stored history, the redis-server), so the rate quoted is the marginal one:
(bars of the long window - bars of a one-session window) over the difference of
their medians. Beside it, measured in the same run on the same bars:

- the broker's walk alone (`replay.sim.walk`, in process);
- the research backtest of the same artifact over the same bars
  (`replay.parity.backtest`: every stored bar scored through the pipeline, then
  the policy kernel), and the kernel alone on the prepared market;
- the flow alone over the run's bar feed (file source, alerts to a local file), on
  one and on two Bytewax workers: what ``-w 2`` adds;
- backtesting.py (an event-driven backtester, the ``bench`` extra), one
  ``Backtest`` per ticker on the same bars, trading the same probabilities at the
  same threshold and holding time: the outside anchor.

    python -m benchmarks.replay                 # 10 tickers x 5 sessions replayed (about 2 minutes)
    python -m benchmarks.replay --tickers 20 --sessions 10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np

from benchmarks._timing import median_seconds
from engine.calendar import CALENDARS, calendar
from engine.models import SweepRequest, create_model
from engine.packs import load_pack
from engine.policy import Policy
from engine.store import load_bars, store_bars
from engine.workspace import Workspace
from packs import OFFICIAL
from replay import feed, parity, sim
from replay.broker import Broker, FillSettings
from research import sweep, training
from research.backtest import replay as backtest_replay
from research.synthetic import generate

US = CALENDARS["us_equities"]
HISTORY = 12  # sessions stored before the replayed ones: the sweep and training window
SMALL = {"n_estimators": [60], "max_depth": [4], "learning_rate": [0.1]}
YEAR_OF_MINUTES = 100 * 252 * 390  # a year of one-minute bars for 100 tickers


def _trained(home: Path, tickers: list[str], sessions: int) -> str:
    """A zerosigma model swept and trained over ``tickers``, under a policy that trades often."""
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        for bars, _ in generate(tickers, "1m", HISTORY + sessions, US, seed=21, start=date(2024, 3, 1)).values():
            store_bars(home, bars, US, source="synthetic")
        pack = load_pack(OFFICIAL / "zerosigma")
        spec = create_model(pack, strategy="vwap_reversion", settings={"underlying": tickers[0]})
        space.add_model(spec, actor="benchmark")
        sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name, universe=tickers), actor="benchmark",
                               announce=lambda line: None)  # fmt: skip
        request = training.TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        trained_id = training._register(space, spec, request, training.fit_configuration(home, pack, spec, request), "benchmark")
        # A policy that trades at every hour on a low threshold, a fixed size: the broker and the alert path do work.
        return training.with_policy(space, trained_id, "eager", actor="benchmark", threshold=0.36, hours_mask=float((1 << 24) - 1),
                                    top_pct=100.0, max_positions=3.0, hold_bars=5.0, size_by_confidence=0.0, cooldown_minutes=0.0,
                                    max_trades_per_day=10_000.0)  # fmt: skip


def _first_day(home: Path, ticker: str, sessions: int) -> date:
    bars, _ = load_bars(home, ticker, "1m")
    return datetime.fromtimestamp(int(bars.start[-390 * sessions]) / 1e9, UTC).date()


def _paper(home: Path, trained_id: str, first: date) -> sim.SimRun:
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        run = sim.start(space, sim.SimRequest(models=[trained_id], start=first, fill=FillSettings(convention="backtest")), actor="bench")
    return sim.execute(home, run.run_id, announce=lambda line: None)


def _flow_seconds(home: Path, run: sim.SimRun, workers: int, repeats: int) -> float:
    """Seconds for the live flow alone over the run's feed on ``workers`` Bytewax workers (threads of one process)."""
    from bytewax.run import cli_main

    from flows.live import flow

    folder = home / "sim" / run.run_id

    def once() -> None:
        alerts = Path(tempfile.mkdtemp(prefix="sigma-bench-flow-")) / "alerts.jsonl"
        cli_main(flow(home, None, source="files", files=[folder / "feed.parquet"], kind=run.request.source, models=run.request.models,
                      paper=True, alert_file=alerts), workers_per_process=workers)  # fmt: skip

    return median_seconds(once, repeats)


def _anchor(window: feed.Window, probabilities: dict[str, np.ndarray], policy: Policy, repeats: int) -> float | None:
    """Seconds for backtesting.py over every ticker's bars of the window, trading the same probabilities; None if not installed."""
    try:
        import pandas as pd
        from backtesting import Backtest, Strategy
    except ImportError:
        return None

    class Probabilities(Strategy):
        probability: np.ndarray = np.empty(0)

        def init(self) -> None:
            self.signal = self.I(lambda: self.probability, name="probability")

        def next(self) -> None:
            if self.position and len(self.data) - self.trades[-1].entry_bar >= policy.hold_bars:
                self.position.close()
            elif not self.position and self.signal[-1] >= policy.threshold:
                self.buy(size=policy.position_size)

    frames = {}
    for ticker in window.tickers:
        rows = [bar for bar in window.bars if bar.ticker == ticker]
        frames[ticker] = pd.DataFrame({"Open": [b.open for b in rows], "High": [b.high for b in rows], "Low": [b.low for b in rows],
                                       "Close": [b.close for b in rows], "Volume": [b.volume for b in rows]},
                                      index=pd.to_datetime([b.start for b in rows], utc=True))  # fmt: skip

    def run_all() -> None:
        for ticker, frame in frames.items():
            Backtest(frame, Probabilities, cash=100_000, commission=policy.commission, finalize_trades=True).run(
                probability=probabilities[ticker][-len(frame):]
            )

    return median_seconds(run_all, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickers", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=5, help="sessions replayed (after 12 of training history)")
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args()
    tickers = [f"R{i:02d}" for i in range(arguments.tickers)]
    home = Path(tempfile.mkdtemp(prefix="sigma-bench-replay-")) / "home"
    print(f"training a zerosigma model over {len(tickers)} tickers ...", flush=True)
    trained_id = _trained(home, tickers, arguments.sessions)
    long_first, short_first = _first_day(home, tickers[0], arguments.sessions), _first_day(home, tickers[0], 1)
    long_window = feed.window(home, tickers, "1m", long_first, None, with_ticks=False)
    short_window = feed.window(home, tickers, "1m", short_first, None, with_ticks=False)
    n_long, n_short = len(long_window.bars), len(short_window.bars)

    runs: list[sim.SimRun] = []
    long_seconds = median_seconds(lambda: runs.append(_paper(home, trained_id, long_first)), arguments.repeats)
    short_seconds = median_seconds(lambda: _paper(home, trained_id, short_first), arguments.repeats)
    marginal = (n_long - n_short) / max(long_seconds - short_seconds, 1e-9)
    run = runs[-1]
    taken = sim.alerts(home / "sim" / run.run_id)
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        rules = sim.policies(space, [trained_id])
    clock_calendar = calendar(run.calendar)

    def walk() -> None:
        from engine.calendar import ExchangeClock

        sim.walk(Broker.open(rules, ExchangeClock(clock_calendar), run.request.fill), long_window, taken)

    broker_seconds = median_seconds(walk, arguments.repeats)
    ends = (long_window.bars[0].end, long_window.bars[-1].end)
    research_seconds = median_seconds(lambda: parity.backtest(home, trained_id, *ends), arguments.repeats)
    market, _, _, _, _ = parity.backtest(home, trained_id, *ends)
    row = rules[trained_id].row()
    backtest_replay(market, row)  # compiled already; once more so the timing holds no compilation
    kernel_seconds = median_seconds(lambda: backtest_replay(market, row), arguments.repeats)
    probabilities = {ticker: market.probability[:, j] for j, ticker in enumerate(market.tickers)}
    anchor_seconds = _anchor(long_window, probabilities, rules[trained_id], arguments.repeats)
    one_worker, two_workers = (_flow_seconds(home, run, workers, arguments.repeats) for workers in (1, 2))

    print(f"replay of {n_long:,} one-minute bars ({len(tickers)} tickers x {arguments.sessions} sessions; "
          f"{run.summary['trades']:.0f} trades, {len(taken):,} alerts), medians of {arguments.repeats}:")  # fmt: skip
    print(f"  sigma sim (flow + Redis + broker): {long_seconds:6.2f} s; a one-session run ({n_short:,} bars) {short_seconds:.2f} s: "
          f"marginal {marginal:,.0f} bars/s")  # fmt: skip
    print(f"  the flow alone over the feed (alerts to a file): {one_worker:6.2f} s on one worker, {two_workers:.2f} s on two "
          f"(-w 2: {one_worker / two_workers:.2f}x; Bytewax workers are threads of one process, and the steps hold the GIL)")  # fmt: skip
    print(f"  broker walk alone:                 {broker_seconds:6.3f} s  {n_long / broker_seconds:,.0f} bars/s")
    print(f"  research backtest (scoring + kernel): {research_seconds:6.2f} s over every stored bar of the universe; "
          f"kernel alone {kernel_seconds * 1e3:.1f} ms ({n_long / kernel_seconds:,.0f} bars/s)")  # fmt: skip
    if anchor_seconds is None:
        print("  backtesting.py: not installed (pip install -e '.[bench]')")
    else:
        print(f"  backtesting.py (anchor, same bars and probabilities): {anchor_seconds:6.2f} s  {n_long / anchor_seconds:,.0f} bars/s; "
              f"sigma sim's marginal rate is {marginal / (n_long / anchor_seconds):.2f}x its rate")  # fmt: skip
    print(f"  a year of one-minute bars for 100 tickers ({YEAR_OF_MINUTES:,} bars) at the marginal rate: "
          f"{YEAR_OF_MINUTES / marginal / 60:,.0f} min on one worker (aim: under 15)")  # fmt: skip


if __name__ == "__main__":
    started = time.perf_counter()
    main()
    print(f"({time.perf_counter() - started:,.0f} s in all)")
