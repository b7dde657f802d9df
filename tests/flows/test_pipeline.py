"""One kernel per ticker, two drivers: the `Pipeline` the live step feeds bar by bar is the one research replays history through."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from engine.calendar import CALENDARS, ExchangeClock, session_days
from engine.pipeline import Pipeline
from engine.schemas import Bar, Tick
from engine.snapshot import decode_state, encode_state
from engine.store import load_bars
from engine.workspace import Workspace
from research import review
from tests.flows.conftest import _clock

US = CALENDARS["us_equities"]
SECOND = 1_000_000_000


def _model(home, trained_id):
    with Workspace(home, clock=_clock) as space:
        scorer = review.load_scorer(space, trained_id)
    bars, _ = load_bars(home, "SPY", scorer.manifest.cadence)
    return scorer, bars


def _bar(bars, t) -> Bar:
    return Bar(ticker="SPY", start=int(bars.start[t]), end=int(bars.end[t]), open=float(bars.open[t]), high=float(bars.high[t]),
               low=float(bars.low[t]), close=float(bars.close[t]), volume=float(bars.volume[t]))  # fmt: skip


@pytest.mark.parametrize("cut", [0, 700, 2500])
def test_the_live_driver_with_a_snapshot_anywhere_scores_what_research_replays(served, cut):
    home, _, trained_id = served
    scorer, bars = _model(home, trained_id)
    replayed = review.replay_history(home, scorer, bars, US).probability
    assert np.isfinite(replayed).sum() > len(bars) // 2, "the model is warm for most of the history"

    # As the flow's ticker step feeds a bar feed: each bar moves event time to its last nanosecond, so a bar closes
    # when the next one arrives, the lateness later; the state is snapshotted and restored at ``cut``.
    live = Pipeline("SPY", 2 * SECOND)
    live.subscribe(trained_id, scorer, scorer.manifest.cadence, ExchangeClock(US))
    closes = []
    for t in range(len(bars)):
        if t == cut:
            live = decode_state(encode_state(live), Pipeline)
            live.subscribe(trained_id, scorer, scorer.manifest.cadence, ExchangeClock(US))  # re-binds the scorer only
        assert live.bar(_bar(bars, t)) is None
        closes += live.advance(int(bars.end[t]) - 1, received=t)
    closes += live.close_all(received=len(bars))
    ohlcv = [(b.ticker, b.start, b.end, b.open, b.high, b.low, b.close, b.volume) for b in (c.scored.bar for c in closes)]
    assert ohlcv == [msgspec.structs.astuple(_bar(bars, t))[:8] for t in range(len(bars))], "the stored bars, one Bar each"
    probabilities = [np.nan if c.features is None else float(scorer.score(c.features)[0]) for c in closes]
    np.testing.assert_array_equal(probabilities, replayed)
    session, _ = session_days(bars.start, US)
    holes = int(((bars.start[1:] != bars.end[:-1]) & (session[1:] == session[:-1])).sum())
    assert live.bars == len(bars) and live.gaps == holes > 0, "the synthetic market skips a minute now and then"


def test_refused_input_is_counted_and_a_new_price_level_restarts_the_features(served):
    home, _, trained_id = served
    scorer, bars = _model(home, trained_id)
    pipeline = Pipeline("SPY", 0)
    pipeline.subscribe(trained_id, scorer, scorer.manifest.cadence, ExchangeClock(US), first=int(bars.end[-1]), history=bars)
    first = int(bars.end[-1]) + 60 * 60 * SECOND  # the next session's first hour
    assert pipeline.bar(Bar(ticker="SPY", start=first, end=first + 60 * SECOND, open=-1.0, high=1.0, low=-1.0, close=1.0)) == ("bad_price", "")
    assert pipeline.bar(Bar(ticker="SPY", start=first, end=first + 60 * SECOND, open=100.0, high=101.0, low=99.0, close=100.5)) is None
    assert pipeline.bar(Bar(ticker="SPY", start=first, end=first + 60 * SECOND, open=100.0, high=101.0, low=99.0, close=100.5))[0] == "duplicate_bar"
    [closed] = pipeline.advance(first + 60 * SECOND, received=0)
    assert closed.features is not None, "warmed from the stored history, the first live bar has every feature"
    price = float(bars.close[-1])
    ts = first + 60 * SECOND
    for i in range(40):  # steady prints, then a 7:1 split that holds
        assert pipeline.tick(Tick(ticker="SPY", ts=ts + i * SECOND, price=price, size=1.0)) is None
    verdicts = [pipeline.tick(Tick(ticker="SPY", ts=ts + (50 + i) * SECOND, price=price / 7, size=1.0)) for i in range(4)]
    assert [v and v[0] for v in verdicts] == ["outlier", "outlier", None, None]
    assert pipeline.refused == {"bad_price": 1, "duplicate_bar": 1, "outlier": 2, "level_shift": 1}
    [after] = pipeline.advance(ts + 120 * SECOND, received=0)
    assert after.features is None, "the indicators start again at the new level"
    later = ts + 45 * 86_400 * SECOND  # 45 days on: past the hole after which features start afresh
    assert pipeline.bar(Bar(ticker="SPY", start=later, end=later + 60 * SECOND, open=price / 7, high=price / 7, low=price / 7,
                            close=price / 7)) is None  # fmt: skip
    pipeline.advance(later + 60 * SECOND, received=0)
    assert pipeline.refused["features_restarted"] == 2, "the split's bar and the hole after it each restart the features"


def test_a_new_price_level_short_of_a_split_is_counted_and_the_features_go_on_as_in_research(served):
    """A 6% gap on news: the screen holds out two prints, adopts the level at the third and counts it; the features go on,
    as research's do over the same bars (only a bar across a split's jump starts them afresh)."""
    home, _, trained_id = served
    scorer, bars = _model(home, trained_id)
    pipeline = Pipeline("SPY", 0)
    pipeline.subscribe(trained_id, scorer, scorer.manifest.cadence, ExchangeClock(US), first=int(bars.end[-1]), history=bars)
    price = float(bars.close[-1])
    ts = int(bars.end[-1]) + 60 * 60 * SECOND  # the next session's first hour
    for i in range(40):
        assert pipeline.tick(Tick(ticker="SPY", ts=ts + i * SECOND, price=price, size=1.0)) is None
    [before] = pipeline.advance(ts + 60 * SECOND, received=0)
    verdicts = [pipeline.tick(Tick(ticker="SPY", ts=ts + (60 + i) * SECOND, price=price * 1.06, size=1.0)) for i in range(4)]
    assert [v and v[0] for v in verdicts] == ["outlier", "outlier", None, None] and pipeline.refused["level_shift"] == 1
    [after] = pipeline.advance(ts + 120 * SECOND, received=0)
    assert before.features is not None and after.features is not None, "no restart: the indicators go on at the new level"
    assert "features_restarted" not in pipeline.refused


def test_real_fx_quotes_keep_a_locked_quote_with_its_remark_and_refuse_no_quote_as_crossed():
    """Case 12 on TrueFX USD/JPY top of book: its one locked quote (bid == ask) is kept and counted, none is crossed."""
    import csv
    from datetime import datetime

    from engine.alerts import nanoseconds
    from tests.conftest import shared_file

    with shared_file("fx-quote-ticks/truefx-usdjpy-ticks.csv").open() as handle:
        rows = [(nanoseconds(datetime.fromisoformat(row["timestamp"])), float(row["bid"]), float(row["ask"])) for row in csv.DictReader(handle)]
    locked = sum(bid == ask for _, bid, ask in rows)
    assert locked == 1 and len(rows) == 1000
    pipeline = Pipeline("USDJPY", 0)
    verdicts = [pipeline.tick(Tick(ticker="USDJPY", ts=ts, bid=bid, ask=ask)) for ts, bid, ask in rows]
    assert pipeline.refused.get("locked_quote") == locked and "crossed_quote" not in pipeline.refused
    kept = sum(verdict is None for verdict in verdicts)
    assert kept == len(rows) - pipeline.refused.get("duplicate", 0), "every quote kept but an exact repeat"
