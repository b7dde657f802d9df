"""The preview: warmed on the history stored before its window, warm-up counted apart from missing data."""

from __future__ import annotations

import numpy as np

from engine.bars import COLUMNS, Bars
from engine.calendar import CALENDARS
from engine.models import create_model
from engine.packs import load_pack
from engine.store import load_bars, store_bars
from packs import OFFICIAL
from research.data import ImportOptions, import_bars
from research.preview import preview
from tests.conftest import shared_file

SPY = "spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv"


def _spec():
    return create_model(load_pack(OFFICIAL / "swingsigma"), strategy="momentum_swing", settings={"ticker": "SPY"})


def test_a_window_inside_the_stored_history_is_warmed_before_it(tmp_path):
    import_bars(tmp_path, [shared_file(SPY)], ImportOptions(ticker="SPY", cadence="1d"))
    result = preview(tmp_path, _spec(), window=300)  # shorter than ADX's 278-bar warm-up plus a year
    assert result.bars == 300 and result.history == result.warmup == 278
    assert all(column.nan_share == 0.0 and column.warmup_share == 0.0 for column in result.columns)
    assert result.status == "PASS"


def test_warm_up_the_store_cannot_cover_is_reported_apart_from_missing_data(tmp_path):
    import_bars(tmp_path, [shared_file(SPY)], ImportOptions(ticker="SPY", cadence="1d"))
    spec = _spec()
    result = preview(tmp_path, spec, window=500)  # the store holds 2,517 bars: ask for all of them
    whole = preview(tmp_path, spec, window=10_000)
    assert whole.history == 0 and whole.bars > 2_000
    shares = {column.feature: column for column in whole.columns}
    assert shares["adx.adx"].warmup_share == 277 / whole.bars and shares["adx.adx"].nan_share == 0.0
    assert shares["roc"].warmup_share == 10 / whole.bars
    assert whole.status == "PASS" and "Warming up" in whole.render()
    assert "Warming up" not in result.render()


def test_missing_data_inside_the_window_still_fails(tmp_path):
    import_bars(tmp_path, [shared_file(SPY)], ImportOptions(ticker="SPY", cadence="1d"))
    bars, _ = load_bars(tmp_path, "SPY", "1d")
    volume = bars.volume.copy()
    volume[:1_200] = np.nan  # a vendor whose early years have no volumes (indicators hold their value over a hole)
    store_bars(tmp_path, Bars(bars.ticker, bars.cadence, *(volume if name == "volume" else getattr(bars, name) for name in COLUMNS)),
               CALENDARS["us_equities"], source="test")  # fmt: skip
    result = preview(tmp_path, _spec(), window=10_000)
    surge = next(column for column in result.columns if column.feature == "volume_surge")
    assert surge.warmup_share == 19 / result.bars and surge.nan_share == 1_200 / result.bars and result.status == "FAIL"
