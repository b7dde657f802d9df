"""What a snapshot of one ticker's live state costs, beside pickling the same state.

Bytewax snapshots every key whose state changed in an epoch, so this runs for each
active ticker every ``--snapshot-seconds``. The state is a realistic `TickerState`:
its `engine.pipeline.Pipeline` serving three models (one per official pack, its first
strategy, all on one-minute bars) warmed on six sessions of stored bars, the bar
builder with a bar open, the one-minute realised volatility an option prices on
(about 2,000 closes), and a tick screen remembering two seconds of a liquid ticker's
trades (200 trade ids).

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
from engine.calendar import CALENDARS, ExchangeClock
from engine.models import create_model
from engine.packs import load_pack
from engine.pipeline import Pipeline
from engine.schemas import Tick
from flows.steps import TickerState
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
    pipeline = Pipeline("SPY", SECOND)
    first = int(bars.end[-1])
    for pack_name in ("zerosigma", "swingsigma", "trendsigma"):
        pack = load_pack(OFFICIAL / pack_name)
        option = pack.default_instrument == "options"
        spec = create_model(pack, strategy=next(iter(pack.strategies)), settings={"underlying": "SPY"} if option else {"ticker": "SPY"})
        pipeline.subscribe(spec.name, _NoGraph(spec.features, spec.indicators), "1m", ExchangeClock(US), option=option,  # type: ignore[arg-type]
                           first=first, history=bars)  # fmt: skip
    price = float(bars.close[-1])
    for i in range(200):
        pipeline.tick(Tick(ticker="SPY", ts=first + i * 10_000_000, price=price, size=100.0, trade_id=f"trade-{i}"))
    return TickerState(pipeline)


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
    models = state.pipeline.models.values()
    print(f"one ticker's state: {len(models)} models, {sum(len(model.features._indicators) for model in models)} indicators, "
          f"median of {args.repeats}")  # fmt: skip
    print(f"snapshot encode + decode  {ours * 1e6:8.1f} µs  ({encode * 1e6:.1f} + {decode * 1e6:.1f})  {len(data):,} B")
    print(f"pickle dumps + loads      {anchor * 1e6:8.1f} µs  {len(pickled):,} B  (anchor: the same fields)")
    print(f"ratio                     {ours / anchor:8.2f} x pickle")


if __name__ == "__main__":
    main()
