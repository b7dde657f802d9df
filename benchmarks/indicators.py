"""Indicator speed next to its anchors, measured in one run: talipp (incremental) and TA-Lib (batch).

Prints, per indicator, the median µs per incremental update beside talipp's for the
same indicator, and the median ns per bar in batch beside TA-Lib's, with the ratios
the budgets are set in (incremental >= 3x faster than talipp; batch within 3x of
TA-Lib). A hand-written ``__slots__`` EMA is printed as the floor of a Python update.
Beside each update, the median µs of a ``peek`` (a forming bar read from a reused
twin of the state, nothing committed): what an evaluation point inside a bar costs.
Also checks that our state has a fixed size while talipp keeps every input.

    python benchmarks/indicators.py [--updates 20000] [--bars 100000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path

import numpy as np
import talib
from talipp import indicators as talipp
from talipp.ohlcv import OHLCV

from engine.indicators import INDICATORS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_seconds  # noqa: E402

# talipp's counterpart for each of ours; (name, factory, input kind). "closest" marks a near relative.
TALIPP = {
    "sma": ("SMA", lambda: talipp.SMA(20), "close"),
    "ema": ("EMA", lambda: talipp.EMA(20), "close"),
    "wma": ("WMA", lambda: talipp.WMA(20), "close"),
    "rsi": ("RSI", lambda: talipp.RSI(14), "close"),
    "macd": ("MACD", lambda: talipp.MACD(12, 26, 9), "close"),
    "roc": ("ROC", lambda: talipp.ROC(10), "close"),
    "stochastic": ("Stoch", lambda: talipp.Stoch(14, 3), "ohlcv"),
    "bollinger": ("BB", lambda: talipp.BB(20, 2.0), "close"),
    "atr": ("ATR", lambda: talipp.ATR(14), "ohlcv"),
    "realised_volatility": ("StdDev (closest)", lambda: talipp.StdDev(20), "close"),
    "zscore": ("StdDev (closest)", lambda: talipp.StdDev(20), "close"),
    "donchian": ("DonchianChannels", lambda: talipp.DonchianChannels(20), "ohlcv"),
    "adx": ("ADX", lambda: talipp.ADX(14, 14), "ohlcv"),
    # talipp's OBV and VWAP are running totals; ours are windowed / session-anchored.
    "obv": ("OBV running total (closest)", lambda: talipp.OBV(), "ohlcv"),
    "session_vwap": ("VWAP without sessions (closest)", lambda: talipp.VWAP(), "ohlcv"),
}

# TA-Lib's counterpart in batch; for multi-output indicators, every call needed for the same outputs.
TALIB = {
    "sma": ("SMA", lambda d: talib.SMA(d["close"], 20)),
    "ema": ("EMA", lambda d: talib.EMA(d["close"], 20)),
    "wma": ("WMA", lambda d: talib.WMA(d["close"], 20)),
    "rsi": ("RSI", lambda d: talib.RSI(d["close"], 14)),
    "macd": ("MACD", lambda d: talib.MACD(d["close"], 12, 26, 9)),
    "roc": ("ROC", lambda d: talib.ROC(d["close"], 10)),
    "stochastic": ("STOCH", lambda d: talib.STOCH(d["high"], d["low"], d["close"], 14, 3, 0, 3, 0)),
    "bollinger": ("BBANDS", lambda d: talib.BBANDS(d["close"], 20, 2.0, 2.0)),
    "atr": ("ATR", lambda d: talib.ATR(d["high"], d["low"], d["close"], 14)),
    "realised_volatility": ("STDDEV (closest)", lambda d: talib.STDDEV(d["close"], 20)),
    "zscore": ("SMA+STDDEV", lambda d: (talib.SMA(d["close"], 20), talib.STDDEV(d["close"], 20))),
    "donchian": ("MAX+MIN", lambda d: (talib.MAX(d["high"], 20), talib.MIN(d["low"], 20))),
    "adx": ("ADX+PLUS_DI+MINUS_DI", lambda d: (
        talib.ADX(d["high"], d["low"], d["close"], 14),
        talib.PLUS_DI(d["high"], d["low"], d["close"], 14),
        talib.MINUS_DI(d["high"], d["low"], d["close"], 14),
    )),
    "obv": ("OBV", lambda d: talib.OBV(d["close"], d["volume"])),
    "volume_surge": ("SMA", lambda d: talib.SMA(d["volume"], 20)),
}  # fmt: skip


class SlotsEma:
    """The floor: the least a Python EMA update can cost."""

    __slots__ = ("alpha", "value")

    def __init__(self, period: int) -> None:
        self.alpha = 2.0 / (period + 1)
        self.value = 0.0

    def update(self, x: float) -> None:
        self.value += self.alpha * (x - self.value)


def market(n: int, seed: int = 11) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 + np.cumsum(rng.normal(0.0, 0.5, n))
    spread = rng.uniform(0.01, 0.05, n)
    return {
        "close": close,
        "high": close + rng.uniform(0.01, 0.6, n),
        "low": close - rng.uniform(0.01, 0.6, n),
        "volume": rng.uniform(100.0, 10_000.0, n),
        "session": np.arange(n) // 390.0,
        "price": close,
        "size": rng.uniform(1.0, 500.0, n),
        "bid": close - spread,
        "ask": close + spread,
        "bid_size": rng.uniform(1.0, 500.0, n),
        "ask_size": rng.uniform(1.0, 500.0, n),
    }


def incremental_us(cls, rows: list[tuple[float, ...]], repeats: int) -> float:
    def run() -> None:
        update = cls().update
        for row in rows:
            update(*row)

    return median_seconds(run, repeats) / len(rows) * 1e6


def peek_us(cls, rows: list[tuple[float, ...]], repeats: int) -> float:
    indicator = cls()
    for row in rows[: len(rows) // 2]:
        indicator.update(*row)
    twin = indicator.peek(*rows[0])

    def run() -> None:
        peek = indicator.peek
        for row in rows:
            peek(*row, into=twin)

    return median_seconds(run, repeats) / len(rows) * 1e6


def talipp_us(factory, values: list, repeats: int) -> tuple[float, int]:
    kept = 0

    def run() -> None:
        nonlocal kept
        indicator = factory()
        add = indicator.add
        for value in values:
            add(value)
        kept = len(indicator.input_values)

    return median_seconds(run, repeats) / len(values) * 1e6, kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=20_000, help="incremental updates per timing")
    parser.add_argument("--bars", type=int, default=100_000, help="bars per batch timing")
    parser.add_argument("--repeats", type=int, default=5, help="timings per figure (the median is printed)")
    args = parser.parse_args()

    small, large = market(args.updates), market(args.bars)
    closes = small["close"].tolist()
    candles = [OHLCV(c, h, lo, c, v) for c, h, lo, v in zip(closes, small["high"].tolist(), small["low"].tolist(), small["volume"].tolist())]
    floor_rows = [(x,) for x in closes]

    def floor() -> None:
        update = SlotsEma(20).update
        for (x,) in floor_rows:
            update(x)

    floor_us = median_seconds(floor, args.repeats) / len(floor_rows) * 1e6
    print(f"floor: hand-written __slots__ EMA update {floor_us:.3f} µs   ({args.updates:,} updates, {args.bars:,} bars, median of {args.repeats})")
    print()
    header = f"{'indicator':<22}{'ours µs':>9}{'peek µs':>9}{'talipp µs':>11}{'faster':>8}  {'state':<26}{'ours ns/bar':>12}{'TA-Lib ns/bar':>14}{'ratio':>7}  anchors"
    print(header)
    print("-" * len(header))
    misses = []
    for name, cls in INDICATORS.items():
        rows = list(zip(*(small[column].tolist() for column in cls.inputs)))
        ours_us = incremental_us(cls, rows, args.repeats)
        peeked_us = peek_us(cls, rows, args.repeats)
        indicator = cls()
        for row in rows[:1_000]:
            indicator.update(*row)
        early = len(pickle.dumps(indicator))
        for row in rows[1_000:]:
            indicator.update(*row)
        fixed = len(pickle.dumps(indicator)) <= early + 8
        state = f"fixed {early} B" if fixed else "GROWS"
        anchors = []
        talipp_cell = faster_cell = ""
        if name in TALIPP:
            label, factory, kind = TALIPP[name]
            talipp_value, kept = talipp_us(factory, closes if kind == "close" else candles, args.repeats)
            faster = talipp_value / ours_us
            talipp_cell, faster_cell = f"{talipp_value:.3f}", f"{faster:.1f}x"
            state += f"; talipp {kept:,} in"
            anchors.append(f"talipp {label}")
            if faster < 3.0 and "closest" not in label:
                misses.append(f"{name}: incremental only {faster:.1f}x faster than talipp")
        columns = [large[column] for column in cls.inputs]
        cls.batch(*(column[:100] for column in columns))  # compile outside the timing
        ours_ns = median_seconds(lambda: cls.batch(*columns), args.repeats) / args.bars * 1e9
        talib_cell = ratio_cell = ""
        if name in TALIB:
            label, call = TALIB[name]
            talib_ns = median_seconds(lambda: call(large), args.repeats) / args.bars * 1e9
            ratio = ours_ns / talib_ns
            talib_cell, ratio_cell = f"{talib_ns:.1f}", f"{ratio:.2f}"
            anchors.append(f"TA-Lib {label}")
            if ratio > 3.0:
                misses.append(f"{name}: batch {ratio:.1f}x TA-Lib's time")
        if not fixed:
            misses.append(f"{name}: state grows")
        print(
            f"{name:<22}{ours_us:>9.3f}{peeked_us:>9.3f}{talipp_cell:>11}{faster_cell:>8}  {state:<26}"
            f"{ours_ns:>12.1f}{talib_cell:>14}{ratio_cell:>7}  {', '.join(anchors) or 'no counterpart'}"
        )
    print()
    print("budgets: incremental >= 3x faster than talipp, batch <= 3x TA-Lib, fixed-size state")
    print("all within budget" if not misses else "over budget:\n  " + "\n  ".join(misses))


if __name__ == "__main__":
    main()
