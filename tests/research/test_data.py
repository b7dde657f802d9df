"""Importing real vendor files: time zones, layouts, repairs, refusals, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from engine.calendar import CALENDARS
from engine.errors import ConfigError, SigmaError
from engine.store import bars_path, datasets, load_bars, store_bars
from research.data import ImportOptions, import_bars, resample_dataset
from tests.conftest import shared_file

LEAN_DAILY = {"header": False, "time_format": "%Y%m%d %H:%M", "price_scale": 10000}
LEAN_MINUTE = {"header": False, "day_offset_unit": "ms", "timezone": "America/New_York", "price_scale": 10000}

REAL = [
    ("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv", {"ticker": "SPY", "cadence": "1d"}, 2519),
    ("aapl-daily-yahoo/yahoofinance-AAPL-20040819-20180120.csv", {"ticker": "AAPL", "cadence": "1d"}, 3379),
    ("goog-daily-raw/GOOG.csv", {"ticker": "GOOG", "cadence": "1d"}, 2148),
    ("lean-us-equity-daily/qqq.csv", {"ticker": "QQQ", "cadence": "1d", **LEAN_DAILY}, 3964),
    ("lean-spy-minute/20131007_spy_minute_trade.csv", {"ticker": "SPY", "cadence": "1m", **LEAN_MINUTE}, 828),
    ("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv", {"ticker": "SPX", "cadence": "1m", "timezone": "America/New_York"}, 1563),
    ("cme-6e-futures-minute/6EH4.XCME_1min_bars_20240101_20240131.csv.gz",
     {"ticker": "6EH4", "cadence": "1m", "calendar": "cme_globex", "timezone": "UTC"}, 29996),
    ("eurusd-hourly/EURUSD.csv", {"ticker": "EURUSD", "cadence": "1h", "calendar": "fx", "timezone": "UTC"}, 5000),
    ("crypto-ethbtc-5m/ETH_BTC-5m.csv", {"ticker": "ETHBTC", "cadence": "5m", "calendar": "crypto"}, 5760),
]  # fmt: skip


@pytest.mark.parametrize(("relative", "options", "rows"), REAL, ids=[r[0].split("/")[0] for r in REAL])
def test_real_datasets_import_cleanly(tmp_path, relative, options, rows):
    info, report = import_bars(tmp_path, [shared_file(relative)], ImportOptions(**options))
    assert info.rows == rows
    assert report.status != "FAIL"
    bars, stored = load_bars(tmp_path, options["ticker"], options["cadence"])
    assert stored == info and len(bars) == rows
    assert np.all(np.diff(bars.start) > 0)
    assert np.all(bars.high >= np.maximum(bars.open, bars.close))


def test_yahoo_ohlc_violations_are_repaired_and_counted(tmp_path):
    path = shared_file("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv")
    info, report = import_bars(tmp_path, [path], ImportOptions(ticker="SPY", cadence="1d"))
    finding = next(f for f in report.findings if f.check == "OHLC consistency")
    assert finding.status == "WARN" and finding.count == 2 and "2015-03-05" in finding.examples[0]
    assert info.repaired == 2


def test_daily_dates_become_the_session_in_new_york(tmp_path):
    path = shared_file("spy-daily-yahoo/yahoofinance-SPY-20080101-20180101.csv")
    import_bars(tmp_path, [path], ImportOptions(ticker="SPY", cadence="1d"))
    bars, _ = load_bars(tmp_path, "SPY", "1d")
    # 2007-12-31 09:30 EST is 14:30 UTC; 2008-07-01 09:30 EDT is 13:30 UTC (daylight saving).
    assert str(np.datetime64(int(bars.start[0]), "ns")) == "2007-12-31T14:30:00.000000000"
    july = bars.start[(bars.start > np.datetime64("2008-07-01").astype("datetime64[ns]").astype(np.int64))][0]
    assert str(np.datetime64(int(july), "ns")) == "2008-07-01T13:30:00.000000000"


def test_lean_minute_times_are_new_york_local_and_dst_aware(tmp_path):
    path = shared_file("lean-spy-minute/20131007_spy_minute_trade.csv")
    import_bars(tmp_path, [path], ImportOptions(ticker="SPY", cadence="1m", **LEAN_MINUTE))
    bars, _ = load_bars(tmp_path, "SPY", "1m")
    first = np.loadtxt(path, delimiter=",", max_rows=1)
    assert bars.open[0] == first[1] / 10000
    assert str(np.datetime64(int(bars.start[0]), "ns")) == "2013-10-07T08:00:00.000000000"  # 04:00 EDT


def test_naive_intraday_times_without_a_time_zone_are_refused(tmp_path):
    path = shared_file("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv")
    with pytest.raises(ConfigError) as caught:
        import_bars(tmp_path, [path], ImportOptions(ticker="SPX", cadence="1m"))
    assert caught.value.field == "timezone"
    assert datasets(tmp_path) == []


def test_split_factor_file_removes_the_seven_for_one_cliff(tmp_path):
    raw = shared_file("lean-us-equity-daily/aapl.csv")
    factors = shared_file("lean-us-equity-daily/factor_file_aapl.csv")
    import_bars(tmp_path, [raw], ImportOptions(ticker="RAW", cadence="1d", **LEAN_DAILY))
    import_bars(tmp_path, [raw], ImportOptions(ticker="ADJ", cadence="1d", factor_file=str(factors), **LEAN_DAILY))
    for ticker, worst in (("RAW", -0.80), ("ADJ", -0.10)):
        bars, _ = load_bars(tmp_path, ticker, "1d")
        june = np.searchsorted(bars.start, np.datetime64("2014-06-09T13:30").astype("datetime64[ns]").astype(np.int64))
        move = bars.close[june] / bars.close[june - 1] - 1
        assert (move < worst) if ticker == "RAW" else (move > worst)


def test_bad_data_fails_and_nothing_is_stored(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n2020-01-03,10,11,9,10,100\n2020-01-02,10,11,9,-1,100\n")
    with pytest.raises(SigmaError) as caught:
        import_bars(tmp_path / "home", [path], ImportOptions(ticker="BAD", cadence="1d"))
    assert "monotonic timestamps" in str(caught.value) and "prices" in str(caught.value)
    assert datasets(tmp_path / "home") == []


def test_an_existing_dataset_needs_replace(tmp_path):
    path = shared_file("goog-daily-raw/GOOG.csv")
    import_bars(tmp_path, [path], ImportOptions(ticker="GOOG", cadence="1d"))
    with pytest.raises(ConfigError, match="--replace"):
        import_bars(tmp_path, [path], ImportOptions(ticker="GOOG", cadence="1d"))
    import_bars(tmp_path, [path], ImportOptions(ticker="GOOG", cadence="1d", replace=True))


def test_resampling_minutes_to_hours_and_days_keeps_volume_and_extremes(tmp_path):
    path = shared_file("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv")
    import_bars(tmp_path, [path], ImportOptions(ticker="SPX", cadence="1m", timezone="America/New_York"))
    minutes, _ = load_bars(tmp_path, "SPX", "1m")
    for cadence, count in (("1h", 4 * 7), ("1d", 4)):
        info = resample_dataset(tmp_path, "SPX", "1m", cadence)
        coarse, _ = load_bars(tmp_path, "SPX", cadence)
        assert info.rows == len(coarse) and len(coarse) >= count
        assert coarse.volume.sum() == minutes.volume.sum()
        assert coarse.high.max() == minutes.high.max() and coarse.low.min() == minutes.low.min()
    daily, _ = load_bars(tmp_path, "SPX", "1d")
    assert daily.open[0] == minutes.open[0] and daily.close[-1] == minutes.close[-1]


def test_synthetic_market_is_seeded_and_per_ticker(tmp_path):
    from research.synthetic import generate

    us = CALENDARS["us_equities"]
    one = generate(["SPY"], "1d", 300, us, seed=1)["SPY"][0]
    again = generate(["QQQ", "SPY"], "1d", 300, us, seed=1)["SPY"][0]
    other = generate(["SPY"], "1d", 300, us, seed=2)["SPY"][0]
    assert np.array_equal(one.close, again.close) and not np.array_equal(one.close, other.close)
    minutes, ticks = generate(["SPY"], "1m", 3, us, seed=1, ticks=True)["SPY"]
    assert np.all(ticks["ask"] > ticks["bid"]) and np.all(np.diff(ticks["ts"]) >= 0)
    assert minutes.volume.sum() == ticks["size"].sum()
    store_bars(tmp_path, minutes, us, source="synthetic")
    assert datasets(tmp_path)[0].rows == len(minutes)


def test_resampling_refuses_a_finer_or_misaligned_target_and_keeps_stored_bars_without_replace(tmp_path, monkeypatch):
    """`sigma data resample SPY --from 1d --to 1m` once replaced real minute bars with daily bars labelled 1m."""
    from cli import main
    from engine.cadence import parse_cadence, rolls_up

    path = shared_file("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv")
    import_bars(tmp_path, [path], ImportOptions(ticker="SPX", cadence="1m", timezone="America/New_York"))
    resample_dataset(tmp_path, "SPX", "1m", "1d")
    minutes = bars_path(tmp_path, "SPX", "1m").read_bytes()
    for source, target in (("1d", "1m"), ("1m", "1m"), ("5m", "3m")):
        with pytest.raises(ConfigError, match="cannot be made of"):
            resample_dataset(tmp_path, "SPX", source, target)
    assert bars_path(tmp_path, "SPX", "1m").read_bytes() == minutes, "the minute bars are untouched"
    with pytest.raises(ConfigError, match="--replace"):
        resample_dataset(tmp_path, "SPX", "1m", "1d")
    resample_dataset(tmp_path, "SPX", "1m", "1d", replace=True)
    monkeypatch.setenv("SIGMA_HOME", str(tmp_path))
    assert main(["data", "resample", "SPX", "--from", "1d", "--to", "1m"]) == 2
    assert main(["data", "synth", "--tickers", "SPX", "--cadence", "1m", "--sessions", "2"]) == 2
    assert bars_path(tmp_path, "SPX", "1m").read_bytes() == minutes
    ok = [("1m", "5m"), ("5m", "1h"), ("1m", "1d"), ("1h", "1d"), ("1d", "1w"), ("1d", "1mo"), ("1w", "2w")]
    refused = [("1d", "1m"), ("1h", "1m"), ("5m", "3m"), ("1w", "1mo"), ("2d", "1w"), ("1h", "1h")]
    assert all(rolls_up(parse_cadence(a), parse_cadence(b)) for a, b in ok)
    assert not any(rolls_up(parse_cadence(a), parse_cadence(b)) for a, b in refused)
