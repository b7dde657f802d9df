"""Features: the batch matrix research trains on equals the incremental vector the live flow scores."""

from __future__ import annotations

import numpy as np
import pytest

from engine.calendar import CALENDARS, session_days
from engine.features import FeatureVector, feature_matrix, model_features
from engine.models import create_model
from engine.packs import load_pack
from engine.store import load_bars
from packs import OFFICIAL
from research.data import ImportOptions, import_bars
from research.synthetic import generate
from tests.conftest import shared_file


def _bar_for_bar(features, indicators, bars, session) -> np.ndarray:
    """Research's feature matrix, held bar for bar against the live vector's values and readiness."""
    matrix = feature_matrix(features, indicators, bars, session)
    vector = FeatureVector(features, indicators)
    for row in range(len(bars)):
        values = vector.update_bar(bars.open[row], bars.high[row], bars.low[row], bars.close[row], bars.volume[row], session[row])
        assert np.array_equal(values, matrix[row], equal_nan=True), row
        assert vector.ready == bool(np.isfinite(matrix[row]).all()), row
    return matrix


def test_swing_features_batch_equals_incremental_on_real_spy(tmp_path):
    import_bars(tmp_path, [shared_file("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv")],
                ImportOptions(ticker="SPY", cadence="1d"))
    bars, _ = load_bars(tmp_path, "SPY", "1d")
    pack = load_pack(OFFICIAL / "swingsigma")
    spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"},
                        indicators=["rsi", "macd", "bollinger", "atr", "adx", "donchian", "obv", "sma"])
    features = model_features(spec.features, spec.indicators)
    session, _ = session_days(bars.start, CALENDARS["us_equities"])
    matrix = feature_matrix(features, spec.indicators, bars, session)
    vector = FeatureVector(features, spec.indicators)
    for row in range(len(bars)):
        values = vector.update_bar(bars.open[row], bars.high[row], bars.low[row], bars.close[row], bars.volume[row], session[row])
        assert np.array_equal(values, matrix[row], equal_nan=True), row
    assert np.isfinite(matrix[-1]).all()


def test_a_row_with_an_infinite_feature_is_scored_by_neither_side():
    """Case 35: research takes a row with any non-finite feature as not warm; so does the live vector, which then scores
    nothing and alerts nothing. A session VWAP over a volume whose product with the price overflows is one such row."""
    from engine.bars import Bars

    indicators = {"session_vwap": {}, "sma": {"period": 5}}
    features = model_features(["session_vwap", "sma"], indicators)
    n = 40
    close = 100.0 + np.sin(np.arange(n))
    volume = np.full(n, 1000.0)
    volume[-1] = 1e307  # as a store that predates the import's magnitude check might hold: price x volume overflows
    bars = Bars("SPY", "1d", start=np.arange(n) * 86_400_000_000_000, end=(np.arange(n) + 1) * 86_400_000_000_000,
                open=close, high=close, low=close, close=close, volume=volume)
    session = np.arange(n) // 10  # four sessions: the VWAP resets at each
    matrix = feature_matrix(features, indicators, bars, session)
    vector = FeatureVector(features, indicators)
    for row in range(n):
        vector.update_bar(close[row], close[row], close[row], close[row], volume[row], session[row])
        assert vector.ready == bool(np.isfinite(matrix[row]).all()), row
    assert np.isinf(matrix[-1]).any() and not vector.ready
    assert np.isfinite(matrix[-2]).all(), "the bar before was a row to score"


def test_a_forming_bar_peeked_gives_the_features_of_its_close_and_commits_nothing(tmp_path):
    import_bars(tmp_path, [shared_file("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv")],
                ImportOptions(ticker="SPY", cadence="1d"))
    bars, _ = load_bars(tmp_path, "SPY", "1d")
    pack = load_pack(OFFICIAL / "swingsigma")
    spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"})
    features = model_features(spec.features, spec.indicators)
    session, _ = session_days(bars.start, CALENDARS["us_equities"])
    matrix = feature_matrix(features, spec.indicators, bars, session)
    vector = FeatureVector(features, spec.indicators)
    for row in range(len(bars)):
        first = bars.open[row], bars.high[row], bars.low[row], bars.close[row], bars.volume[row], session[row]
        morning = first[0], first[0], first[0], first[0], first[4] / 4, first[5]  # the bar an hour into the session
        vector.peek_bar(*morning)
        peeked = vector.peek_bar(*first)
        if peeked is None:
            assert np.isnan(matrix[row]).any(), row
        else:
            assert np.array_equal(peeked, matrix[row]), row
        values = vector.update_bar(*first)
        assert np.array_equal(values, matrix[row], equal_nan=True), row


@pytest.mark.parametrize("hole", [False, True])
def test_tick_features_are_sampled_from_the_last_tick_before_the_bar_closed(hole):
    """With a hole of three months between two stretches of trading, both sides start afresh after it: research from
    the ticks after the close of the first bar after the hole, the live vector at that close."""
    from datetime import date

    from engine.bars import COLUMNS, Bars

    us = CALENDARS["us_equities"]
    bars, ticks = generate(["SPY"], "1m", 2, us, seed=5, ticks=True)["SPY"]
    if hole:
        later, later_ticks = generate(["SPY"], "1m", 2, us, seed=6, ticks=True, start=date(2024, 9, 3))["SPY"]
        assert later.start[0] - bars.end[-1] > 60 * 86_400 * 10**9
        bars = Bars("SPY", "1m", **{c: np.concatenate([getattr(bars, c), getattr(later, c)]) for c in COLUMNS})
        ticks = {name: np.concatenate([ticks[name], later_ticks[name]]) for name in ticks}
    pack = load_pack(OFFICIAL / "zerosigma")
    spec = create_model(pack, strategy="order_flow_scalp", settings={"underlying": "SPY"})
    features = model_features(spec.features, spec.indicators)
    session, _ = session_days(bars.start, us)
    matrix = feature_matrix(features, spec.indicators, bars, session, ticks)
    vector = FeatureVector(features, spec.indicators)
    position = 0
    for row in range(len(bars)):
        while position < len(ticks["ts"]) and ticks["ts"][position] < bars.end[row]:
            vector.update_tick(*(ticks[field][position] for field in ("ts", "price", "size", "bid", "ask", "bid_size", "ask_size")))
            position += 1
        values = vector.update_bar(bars.open[row], bars.high[row], bars.low[row], bars.close[row], bars.volume[row], session[row])
        assert np.array_equal(values, matrix[row], equal_nan=True), row
    assert np.isfinite(matrix[-1]).all()


def test_a_long_hole_in_the_history_starts_the_features_afresh_in_research_and_live_alike(tmp_path):
    """Case 16 on real QQQ daily bars with their 6.3-year hole (2004-11-30 to 2011-03-23): no value is carried across
    it. Both sides start every indicator afresh at the first bar after it, warm up again, and agree bar for bar."""
    from engine.features import RESTART_AFTER_DAYS, restarts

    lean = {"header": False, "time_format": "%Y%m%d %H:%M", "price_scale": 10000,
            "factor_file": str(shared_file("lean-us-equity-daily/factor_file_qqq.csv"))}  # adjusted: its 2000 split is no cliff
    import_bars(tmp_path, [shared_file("lean-us-equity-daily/qqq.csv")], ImportOptions(ticker="QQQ", cadence="1d", **lean))
    bars, _ = load_bars(tmp_path, "QQQ", "1d")
    session, _ = session_days(bars.start, CALENDARS["us_equities"])
    holes, jumps = restarts(session, bars.close)
    [hole] = [*holes.tolist(), *jumps.tolist()]  # QQQ came back 42.5% higher: past the level jump, so that bar is skipped too
    first = hole + (hole in jumps)
    assert session[hole] - session[hole - 1] > 6 * 365 > RESTART_AFTER_DAYS and (np.diff(session[:hole]) <= 7).all()
    pack = load_pack(OFFICIAL / "swingsigma")
    spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "QQQ"})
    features = model_features(spec.features, spec.indicators)
    matrix = _bar_for_bar(features, spec.indicators, bars, session)
    assert np.isfinite(matrix[hole - 1]).all() and np.isnan(matrix[hole]).any(), "warm before the hole, cold after it"
    assert np.isfinite(matrix[-1]).all(), "warm again"
    fresh = feature_matrix(features, spec.indicators, bars.select(np.arange(len(bars)) >= first), session[first:])
    assert np.array_equal(matrix[first:], fresh, equal_nan=True), "after the hole, as if the history began there"


def test_a_split_in_unadjusted_bars_is_scored_by_nothing_and_the_features_start_afresh_after_it(tmp_path):
    """Case 14 on Lean's raw AAPL minute bars over the 7:1 split of 2014-06-09: its first bar opens at 645.57 and closes
    at 92.42. That bar has no features on either side (no crash signal can come of it), both start afresh after it, and
    they agree bar for bar."""
    from engine.features import restarts

    lean = {"header": False, "day_offset_unit": "ms", "timezone": "America/New_York", "price_scale": 10000}
    files = sorted(shared_file("lean-aapl-minute-split/factor_file_aapl.csv").parent.glob("*_minute_trade.csv"))
    import_bars(tmp_path, files, ImportOptions(ticker="AAPL", cadence="1m", **lean))
    bars, _ = load_bars(tmp_path, "AAPL", "1m")
    session, _ = session_days(bars.start, CALENDARS["us_equities"])
    holes, jumps = restarts(session, bars.close)
    [split] = jumps.tolist()
    assert not len(holes) and bars.open[split] > 600 > 100 > bars.close[split] and bars.close[split - 1] > 600
    pack = load_pack(OFFICIAL / "zerosigma")
    spec = create_model(pack, strategy="vwap_reversion", settings={"underlying": "AAPL"})
    features = model_features(spec.features, spec.indicators)
    matrix = _bar_for_bar(features, spec.indicators, bars, session)
    assert np.isfinite(matrix[split - 1]).all() and np.isnan(matrix[split]).all(), "warm before, nothing at the split"
    fresh = feature_matrix(features, spec.indicators, bars.select(np.arange(len(bars)) > split), session[split + 1 :])
    assert np.array_equal(matrix[split + 1 :], fresh, equal_nan=True), "after it, as if the history began there"
    assert np.isfinite(matrix[-1]).all(), "warm again by the day's end"


def test_a_hole_restarts_with_its_bar_and_a_jump_after_its_bar():
    """The two restart rules, on a three-bar moving average: after a hole of 40 days the first bar is the new stretch's
    first; a bar closing 50% below the last is scored by nothing and the stretch starts with the bar after it."""
    from engine.bars import Bars

    close = np.array([100.0, 101, 102, 103, 104, 105, 106, 53, 54, 55, 56, 57])
    session = np.array([0, 1, 2, 3, 44, 45, 46, 47, 48, 49, 50, 51])  # a hole before row 4, a jump at row 7
    day = 86_400_000_000_000
    bars = Bars("T", "1d", start=session * day, end=(session + 1) * day, open=close, high=close, low=close, close=close,
                volume=np.ones(len(close)))  # fmt: skip
    indicators = {"sma": {"period": 3}}
    features = model_features(["sma"], indicators)
    matrix = feature_matrix(features, indicators, bars, session)[:, 0] * close
    vector = FeatureVector(features, indicators)
    live = [vector.update_bar(c, c, c, c, 1.0, s)[0] * c for c, s in zip(close, session, strict=True)]
    assert np.array_equal(matrix, np.array(live), equal_nan=True)
    expected = [np.nan, np.nan, 101, 102, np.nan, np.nan, 105, np.nan, np.nan, np.nan, 55, 56]
    assert np.allclose(matrix, expected, equal_nan=True), matrix


class _Features:
    """Stands in for a scorer: a manifest naming the features and no graph; every row scores 0.5."""

    def __init__(self, features: list[str], indicators: dict) -> None:
        from types import SimpleNamespace

        self.manifest = SimpleNamespace(features=features, indicators=indicators)

    def check(self, features, dtype, warmup) -> None:
        pass

    def score(self, rows: np.ndarray) -> np.ndarray:
        return np.full(len(rows), 0.5)


@pytest.mark.parametrize(("pack_name", "strategy", "cadence", "evaluation", "sessions"), [
    ("swingsigma", "mean_reversion", "1d", "15m", 120),
    ("trendsigma", "channel_breakout", "1w", "1h", 700),
])  # fmt: skip
def test_evaluated_inside_its_bars_research_reads_the_features_the_live_pipeline_peeks(pack_name, strategy, cadence, evaluation,
                                                                                       sessions):
    """A daily model every 15 minutes, a weekly one every hour: research's rows (`evaluation_matrix` over the stored bars
    and intervals) are, bit for bit, what the live `Pipeline` gives the same intervals as a bar feed after warming on
    the bars before them. Each bar's last interval reads its committed features; the others peek, and what they peek
    is the bar so far; a peek never moves what a close commits."""
    from engine.bars import resample
    from engine.calendar import ExchangeClock
    from engine.features import evaluation_matrix, evaluation_points
    from engine.pipeline import Pipeline
    from engine.schemas import Bar

    from research.sweep import model_rows

    us = CALENDARS["us_equities"]
    minutes, _ = generate(["SPY"], "1m", sessions, us, seed=9)["SPY"]
    stored = resample(minutes, evaluation, us)
    bars, points, _ = model_rows(resample(minutes, cadence, us), stored, us)  # each over its bucket, as the builders make it
    assert len(points) == len(stored) and (points.end != stored.end).any(), "some stored intervals miss their last minute"
    pack = load_pack(OFFICIAL / pack_name)
    spec = create_model(pack, strategy=strategy, settings={"ticker": "SPY"}, evaluation=evaluation)
    features = model_features(spec.features, spec.indicators)
    session, _ = session_days(bars.start, us)
    matrix = evaluation_matrix(features, spec.indicators, bars, session, points)
    row, closes = evaluation_points(bars, points)
    # Every interval is in a bar, and every bar closed by one but a week whose Friday is a holiday: it ends, on the
    # calendar, after its last interval, and commits at the next one, with no decision at its close.
    assert (row >= 0).all() and len(bars) - 10 < closes.sum() <= len(bars)
    committed = feature_matrix(features, spec.indicators, bars, session)[row[closes]]
    ready = np.isfinite(committed).all(axis=1)  # a close reads what research trains on at closes, once every feature is
    assert np.array_equal(matrix[closes][ready], committed[ready]) and np.isnan(matrix[closes][~ready]).all()
    assert np.isfinite(matrix[~closes]).all(axis=1).sum() > 100, "provisional rows to compare"

    first = int(np.searchsorted(points.start, bars.start[len(bars) // 2]))  # live from the middle, warmed on the bars before
    pipeline = Pipeline("SPY", 0)
    pipeline.subscribe("m", _Features(spec.features, spec.indicators), cadence, ExchangeClock(us), first=int(points.start[first]),
                       history=bars, evaluation=evaluation, history_points=points)  # fmt: skip
    live = np.full((len(points), len(features)), np.nan)
    provisional = np.zeros(len(points), dtype=bool)
    for k in range(first, len(points)):
        pipeline.bar(Bar(ticker="SPY", start=int(stored.start[k]), end=int(stored.end[k]), open=float(stored.open[k]),
                         high=float(stored.high[k]), low=float(stored.low[k]), close=float(stored.close[k]),
                         volume=float(stored.volume[k])))  # the stored bar, as a bar feed gives it  # fmt: skip
        [closed] = pipeline.advance(int(points.end[k]), 0)  # one row per interval, none for the bar it closes
        assert closed.scored.bar.end == points.end[k] and closed.scored.closes == closes[k]
        provisional[k] = not closed.scored.closes
        if closed.features is not None:
            live[k] = closed.features[0]
    assert np.array_equal(live[first:], matrix[first:].astype(np.float32), equal_nan=True)
    assert provisional[first:].sum() > 0 and np.isfinite(live[first:][provisional[first:]]).all(axis=1).any()
