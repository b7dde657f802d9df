"""Sweep throughput: the simple sweep end to end, and 1,000 custom configurations per second.

Run: ``python -m benchmarks.sweep``. Both figures are printed next to anchors measured
in the same run on the same grid: the same policy kernel interpreted by Python
(``NUMBA_DISABLE_JIT=1``, in a child process: what compiling buys) and vectorbt's
``Portfolio.from_signals`` when it is installed (a benchmark-only extra:
``pip install -e '.[bench]'``). The grid runs the whole policy: cooldowns, the daily
cap, sizing by confidence and the exposure cap included. Budgets: simple sweep on 100,000 bars within 30 s; custom
backtests at least 2,000 configurations per second.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from benchmarks._timing import median_seconds
from engine.calendar import CALENDARS
from engine.models import SweepRequest, create_model
from engine.packs import load_pack
from engine.policy import ALL_DAY, ENTRY_TYPES, SIDES, Policy, hours_mask
from engine.store import store_bars
from engine.workspace import Workspace
from packs import OFFICIAL
from research import sweep
from research.backtest import PARAMETERS, run
from research.synthetic import generate

BARS = 100_000
US = CALENDARS["us_equities"]


def simple_sweep(home: Path) -> tuple[float, sweep.Prepared]:
    """Seconds for `sigma sweep run` in simple mode on 100,000 one-minute bars, out-of-fold training included."""
    bars, _ = generate(["SPY"], "1m", 260, US, seed=1)["SPY"]
    store_bars(home, bars.select(slice(0, BARS)), US, source="synthetic")
    pack = load_pack(OFFICIAL / "zerosigma")
    spec = create_model(pack, strategy="vwap_reversion", settings={"underlying": "SPY"})
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        space.add_model(spec, actor="benchmark")
        began = time.perf_counter()
        sweep.start(space, pack, spec, SweepRequest(model=spec.name), actor="benchmark", announce=lambda line: None)
        seconds = time.perf_counter() - began
        return seconds, sweep.prepare(home, pack, spec, SweepRequest(model=spec.name))


def custom_grid() -> np.ndarray:
    """1,000 configurations: thresholds x hours x stops x targets x hold x entry type, zerosigma's alerting limits."""
    rows = []
    axes = itertools.product(
        [0.50, 0.55, 0.60, 0.65, 0.70], [hours_mask([9, 10]), hours_mask([13, 14, 15]), ALL_DAY, hours_mask([10, 11])],
        [0.0, 0.002, 0.005, 0.01, 0.02], [0.0, 0.004, 0.01, 0.02, 0.04], [5, 10], [ENTRY_TYPES["market"]],
    )  # fmt: skip
    for threshold, mask, stop, target, hold, entry in axes:
        policy = Policy(threshold=threshold, hours_mask=mask, side=SIDES["both"], top_pct=100.0, position_size=0.1,
                        size_by_confidence=True, confidence_cap=0.75, max_exposure=0.5, stop_loss=stop, take_profit=target,
                        hold_bars=hold, max_positions=1, entry_type=entry, slippage=0.0005, commission=0.0001, strike_score=0.0,
                        expiry_sessions=-1, cooldown_minutes=15, max_trades_per_day=6)  # fmt: skip
        rows.append(policy.row())
    return np.array(rows)


_INTERPRETED = """
import pickle, sys, time
from research.backtest import run
market, configs = pickle.load(sys.stdin.buffer)
began = time.perf_counter()
run(market, configs)
print(len(configs) / (time.perf_counter() - began))
"""


def interpreted_rate(market, configs: np.ndarray) -> float:
    """Configurations per second of the same kernel run by the Python interpreter, in a child process."""
    import pickle

    child = subprocess.run([sys.executable, "-c", _INTERPRETED], input=pickle.dumps((market, configs)), capture_output=True,
                           env={**os.environ, "NUMBA_DISABLE_JIT": "1"}, check=True)  # fmt: skip
    return float(child.stdout.decode().split()[-1])


def vectorbt_rate(market, configs: np.ndarray) -> tuple[float, float] | None:
    """(configs/s, seconds of JIT warm-up) of vectorbt's closest equivalent: entries at the threshold, stops."""
    try:
        import vectorbt as vbt
    except ImportError:
        return None
    close = market.close[:, 0]

    def backtest(config: np.ndarray) -> None:
        entries = market.probability[:, 0] >= config[PARAMETERS.index("threshold")]
        stop, target = config[PARAMETERS.index("stop_loss")], config[PARAMETERS.index("take_profit")]
        vbt.Portfolio.from_signals(close, entries, np.zeros_like(entries), sl_stop=stop or None, tp_stop=target or None)

    warm_up = _time(lambda: backtest(configs[0]))
    return len(configs) / sum(_time(lambda c=c: backtest(c)) for c in configs), warm_up


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        seconds, prepared = simple_sweep(Path(folder))
    print(f"simple sweep, {BARS:,} bars incl. out-of-fold training: {seconds:.1f} s (budget 30 s; requirement 300 s)")

    market = prepared.market  # all 100,000 bars, out-of-fold and holdout probabilities
    configs = custom_grid()
    run(market, configs[:2])  # compile outside the timing
    kernel = median_seconds(lambda: run(market, configs), 3)
    sample = configs[:: len(configs) // 10]
    interpreted = interpreted_rate(market, sample[:3])
    print(f"custom backtests, {len(configs):,} configurations on {len(market):,} bars (cooldowns, daily caps, sizing):")
    print(f"  kernel          {len(configs) / kernel:10,.0f} configs/s (budget 2,000)")
    print(f"  interpreted     {interpreted:10,.1f} configs/s (anchor: the same kernel without numba)")
    print(f"  compiled / interpreted {len(configs) / kernel / interpreted:6,.0f}x")
    anchor = vectorbt_rate(market, sample)
    if anchor:
        print(f"  vectorbt        {anchor[0]:10,.1f} configs/s (anchor, after {anchor[1]:.0f} s of JIT warm-up)")
    else:
        print("  vectorbt        not installed (pip install -e '.[bench]')")
    options = configs.copy()
    options[:, PARAMETERS.index("expiry_sessions")] = 0  # the same grid on 0DTE at-the-money options
    run(market, options[:2])
    print(f"  kernel, 0DTE    {len(options) / median_seconds(lambda: run(market, options), 3):10,.0f} configs/s (options priced each bar)")


def _time(call) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


if __name__ == "__main__":
    main()
