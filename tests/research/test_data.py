"""Importing real vendor files: time zones, layouts, repairs, refusals, resampling."""

from __future__ import annotations

import numpy as np
import pytest

from engine.calendar import CALENDARS, session_days
from engine.errors import ConfigError, SigmaError
from engine.store import bars_path, dataset, datasets, load_bars, store_bars
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
    raw_bars, adjusted = load_bars(tmp_path, "RAW", "1d")[0], load_bars(tmp_path, "ADJ", "1d")[0]
    # AAPL's splits: 2:1 on 2005-02-28, 7:1 on 2014-06-09, 4:1 on 2020-08-31. Each is a cliff in the raw series, on its
    # day; the adjusted series moves by less than 10% on the day before, on the day and on the day after (a factor
    # applied a day early or late would leave the cliff there).
    for day, ratio in (("2005-02-28", 2), ("2014-06-09", 7), ("2020-08-31", 4)):
        t = int(np.searchsorted(raw_bars.start, np.datetime64(f"{day}T00:00").astype("datetime64[ns]").astype(np.int64)))
        raw_moves = raw_bars.close[t - 1 : t + 2] / raw_bars.close[t - 2 : t + 1] - 1
        assert raw_moves[1] < 1 / ratio - 1 + 0.1 and (np.abs(raw_moves[[0, 2]]) < 0.1).all(), day
        adjusted_moves = adjusted.close[t - 1 : t + 2] / adjusted.close[t - 2 : t + 1] - 1
        assert (np.abs(adjusted_moves) < 0.1).all(), (day, adjusted_moves)
    # Case 15: the adjusted history ends at the raw price, so a raw live feed continues a model warmed on it without a
    # jump at the join; only corporate actions after the history's end differ, and a split then is a level shift.
    assert adjusted.close[-1] == raw_bars.close[-1] and abs(adjusted.close[-2] / raw_bars.close[-2] - 1) < 0.01
    # The factor file's split factors alone make split-adjusted history, which a raw feed continues; its price factors
    # (dividends) come on top by default, as total return.
    import_bars(tmp_path, [raw], ImportOptions(ticker="SPL", cadence="1d", factor_file=str(factors), adjustment="split", **LEAN_DAILY))
    split = load_bars(tmp_path, "SPL", "1d")[0]
    assert [dataset(tmp_path, t, "1d").adjustment for t in ("RAW", "ADJ", "SPL")] == ["raw", "total_return", "split"]
    dividends = adjusted.close / split.close
    assert split.close[-1] == raw_bars.close[-1] and dividends[0] < 0.9 and np.all(np.diff(dividends) >= -1e-12)
    t = int(np.searchsorted(raw_bars.start, np.datetime64("2014-06-09T00:00").astype("datetime64[ns]").astype(np.int64)))
    assert split.close[t - 1] == pytest.approx(raw_bars.close[t - 1] / 7 / 4, rel=1e-5)  # 7:1, then 4:1 in 2020 (factors to 7 digits)
    with pytest.raises(ConfigError, match="'raw' is not what a factor file makes.*split, total_return"):
        import_bars(tmp_path, [raw], ImportOptions(ticker="BAD", cadence="1d", factor_file=str(factors), adjustment="raw", **LEAN_DAILY))


@pytest.mark.parametrize(("rows", "named"), [
    ("2020-01-03,10,11,9,10,100\n2020-01-02,10,11,9,-1,100", ["monotonic timestamps", "prices"]),
    ("2020-01-02,10,11,9,10,100\n2020-01-03,10,1e200,9,10,100", ["1e15 or more", "--price-scale"]),  # case 35: no market trades there
])  # fmt: skip
def test_bad_data_fails_and_nothing_is_stored(tmp_path, rows, named):
    path = tmp_path / "bad.csv"
    path.write_text(f"Date,Open,High,Low,Close,Volume\n{rows}\n")
    with pytest.raises(SigmaError) as caught:
        import_bars(tmp_path / "home", [path], ImportOptions(ticker="BAD", cadence="1d"))
    assert all(words in str(caught.value) for words in named), str(caught.value)
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


def test_a_fixed_offset_zone_and_a_daylight_saving_zone_agree_in_winter_and_part_in_summer(tmp_path):
    """Case 20: a file written in fixed EST (UTC-5 all year) is read as that, not as New York time."""
    winter = shared_file("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv")  # after the 2019-11-03 change
    firsts = {}
    for zone in ("America/New_York", "Etc/GMT+5"):
        import_bars(tmp_path / zone.replace("/", "-"), [winter], ImportOptions(ticker="SPX", cadence="1m", timezone=zone))
        bars, _ = load_bars(tmp_path / zone.replace("/", "-"), "SPX", "1m")
        firsts[zone] = int(bars.start[0])
    assert firsts["America/New_York"] == firsts["Etc/GMT+5"] == _utc("2019-11-05T14:30")
    summer = tmp_path / "summer.csv"
    summer.write_text("Date,Open,High,Low,Close,Volume\n" + "".join(f"2019-07-01 10:{m:02d}:00,10,11,9,10,100\n" for m in range(3)))
    starts = {}
    for zone in ("America/New_York", "Etc/GMT+5"):
        home = tmp_path / f"summer-{zone.replace('/', '-')}"
        import_bars(home, [summer], ImportOptions(ticker="X", cadence="1m", timezone=zone))
        starts[zone] = int(load_bars(home, "X", "1m")[0].start[0])
    assert starts["America/New_York"] == _utc("2019-07-01T14:00") and starts["Etc/GMT+5"] == _utc("2019-07-01T15:00")


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_epoch_times_in_any_unit_give_the_same_bars(tmp_path, unit):
    """Case 21: seconds, milliseconds, microseconds and nanoseconds since 1970 are one time, told by --epoch-unit."""
    scale = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]
    first = _utc("2019-11-05T14:30") // 10**9
    path = tmp_path / "epoch.csv"
    path.write_text("Date,Open,High,Low,Close,Volume\n" + "".join(f"{(first + 60 * m) * scale},10,11,9,10,100\n" for m in range(30)))
    import_bars(tmp_path / "home", [path], ImportOptions(ticker="X", cadence="1m", epoch_unit=unit))
    bars, _ = load_bars(tmp_path / "home", "X", "1m")
    assert bars.start.tolist() == [(first + 60 * m) * 10**9 for m in range(30)]


def test_rows_with_and_without_fractional_seconds_read_alike(tmp_path):
    """Case 21: a vendor that writes ``09:31:00.000`` on some rows and ``09:32:00`` on others."""
    source = shared_file("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv").read_text().splitlines()
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("\n".join([source[0]] + [line.replace(":00,", ":00.000,", 1) if i % 2 else line for i, line in enumerate(source[1:])]) + "\n")
    import_bars(tmp_path / "plain", [shared_file("sp500-index-minute-nov2019/SP500_NOV2019_IDayRVol.csv")],
                ImportOptions(ticker="SPX", cadence="1m", timezone="America/New_York"))
    import_bars(tmp_path / "mixed", [mixed], ImportOptions(ticker="SPX", cadence="1m", timezone="America/New_York"))
    plain, _ = load_bars(tmp_path / "plain", "SPX", "1m")
    read, _ = load_bars(tmp_path / "mixed", "SPX", "1m")
    assert read.start.tolist() == plain.start.tolist() and len(read) == 1_563


def _utc(moment: str) -> int:
    return int(np.datetime64(moment, "ns").astype(np.int64))


def test_zero_volume_bars_are_stored_and_flagged_and_negative_volume_is_refused(tmp_path):
    """Case 10: no trades in a bar (or an index) is real data, flagged; a negative volume is a broken feed."""
    quiet = tmp_path / "quiet.csv"
    quiet.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10,100\n2020-01-03,10,11,9,10,0\n2020-01-06,10,11,9,10,0\n")
    info, report = import_bars(tmp_path / "home", [quiet], ImportOptions(ticker="QUIET", cadence="1d"))
    [zero] = [finding for finding in report.findings if finding.check == "zero volume"]
    assert zero.status == "WARN" and zero.count == 2 and report.status == "WARN"
    assert load_bars(tmp_path / "home", "QUIET", "1d")[0].volume.tolist() == [100.0, 0.0, 0.0]
    broken = tmp_path / "broken.csv"
    broken.write_text("Date,Open,High,Low,Close,Volume\n2020-01-02,10,11,9,10,100\n2020-01-03,10,11,9,10,-5\n")
    with pytest.raises(SigmaError) as caught:
        import_bars(tmp_path / "home", [broken], ImportOptions(ticker="BROKEN", cadence="1d"))
    assert "FAIL volume: 1 bars with negative volume" in str(caught.value) and not bars_path(tmp_path / "home", "BROKEN", "1d").exists()


def _fxcm_minutes(path) -> tuple[list[str], np.ndarray]:
    """FXCM-style one-minute bid and ask bars, each side built on its own from the real TrueFX USD/JPY quotes."""
    import csv
    from datetime import datetime

    with shared_file("fx-quote-ticks/truefx-usdjpy-ticks.csv").open() as handle:
        quotes = [(datetime.fromisoformat(row["timestamp"]), float(row["bid"]), float(row["ask"])) for row in csv.DictReader(handle)]
    minutes: dict[datetime, list[tuple[float, float]]] = {}
    for moment, bid, ask in quotes:
        minutes.setdefault(moment.replace(second=0, microsecond=0), []).append((bid, ask))
    lines = ["DateTime,BidOpen,BidHigh,BidLow,BidClose,AskOpen,AskHigh,AskLow,AskClose,TickQty"]
    sides = []
    for minute, rows in minutes.items():
        bids, asks = [b for b, _ in rows], [a for _, a in rows]
        bid = (bids[0], max(bids), min(bids), bids[-1])
        ask = (asks[0], max(asks), min(asks), asks[-1])
        lines.append(f"{minute:%m/%d/%Y %H:%M:%S}.000," + ",".join(map(str, (*bid, *ask, len(rows)))))
        sides.append((*bid, *ask))
    path.write_text("\n".join(lines) + "\n")
    return lines, np.array(sides)


def test_bid_and_ask_bars_built_apart_import_as_their_mid_and_are_not_refused_as_crossed(tmp_path):
    """Case 12: FXCM's bid and ask bars are built independently, so a bar's bid high may pass its ask low; that is no
    crossed market. The mid (or one side) is imported, every bar kept."""
    path = tmp_path / "USDJPY_m1.csv"
    _, sides = _fxcm_minutes(path)
    assert (sides[:, 1] > sides[:, 6]).any(), "some minute's bid high is above its ask low"
    options = dict(ticker="USDJPY", cadence="1m", calendar="fx", timezone="UTC", time_format="%m/%d/%Y %H:%M:%S.%f")
    info, report = import_bars(tmp_path / "home", [path], ImportOptions(**options))
    bars = load_bars(tmp_path / "home", "USDJPY", "1m")[0]
    assert report.status != "FAIL" and info.rows == len(sides) and info.repaired == 0
    mid = (sides[:, :4] + sides[:, 4:]) / 2
    assert np.allclose(np.column_stack([bars.open, bars.high, bars.low, bars.close]), mid, rtol=0, atol=1e-12)
    import_bars(tmp_path / "home", [path], ImportOptions(**options, quote_side="bid", replace=True))
    assert np.array_equal(load_bars(tmp_path / "home", "USDJPY", "1m")[0].high, sides[:, 1])
    with pytest.raises(ConfigError, match="quote_side"):
        import_bars(tmp_path / "home", [path], ImportOptions(**options, quote_side="last", replace=True))
    joined = {**options, "time_format": "%m/%d/%Y %H:%M:%S%f"}
    with pytest.raises(ConfigError, match="follows no separator"):
        import_bars(tmp_path / "home", [path], ImportOptions(**joined, replace=True))


def test_regular_hours_keep_the_session_and_count_what_they_drop(tmp_path):
    """Case 18: Lean's SPY minute file trades from 04:00 to 20:00; ``--hours regular`` keeps 09:30 to 16:00."""
    path = shared_file("lean-spy-minute/20131007_spy_minute_trade.csv")
    info, _ = import_bars(tmp_path, [path], ImportOptions(ticker="SPY", cadence="1m", hours="regular", **LEAN_MINUTE))
    bars, stored = load_bars(tmp_path, "SPY", "1m")
    assert stored.hours == "regular" and session_days(bars.start, CALENDARS["us_equities"])[1].all()
    assert info.rows == len(bars) <= 390 < 828 and info.dropped == 828 - len(bars)
    coarse = resample_dataset(tmp_path, "SPY", "1m", "5m")
    assert coarse.hours == "regular", "a resampled dataset keeps its hours"
    with pytest.raises(ConfigError, match="hours"):
        import_bars(tmp_path, [path], ImportOptions(ticker="SPY", cadence="1m", hours="extended", replace=True, **LEAN_MINUTE))
