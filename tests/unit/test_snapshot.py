"""Snapshots of live state (`engine.snapshot`): every state class comes back exactly, and carries on as if never stopped.

States are compared through `tree`, an oracle written independently of the encoder:
every float by its bits (NaN included), every container by its type, every state
object by its declared fields.
"""

from __future__ import annotations

import math
from collections import deque
from datetime import UTC, date, datetime
from types import SimpleNamespace

import msgspec
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import snapshot
from engine.bar_builder import BarBuilder
from engine.calendar import CALENDARS, NS_PER_MINUTE, ExchangeClock
from engine.errors import ConfigError
from engine.features import FeatureVector, model_features, needs_ticks
from engine.indicators import INDICATORS, make
from engine.pipeline import Pipeline
from engine.policy import Policy
from engine.schemas import Bar, FutureAlert, Lineage, OptionAlert, StockAlert, Tick
from engine.screening import TickScreen
from engine.signals import Scored, Signals
from engine.snapshot import Layout, decode_state, encode_state, layout, state
from flows.steps import ConflictState, Decided, PolicyState, TickerState
from tests import market

US = CALENDARS["us_equities"]
OPEN = 1710855000 * 1_000_000_000  # 2024-03-19 13:30 UTC: the session's open
SHA = "a" * 64
POLICY = Policy(threshold=0.6, hours_mask=(1 << 24) - 1, side=0, top_pct=50.0, position_size=0.1, size_by_confidence=True,
                confidence_cap=0.9, max_exposure=1.0, stop_loss=0.01, take_profit=0.02, hold_bars=3, max_positions=2, entry_type=0,
                slippage=0.0, commission=0.0, strike_score=0.0, expiry_sessions=-1, cooldown_minutes=5, max_trades_per_day=4)  # fmt: skip
UNIVERSE = ("AAA", "BBB", "CCC")


def tree(value: object) -> object:
    """A hashable, comparable picture of ``value``: floats by their bits, containers by type, state objects by their fields."""
    kind = type(value)
    fields = layout().classes.get(kind.__qualname__)
    if fields is not None:
        return kind.__qualname__, tuple(tree(getattr(value, field)) for field in fields)
    if isinstance(value, msgspec.Struct):  # a message the pipeline emits (`Closed`), not state
        return kind.__qualname__, tuple(tree(item) for item in msgspec.structs.astuple(value))
    if isinstance(value, float):  # numpy's float64 too: it comes back as the float of the same bits
        return "float", float(value).hex()
    if isinstance(value, bool | np.bool_):
        return "bool", bool(value)
    if isinstance(value, int | np.integer):
        return "int", int(value)
    if value is None or kind in (str, bytes, date, datetime):
        return value
    if kind in (list, tuple):
        return kind.__name__, tuple(tree(item) for item in value)  # type: ignore[attr-defined]
    if kind in (set, frozenset):
        return kind.__name__, frozenset(tree(item) for item in value)  # type: ignore[attr-defined]
    if kind is deque:
        return "deque", value.maxlen, tuple(tree(item) for item in value)  # type: ignore[attr-defined]
    if kind is dict:
        return "dict", tuple((tree(key), tree(item)) for key, item in value.items())  # type: ignore[attr-defined]
    if kind is np.ndarray:
        return "array", value.dtype.str, value.shape, value.tobytes()  # type: ignore[attr-defined]
    raise AssertionError(f"no picture of a {kind}")


def again(value):
    """``value`` through a snapshot and back."""
    return decode_state(encode_state(value), type(value))


# -- states to snapshot ----------------------------------------------------------------


class _Scorer:
    """Stands in for an ONNX scorer: a manifest naming the features, no graph (a snapshot never holds one)."""

    def __init__(self, features: list[str], indicators: dict[str, dict]) -> None:
        self.manifest = SimpleNamespace(features=features, indicators=indicators)

    def check(self, features, dtype, warmup) -> None:
        pass


BAR_NAMES = sorted(name for name in INDICATORS if not needs_ticks(name))
TICK_NAMES = sorted(name for name in INDICATORS if needs_ticks(name))


def _names(indicators: list[str]) -> list[str]:
    """Every output of each indicator as a feature name."""
    return [f"{name}.{output}" for name in indicators for output in INDICATORS[name].outputs]


def _ticks(rng: np.random.Generator, n: int) -> list[tuple]:
    """Trades and quotes as the flow feeds them (NaN where a tick does not carry a field)."""
    price = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    rows = []
    for i in range(n):
        if rng.random() < 0.5:
            rows.append((float(i), price[i], float(rng.integers(1, 500)), math.nan, math.nan, math.nan, math.nan))
        else:
            rows.append((float(i), math.nan, math.nan, price[i] - 0.01, price[i] + 0.01, float(rng.integers(1, 9)), float(rng.integers(1, 9))))
    return rows


def _bars(seed: int, n: int, holes: list[int] = ()) -> list[tuple]:
    """Synthetic bars (open, high, low, close, volume, session), NaN at ``holes``: skipped by every indicator."""
    data = market.synthetic(n, seed=seed)
    rows = [tuple(float(data[field][i]) for field in ("open", "high", "low", "close", "volume", "session")) for i in range(n)]
    for i in holes:
        rows[i] = (math.nan, *rows[i][1:])
    return rows


SCORER = _Scorer(_names([*BAR_NAMES, *TICK_NAMES]), {name: {} for name in [*BAR_NAMES, *TICK_NAMES]})
OPTION_SCORER = _Scorer(["rsi"], {"rsi": {}})


def _pipeline(seed: int, trades: int) -> Pipeline:
    """SPY with two models on two cadences (one reading every indicator, ticks' too), after ``trades`` trades and quotes."""
    pipeline = Pipeline("SPY", 2_000_000_000)
    _subscribe(pipeline)
    _feed(pipeline, _trades(seed, trades))
    return pipeline


def _subscribe(pipeline: Pipeline) -> None:
    pipeline.subscribe("every", SCORER, "1m", ExchangeClock(US))  # type: ignore[arg-type]
    pipeline.subscribe("option", OPTION_SCORER, "5m", ExchangeClock(US), option=True)  # type: ignore[arg-type]


def _trades(seed: int, n: int) -> list[Tick]:
    """Trades every 3 s from the open with a quote between them, some of them bad."""
    rng = np.random.default_rng(seed)
    price = 100.0 * np.exp(np.cumsum(rng.normal(0.0, 0.001, n)))
    out = []
    for i in range(n):
        ts = OPEN + i * 3_000_000_000
        if i % 2:
            out.append(Tick(ticker="SPY", ts=ts, bid=float(price[i]) - 0.01, ask=float(price[i]) + 0.01, bid_size=3.0, ask_size=4.0))
        else:
            out.append(Tick(ticker="SPY", ts=ts, price=float(price[i]) * (5.0 if i % 97 == 0 else 1.0), size=float(rng.integers(1, 500))))
    return out


def _feed(pipeline: Pipeline, ticks: list[Tick]) -> list:
    """What the ticker step does with each tick: take it, then move event time to it."""
    out = []
    for tick in ticks:
        out.append(pipeline.tick(tick))
        out += pipeline.advance(tick.ts, received=0)
    return out


def _builder(cadence: str, ticks: list[tuple[int, float, float]], lateness: int = 2_000_000_000) -> tuple[BarBuilder, list]:
    builder = BarBuilder("SPY", cadence, ExchangeClock(US), lateness)
    closed = []
    for ts, price, size in ticks:
        builder.add(ts, price, size)
        closed += builder.advance(ts)
    return builder, closed


def _scored(ticker: str, bar: int, probability: float, close: float) -> Scored:
    end = OPEN + (bar + 1) * NS_PER_MINUTE
    bar_ = Bar(ticker=ticker, start=end - NS_PER_MINUTE, end=end, open=close, high=close * 1.004, low=close * 0.996, close=close)
    return Scored("m", bar_, probability, 9 + bar // 60, 19801, 0.0, 1.0, 0.2, False, end, 1)


def _signals(probabilities: list[list[float]]) -> tuple[Signals, list]:
    signals = Signals(POLICY, UNIVERSE, 252.0)
    out = [signals.close(_universe_bar(bar, row), ExchangeClock(US)) for bar, row in enumerate(probabilities)]
    return signals, out


def _universe_bar(bar: int, probabilities: list[float]) -> list[Scored]:
    return [_scored(ticker, bar, p, 100.0 + math.sin(bar + i)) for i, (ticker, p) in enumerate(zip(UNIVERSE, probabilities))]


def _alerts() -> list:
    common = dict(alert_id="m:SPY:1:open", timestamp=datetime(2024, 3, 1, 15, tzinfo=UTC), model_id="m", action="BUY", ticker="SPY",
                  quantity=1.0, confidence=0.7, entry_price=510.0, valid_until=datetime(2024, 3, 1, 16, tzinfo=UTC),
                  lineage=Lineage(pack_sha=SHA, indicator_set_sha=SHA, model_config_sha=SHA, policy_sha=SHA, artifact_sha=SHA),
                  received_at=datetime(2024, 3, 1, 15, tzinfo=UTC), emitted_at=datetime(2024, 3, 1, 15, 0, 1, tzinfo=UTC))  # fmt: skip
    return [StockAlert(**common, stop_loss=505.0),
            OptionAlert(**common, underlying="SPY", option_type="call", strike=515.0, expiration=date(2024, 3, 8), contracts=2),
            FutureAlert(**common, contract="ES", contract_month="2024-03", contracts=1)]  # fmt: skip


def _ticker_state() -> TickerState:
    ticker = TickerState(_pipeline(1, 600))
    for i in range(30):  # identities both ways a feed gives them: trade ids, and whole ticks
        ticker.pipeline.screen.check(OPEN + i, 100.0 + 0.01 * (i % 3), 5.0, None, None, f"t{i}" if i % 2 else (OPEN + i, 100.0, 5.0, None))
    ticker.quiet_through = OPEN
    return ticker


def _policy_state() -> PolicyState:
    signals, _ = _signals([[0.9, 0.2, 0.5], [0.5, math.nan, 0.8]])
    policy = PolicyState("m", signals)
    policy.pending[OPEN] = [_scored("AAA", 0, 0.7, 100.0)]
    policy.progress["BBB"] = OPEN
    return policy


def _conflict_state() -> ConflictState:
    conflict = ConflictState()
    conflict.pending[OPEN] = [Decided("SPY", OPEN, 2, _alerts())]
    conflict.overruled.add("m2")
    return conflict


SAMPLES = {
    "ticker": _ticker_state,
    "policy": _policy_state,
    "conflict": _conflict_state,
    **{name: lambda name=name: _indicator(name, 0, 300) for name in INDICATORS},
}


def _indicator(name: str, seed: int, n: int):
    indicator = make(name)
    data = market.synthetic(n, seed=seed)  # every column any indicator reads, ticks' too
    market.run_incremental(indicator, [data[column] for column in indicator.inputs])
    return indicator


def _classes(picture: object, found: set[str]) -> set[str]:
    """The state classes a `tree` picture holds."""
    if isinstance(picture, tuple | frozenset):
        if len(picture) == 2 and isinstance(picture, tuple) and picture[0] in layout().classes:
            found.add(picture[0])
        for part in picture:
            _classes(part, found)
    return found


# -- every class, exactly ------------------------------------------------------------


def test_the_samples_hold_every_registered_state_class():
    found: set[str] = set()
    for make_sample in SAMPLES.values():
        _classes(tree(make_sample()), found)
    assert found == set(layout().classes), "a registered class with no sample here has no round-trip test"


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_sample_comes_back_exactly(name):
    original = SAMPLES[name]()
    restored = again(original)
    assert type(restored) is type(original)
    assert tree(restored) == tree(original)


def test_floats_come_back_bit_for_bit_and_containers_keep_their_type():
    value = {"floats": [math.nan, -0.0, math.inf, -math.inf, 5e-324, np.float64(0.1)], 7: (1, "a", None, True), "s": {(1, 2), 3},
             "f": frozenset({"x"}), "d": deque([1.5], maxlen=4), "keys": {(1, 2): "tuple key", 3: "int key"},
             "array": np.arange(12, dtype=np.int32).reshape(3, 4)[:, ::2], "when": datetime(2024, 1, 2, tzinfo=UTC),
             "day": date(2024, 1, 2)}  # fmt: skip
    restored = again(value)
    assert tree(restored) == tree(value)
    assert restored["array"].flags.writeable, "the steps write to their arrays"


# -- resumed as if never stopped -----------------------------------------------------


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), cut=st.integers(0, 400), rest=st.integers(1, 200),
       holes=st.lists(st.integers(0, 599), max_size=8), chosen=st.sets(st.sampled_from(BAR_NAMES + TICK_NAMES), min_size=1))  # fmt: skip
def test_a_feature_vector_restored_mid_stream_goes_on_as_its_uninterrupted_twin(seed, cut, rest, holes, chosen):
    indicators = {name: {} for name in sorted(chosen)}
    features = model_features(_names(list(indicators)), indicators)
    bars = _bars(seed, cut + rest, [i for i in holes if i < cut + rest])
    ticks = _ticks(np.random.default_rng(seed), 5 * (cut + rest))
    twin, interrupted = FeatureVector(features, indicators), FeatureVector(features, indicators)
    for i, row in enumerate(bars):
        if i == cut:
            interrupted = again(interrupted)
            assert tree(interrupted) == tree(twin)
        for tick in ticks[5 * i : 5 * i + 5]:
            twin.update_tick(*tick)
            interrupted.update_tick(*tick)
        assert tree(interrupted.update_bar(*row)) == tree(twin.update_bar(*row)), f"bar {i}"
    assert interrupted.ready == twin.ready
    assert tree(interrupted) == tree(twin)


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 1000), cut=st.integers(0, 400), rest=st.integers(1, 400))
def test_a_pipeline_restored_mid_stream_closes_the_bars_and_rows_of_its_uninterrupted_twin(seed, cut, rest):
    trades = _trades(seed, cut + rest)
    twin = _pipeline(seed, 0)
    expected = _feed(twin, trades)
    interrupted = _pipeline(seed, 0)
    got = _feed(interrupted, trades[:cut])
    interrupted = again(interrupted)
    assert all(model.scorer is None for model in interrupted.models.values()), "an ONNX session is no state"
    _subscribe(interrupted)  # as the ticker step re-binds the scorers
    assert all(model.scorer is not None for model in interrupted.models.values())
    got += _feed(interrupted, trades[cut:])
    assert tree(got) == tree(expected)
    assert tree(interrupted) == tree(twin)


@settings(max_examples=40, deadline=None)
@given(cadence=st.sampled_from(["1m", "5m", "1h", "1d"]), steps=st.lists(st.integers(0, 90_000_000_000), min_size=2, max_size=300),
       cut=st.integers(0, 299), seed=st.integers(0, 1000))  # fmt: skip
def test_a_bar_builder_restored_mid_stream_closes_the_bars_of_its_uninterrupted_twin(cadence, steps, cut, seed):
    rng = np.random.default_rng(seed)
    ts = OPEN + np.cumsum(steps) - rng.integers(0, 1_500_000_000, len(steps))  # up to 1.5 s out of order, within the lateness
    ticks = [(int(t), float(100 + rng.normal()), float(rng.integers(1, 100))) for t in ts]
    cut = min(cut, len(ticks))
    twin, before = _builder(cadence, ticks)
    interrupted, closed = _builder(cadence, ticks[:cut])
    interrupted = again(interrupted)
    for t, price, size in ticks[cut:]:
        interrupted.add(t, price, size)
        closed += interrupted.advance(t)
    assert closed + interrupted.close_all() == before + twin.close_all()
    assert tree(interrupted) == tree(twin)


@settings(max_examples=40, deadline=None)
@given(prices=st.lists(st.sampled_from([100.0, 100.01, 99.99, 100.02, 130.0, 0.0]), min_size=1, max_size=120),
       repeats=st.lists(st.integers(0, 119), max_size=20), cut=st.integers(0, 120))  # fmt: skip
def test_a_tick_screen_restored_mid_stream_gives_its_twins_verdicts(prices, repeats, cut):
    ticks = [(OPEN + i * 100_000_000, price, 1.0, f"t{i}" if i % 3 else (i, price)) for i, price in enumerate(prices)]
    for i in repeats:  # duplicates, of both kinds of identity
        if i < len(ticks):
            ticks.insert(i, ticks[i])
    twin, interrupted = TickScreen(memory=2_000_000_000), TickScreen(memory=2_000_000_000)
    for i, (ts, price, size, identity) in enumerate(ticks):
        if i == cut:
            interrupted = again(interrupted)
        assert interrupted.check(ts, price, size, None, None, identity) == twin.check(ts, price, size, None, None, identity)
    assert tree(interrupted) == tree(twin)


@settings(max_examples=40, deadline=None)
@given(probabilities=st.lists(st.lists(st.sampled_from([0.1, 0.3, 0.5, 0.65, 0.8, 0.95, math.nan]), min_size=3, max_size=3),
                              min_size=1, max_size=120),
       cut=st.integers(0, 120))  # fmt: skip
def test_signals_restored_mid_stream_decide_as_their_uninterrupted_twin(probabilities, cut):
    twin, expected = _signals(probabilities)
    interrupted, got = _signals(probabilities[:cut])
    interrupted = again(interrupted)
    got += [interrupted.close(_universe_bar(bar, row), ExchangeClock(US)) for bar, row in enumerate(probabilities) if bar >= cut]
    assert tree(got) == tree(expected)  # bit for bit: a stock's strike is NaN
    assert tree(interrupted) == tree(twin)


# -- refused loudly --------------------------------------------------------------------


def test_anything_unregistered_in_state_fails_at_snapshot_time_naming_its_class():
    class Stray:
        pass

    ticker = _ticker_state()
    ticker.pipeline.refused["stray"] = Stray()  # type: ignore[assignment]
    with pytest.raises(TypeError, match="Stray is not snapshot state"):
        encode_state(ticker)
    with pytest.raises(TypeError, match="Python objects"):
        encode_state(np.array([Stray()]))
    with pytest.raises(TypeError, match="naive datetime"):
        encode_state([datetime(2024, 1, 1)])


def test_a_class_without_slots_or_with_undeclared_derived_members_cannot_register():
    class Loose:
        pass

    class Slotted:
        __slots__ = ("kept", "cache")

    with pytest.raises(TypeError, match="Loose declares no __slots__"):
        state(Loose)
    with pytest.raises(TypeError, match="no rebuild"):
        state(derived=("cache",))(Slotted)
    with pytest.raises(TypeError, match="no slot missing"):
        state(derived=("missing",))(Slotted)


def test_a_snapshot_of_another_layout_is_refused_with_the_way_out(monkeypatch):
    data = encode_state(_conflict_state())
    fields = snapshot._CLASSES[TickScreen]
    monkeypatch.setitem(snapshot._CLASSES, TickScreen, (fields[0], fields[1][:-1], *fields[2:]))
    monkeypatch.setattr(snapshot, "_version", None)
    with pytest.raises(ConfigError, match="another layout|cannot be restored by code of layout") as refused:
        decode_state(data, ConflictState)
    assert "delete the recovery folder" in str(refused.value)


def test_layout_changes_name_each_class_and_field():
    now = layout()
    classes = dict(now.classes)
    classes["BarBuilder"] = tuple(f for f in classes["BarBuilder"] if f != "watermark")
    classes["TickScreen"] = (*classes["TickScreen"], "_old")
    classes["Gone"] = ("a",)
    del classes["Book"]
    classes["Scored"] = tuple(reversed(classes["Scored"]))
    written = msgspec.structs.replace(now, classes=classes, bytewax="0.20.0")
    assert now.changes(written) == [
        f"Bytewax went from 0.20.0 to {now.bytewax}",
        "BarBuilder gained field `watermark`",
        "class Book is new",
        "class Gone is gone",
        "Scored's fields changed order",
        "TickScreen lost field `_old`",
    ]
    assert written.version != now.version and msgspec.convert(msgspec.to_builtins(now), Layout).version == now.version


def test_a_class_whose_fields_change_form_takes_a_new_revision_and_refuses_the_old_snapshots(monkeypatch):
    """The book's arrays grew columns under the same field names: a snapshot of the old form must not be read into them."""
    now = layout()
    assert now.revisions["Book"] == 3
    written = msgspec.convert({"format": now.format, "bytewax": now.bytewax, "classes": now.classes}, Layout)  # before revisions
    assert written.version != now.version
    assert now.changes(written) == ["Book's state changed form (revision 1 to 3)"]
    data = encode_state(Signals(POLICY, UNIVERSE, 252.0))
    monkeypatch.setitem(snapshot._REVISIONS, "Book", 4)
    monkeypatch.setattr(snapshot, "_version", None)
    with pytest.raises(ConfigError, match="delete the recovery folder"):
        decode_state(data, Signals)
