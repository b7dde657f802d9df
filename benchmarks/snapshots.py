"""What a snapshot of one ticker's live state costs, beside pickling the same state.

Bytewax snapshots every key whose state changed in an epoch, so this runs for each
active ticker every ``--snapshot-seconds``. The state is a realistic `TickerState`:
three models (one per official pack, its first strategy) warmed on six sessions of
one-minute bars, their cadences' bar builders with a bar open, the one-minute
realised volatility an option prices on (about 2,000 closes), and a tick screen
remembering two seconds of a liquid ticker's trades (200 trade ids).

The anchor is pickle of the same state: the fields `engine.snapshot` writes, in
pickle's protocol 5, derived members left out as the classes' former
``__getstate__`` left them out. Medians of repeated encode + decode round trips.

    python -m benchmarks.snapshots
"""

from __future__ import annotations

import argparse
import copyreg
import pickle
from datetime import date
from types import SimpleNamespace

from benchmarks._timing import median_seconds
from engine import snapshot
from engine.bar_builder import BarBuilder
from engine.calendar import CALENDARS, ExchangeClock, bars_per_year, session_days
from engine.models import create_model
from engine.options import volatility_window
from engine.packs import load_pack
from engine.pipeline import Pipeline
from engine.screening import TickScreen
from flows.steps import TickerState, _Cadence
from packs import OFFICIAL
from research.synthetic import generate

US = CALENDARS["us_equities"]
SECOND = 1_000_000_000


class _NoGraph:
    """A model's manifest without its ONNX graph: the scorer is not state, and a snapshot never holds it."""

    def __init__(self, features: list[str], indicators: dict) -> None:
        self.manifest = SimpleNamespace(features=features, indicators=indicators)

    def check(self, features, dtype, warmup) -> None:
        pass


def ticker_state() -> TickerState:
    """One ticker's state as the ticker step holds it after a few sessions of live bars."""
    bars, _ = generate(["SPY"], "1m", 6, US, seed=3, start=date(2024, 3, 8))["SPY"]
    session, _ = session_days(bars.start, US)
    state = TickerState("SPY", SECOND)
    state.screen = TickScreen(memory=2 * SECOND)
    last = int(bars.end[-1])
    for i in range(200):
        state.screen.check(last + i * 10_000_000, float(bars.close[-1]), 100.0, None, None, f"trade-{i}")
    for pack_name in ("zerosigma", "swingsigma", "trendsigma"):
        pack = load_pack(OFFICIAL / pack_name)
        settings = {"underlying": "SPY"} if pack.default_instrument == "options" else {"ticker": "SPY"}
        spec = create_model(pack, strategy=next(iter(pack.strategies)), settings=settings)
        state.pipelines[spec.name] = pipeline = Pipeline(_NoGraph(spec.features, spec.indicators))  # type: ignore[arg-type]
        pipeline.replay(bars, session, score=False)
    builder = BarBuilder("1m", ExchangeClock(US), SECOND)
    builder.add(last, float(bars.close[-1]), 100.0)
    state.cadences["1m"] = cadence = _Cadence(builder, volatility_window("1m"), bars_per_year(US, "1m"))
    for close in bars.close[-cadence.volatility.warmup :]:
        cadence.volatility.update(float(close))
    state.previous["1m"] = (last, int(session[-1]))
    return state


def _pickle_the_fields() -> None:
    """Make pickle write what a snapshot writes: each registered class's state fields, its derived members rebuilt on load."""
    for cls, (_, fields, struct, derived) in snapshot._CLASSES.items():
        if derived:
            copyreg.pickle(cls, lambda value, cls=cls, fields=fields: (_rebuilt, (cls, tuple(getattr(value, f) for f in fields))))


def _rebuilt(cls: type, values: tuple) -> object:
    value = cls.__new__(cls)
    for field, item in zip(snapshot._CLASSES[cls][1], values):
        setattr(value, field, item)
    value.rebuild()
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    state = ticker_state()
    _pickle_the_fields()
    data, pickled = snapshot.encode_state(state), pickle.dumps(state, protocol=5)
    ours = median_seconds(lambda: snapshot.decode_state(snapshot.encode_state(state), TickerState), args.repeats)
    anchor = median_seconds(lambda: pickle.loads(pickle.dumps(state, protocol=5)), args.repeats)
    encode = median_seconds(lambda: snapshot.encode_state(state), args.repeats)
    decode = median_seconds(lambda: snapshot.decode_state(data, TickerState), args.repeats)
    print(f"one ticker's state: {len(state.pipelines)} models, {sum(len(p.features._indicators) for p in state.pipelines.values())} "
          f"indicators, median of {args.repeats}")  # fmt: skip
    print(f"snapshot encode + decode  {ours * 1e6:8.1f} µs  ({encode * 1e6:.1f} + {decode * 1e6:.1f})  {len(data):,} B")
    print(f"pickle dumps + loads      {anchor * 1e6:8.1f} µs  {len(pickled):,} B  (anchor: the same fields)")
    print(f"ratio                     {ours / anchor:8.2f} x pickle")


if __name__ == "__main__":
    main()
