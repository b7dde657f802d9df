"""Contract checks generated for every registered indicator, River-style, plus properties."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import ConfigError
from engine.indicators import INDICATORS, TIMESCALES, check_params, compute, make
from engine.snapshot import decode_state, encode_state
from tests import market

NAMES = sorted(INDICATORS)


def _columns(cls, data):
    return [data[column] for column in cls.inputs]


@pytest.mark.parametrize("name", NAMES)
def test_registry_entry_is_complete(name):
    cls = INDICATORS[name]
    assert cls.summary() and cls.group and cls.outputs
    assert set(cls.timescales) <= set(TIMESCALES)
    update_args = list(inspect.signature(cls.update).parameters)[1:]
    assert update_args == list(cls.inputs)
    batch_args = list(inspect.signature(cls.batch).parameters)
    assert batch_args == list(cls.inputs) + [p.name for p in cls.parameters]
    for parameter in cls.parameters:
        assert parameter.minimum <= parameter.default <= parameter.maximum
        assert parameter.description
    indicator = make(name)
    assert repr(indicator).startswith(type(indicator).__name__)
    assert indicator.warmup == cls.warmup_for() >= 1


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_nan_until_exactly_warmup(name):
    cls = INDICATORS[name]
    indicator = cls()
    data = market.synthetic(indicator.warmup + 50)
    for step, values in enumerate(zip(*_columns(cls, data)), start=1):
        indicator.update(*values)
        outputs = [getattr(indicator, output) for output in cls.outputs]
        warm = step >= indicator.warmup
        assert indicator.ready is warm, step
        assert all(math.isnan(v) != warm for v in outputs), (step, outputs)


@pytest.mark.parametrize("name", NAMES)
def test_snapshot_mid_stream_resumes_identically(name):
    cls = INDICATORS[name]
    data = market.synthetic(2_000)
    columns = _columns(cls, data)
    original = cls()
    market.run_incremental(original, [c[:900] for c in columns])
    restored = decode_state(encode_state(original), cls)
    rest = [c[900:] for c in columns]
    np.testing.assert_array_equal(market.run_incremental(original, rest), market.run_incremental(restored, rest))


@pytest.mark.parametrize("name", NAMES)
def test_reset_equals_fresh(name):
    cls = INDICATORS[name]
    data = market.synthetic(1_500)
    columns = _columns(cls, data)
    used = cls()
    market.run_incremental(used, columns)
    used.reset()
    np.testing.assert_array_equal(market.run_incremental(used, columns), market.run_incremental(cls(), columns))


@pytest.mark.parametrize("name", NAMES)
def test_state_does_not_grow(name):
    cls = INDICATORS[name]
    data = market.synthetic(6_000)
    indicator = cls()
    market.run_incremental(indicator, [c[:1_000] for c in _columns(cls, data)])
    early = len(encode_state(indicator))
    market.run_incremental(indicator, [c[1_000:] for c in _columns(cls, data)])
    assert len(encode_state(indicator)) <= early + 8  # room for the update counter's digits


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_non_finite_rows_are_skipped(name, data):
    cls = INDICATORS[name]
    clean = market.synthetic(600, seed=data.draw(st.integers(0, 10_000)))
    rows = data.draw(st.lists(st.integers(1, 599), min_size=1, max_size=40, unique=True))
    column = data.draw(st.sampled_from(cls.inputs))
    poison = data.draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    dirty = {k: v.copy() for k, v in clean.items()}
    dirty[column][rows] = poison
    kept = np.setdiff1d(np.arange(600), rows)
    expected = market.run_batch(cls, [clean[c][kept] for c in cls.inputs], {})
    for result in (
        market.run_batch(cls, _columns(cls, dirty), {}),
        market.run_incremental(cls(), _columns(cls, dirty)),
    ):
        np.testing.assert_array_equal(result[:, kept], expected)
        for row in sorted(rows):  # a skipped row repeats the previous output
            np.testing.assert_array_equal(result[:, row], result[:, row - 1])


def _outputs(indicator) -> list[float]:
    return [getattr(indicator, output) for output in indicator.outputs]


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_peeking_never_changes_state_and_equals_the_committed_value(name, data):
    cls = INDICATORS[name]
    market_data = market.synthetic(700, seed=data.draw(st.integers(0, 10_000)))
    columns = _columns(cls, market_data)
    prefix = data.draw(st.integers(0, 650))  # before, across and after the warm-up
    indicator = cls()
    market.run_incremental(indicator, [c[:prefix] for c in columns])
    before = encode_state(indicator)
    final = [float(c[prefix]) for c in columns]
    twin = None
    for _ in range(data.draw(st.integers(1, 4))):  # provisional rows of a forming bar, then its final row
        provisional = [data.draw(st.sampled_from([x, x * 1.01, x * 0.99, math.nan])) for x in final]
        twin = indicator.peek(*provisional, into=twin)
        assert encode_state(indicator) == before
    peeked = _outputs(indicator.peek(*final, into=twin))
    assert encode_state(indicator) == before
    indicator.update(*final)
    np.testing.assert_array_equal(peeked, _outputs(indicator))


CONSTANT = {
    "sma": lambda c: [c], "ema": lambda c: [c], "wma": lambda c: [c], "rsi": lambda c: [50.0],
    "macd": lambda c: [0.0, 0.0, 0.0], "roc": lambda c: [0.0], "stochastic": lambda c: [50.0, 50.0],
    "bollinger": lambda c: [c, c, c, 0.5, 0.0], "atr": lambda c: [0.0], "realised_volatility": lambda c: [0.0],
    "zscore": lambda c: [0.0], "donchian": lambda c: [c, c, c], "adx": lambda c: [0.0, 0.0, 0.0],
    "obv": lambda c: [0.0], "session_vwap": lambda c: [c], "volume_surge": lambda c: [1.0],
    "order_book_imbalance": lambda c: [0.0], "microprice": lambda c: [c], "trade_sign_imbalance": lambda c: [0.0],
    "vpin": lambda c: [0.0],
}  # fmt: skip


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=20, deadline=None)
@given(price=st.floats(0.01, 1e5), volume=st.floats(1.0, 1e7))
def test_constant_market_gives_the_neutral_value(name, price, volume):
    cls = INDICATORS[name]
    n = cls().warmup + 30
    columns = {c: np.full(n, price) for c in ("open", "high", "low", "close", "price", "bid", "ask")}
    columns |= {c: np.full(n, volume) for c in ("volume", "size", "bid_size", "ask_size")}
    columns["session"] = np.zeros(n)
    result = market.run_batch(cls, _columns(cls, columns), {})[:, -1]
    np.testing.assert_allclose(result, CONSTANT[name](price), rtol=1e-12, atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(start=st.floats(1.0, 1e4), step=st.floats(1e-3, 10.0), n=st.integers(600, 1_200))
def test_rising_market(start, step, n):
    close = start + step * np.arange(n)
    volume = np.full(n, 100.0)
    assert compute("rsi", {"close": close})["value"][-1] == pytest.approx(100.0)
    assert compute("roc", {"close": close})["value"][-1] > 0.0
    assert compute("macd", {"close": close})["macd"][-1] > 0.0
    assert compute("zscore", {"close": close})["value"][-1] > 0.0
    stochastic = compute("stochastic", {"high": close, "low": close, "close": close})
    assert stochastic["k"][-1] == pytest.approx(100.0)
    assert compute("donchian", {"high": close, "low": close})["upper"][-1] == close[-1]
    assert compute("obv", {"close": close, "volume": volume}, {"period": 20})["value"][-1] == 2_000.0
    assert compute("trade_sign_imbalance", {"price": close, "size": volume})["value"][-1] == 1.0
    adx = compute("adx", {"high": close + 0.5, "low": close - 0.5, "close": close})
    assert adx["plus_di"][-1] > adx["minus_di"][-1] == 0.0


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("ema", {"period": 0}, "params.period: 0 is out of range; use 2 to 2000"),
        ("ema", {"period": 2.5}, "params.period: expected a whole number, got 2.5"),
        ("ema", {"length": 3}, "params.length: ema has no parameter 'length'; its parameters are: period"),
        ("macd", {"fast": 30}, r"params.fast: fast \(30\) must be less than slow \(26\)"),
        ("bollinger", {"deviations": "2"}, "params.deviations: expected a number, got '2'"),
    ],
)
def test_bad_parameters_name_the_field_and_the_fix(name, params, message):
    with pytest.raises(ConfigError, match=message):
        check_params(name, params)
