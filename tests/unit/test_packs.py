import copy

import pytest
import yaml

from engine.errors import ConfigError, NotFoundError
from engine.indicators import INDICATORS
from engine.packs import (
    BacktestSummary,
    Catalog,
    decode_pack,
    effective_tags,
    lint,
    load_pack,
)
from packs import OFFICIAL

SWING = yaml.safe_load((OFFICIAL / "swingsigma" / "pack.yaml").read_text())


def _lint(change, **kwargs):
    document = copy.deepcopy(SWING)
    change(document)
    return lint(decode_pack(document), **kwargs)


def _failure(report):
    failed = [check for check in report.checks if check.status == "FAIL"]
    assert report.status == "REJECTED" and failed, report.render()
    return failed[0]


@pytest.mark.parametrize("name", ["swingsigma", "zerosigma", "trendsigma"])
def test_official_packs_pass_the_linter(name):
    pack = load_pack(OFFICIAL / name)
    report = lint(pack)
    assert report.status == "APPROVED", report.render()
    assert report.disclaimer


def test_zerosigma_is_a_0dte_minute_pack_with_tick_indicators():
    pack = load_pack(OFFICIAL / "zerosigma")
    assert pack.options.default_dte == 0 and pack.cadence == "1m"
    assert {"tick"} <= {scale for name in pack.indicators for scale in INDICATORS[name].timescales}


def _set(path, value):
    def change(document):
        target = document
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "check", "detail", "field"),
    [
        (
            lambda d: (d["personality"].update(time_horizon="months"), d.update(cadence="1mo"),
                       d["indicators"].update(order_book_imbalance={}), d.update(supported_instruments=["stocks"])),
            "Time coherence", "order_book_imbalance works on tick data, not in a months pack",
            "indicators.order_book_imbalance",
        ),
        (_set(("cadence",), "1m"), "Time coherence", "cadence 1m (minute bars) does not fit a days horizon", "cadence"),
        (_set(("cadence",), "daily"), "Time coherence", "'daily' is not a cadence", "cadence"),
        (_set(("evaluation",), "1w"), "Time coherence", "every 1w is less often than each 1d bar", "evaluation"),
        (_set(("evaluation",), "1m"), "Time coherence", "a days model decides at most every 5m, not every 1m", "evaluation"),
        (_set(("evaluation",), "1d"), "Time coherence", "its models decide once per 1d bar, at the close: allowed_hours",
         "sweep.simple.allowed_hours"),
        (_set(("gates", "conservative", "max_drawdown"), 0.5), "Risk coherence",
         "conservative needs max_drawdown <= 10%, was 50%", "gates.conservative.max_drawdown"),
        (_set(("gates", "conservative", "min_trades"), 40), "Risk coherence",
         "conservative needs min_trades >= 50, was 40", "gates.conservative.min_trades"),
        (_set(("gates", "aggressive", "min_trades"), 10), "Required gates", "min_trades 10 is below 20",
         "gates.aggressive.min_trades"),
        (_set(("gates", "aggressive", "min_sharpe"), -0.1), "Required gates", "min_sharpe -0.1 is below 0",
         "gates.aggressive.min_sharpe"),
        (lambda d: d.pop("options"), "Instrument compatibility", "an options pack needs an `options` block", "options"),
        (_set(("default_instrument",), "futures"), "Instrument compatibility",
         "default futures is not among the supported instruments", "default_instrument"),
        (lambda d: d["personality"].update(time_horizon="months") or d.update(cadence="1w", evaluation="1h"),
         "Instrument compatibility", "options cannot be traded with a months horizon", "supported_instruments"),
        (lambda d: d.update(indicators={"rsi": {}, "ema": {}}, features=["rsi"], strategies={}),
         "Indicator count", "2 indicators; a pack declares 3 to 15", "indicators"),
        (_set(("strategies",), {}), "Strategies", "a pack needs at least one strategy", "strategies"),
        (_set(("strategies", "momentum_swing", "indicators", "vpin"), {}), "Strategies",
         "'vpin' is not among the pack's indicators", "strategies.momentum_swing.indicators.vpin"),
        (_set(("name",), "Swing-Sigma"), "Name", "must be 1-19 characters of a-z, 0-9 and _", "name"),
        (_set(("name",), "a_very_long_pack_name"), "Name", "must be 1-19 characters", "name"),
        (_set(("description",), "Too short."), "Description", "is 10 characters; write 50 to 500", "description"),
        (_set(("features",), ["macd.signalz"]), "Indicators and features",
         "macd has no output 'signalz'; its outputs: macd, signal, histogram", "features[0]"),
        (_set(("indicators", "rsi"), {"period": 0}), "Indicators and features", "0 is out of range",
         "indicators.rsi.period"),
        (_set(("indicators", "supertrend"), {}), "Indicators and features", "unknown indicator 'supertrend'",
         "indicators.supertrend"),
    ],
)
def test_linter_rejects_with_the_field_named(change, check, detail, field):
    failure = _failure(_lint(change))
    assert failure.name == check
    assert detail in failure.detail
    assert failure.field == field


def test_aggressive_pack_with_tiny_positions_is_rejected():
    def change(d):
        d["personality"]["risk_appetite"] = "aggressive"
        d["policies"]["risk"]["position_size_pct"] = 0.5
        d["sweep"]["simple"]["position_size_pct"] = [2, 5]

    failure = _failure(_lint(change))
    assert failure.detail == "a aggressive pack sizes positions at 2.0% to 25.0%, was 0.5%"
    assert failure.field == "policies.risk.position_size_pct"


def test_daily_indicator_in_a_seconds_pack_is_rejected(monkeypatch):
    monkeypatch.setattr(INDICATORS["rsi"], "timescales", frozenset({"day", "week"}))

    def change(d):
        d["personality"]["time_horizon"] = "seconds"
        d["cadence"] = "1m"

    failure = _failure(_lint(change))
    assert failure.detail == "rsi works on day/week data, not in a seconds pack"


def test_name_must_be_unique():
    failure = _failure(_lint(lambda d: None, known={"swingsigma"}))
    assert failure.detail == "another pack is already named 'swingsigma'"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({**SWING, "leverage": 3}, "Object contains unknown field `leverage`"),
        ({**SWING, "version": "1.0"}, r"Expected `str` matching regex .* - at `\$.version`"),
        ({**SWING, "personality": {**SWING["personality"], "risk_appetite": "yolo"}}, r"\$.personality.risk_appetite"),
        ("- just\n- a list\n", "must be a YAML mapping"),
        ("name: [unclosed", "is not valid YAML"),
    ],
)
def test_schema_errors_name_the_field(document, message):
    with pytest.raises(ConfigError, match=message):
        decode_pack(document if isinstance(document, str) else yaml.safe_dump(document))


def test_yaml_cannot_construct_python_objects():
    with pytest.raises(ConfigError, match="is not valid YAML"):
        decode_pack("namespace: !!python/object/apply:os.system ['true']\n")


@pytest.mark.parametrize(
    ("summary", "status", "line"),
    [
        (BacktestSummary(trades=30, sharpe=1.2), "APPROVED", "✅ Backtest performance: PASS"),
        (BacktestSummary(trades=30, sharpe=0.4), "APPROVED WITH WARNINGS", "⚠️ Backtest performance: MARGINAL (Sharpe 0.40)"),
        (BacktestSummary(trades=5, sharpe=2.0), "REJECTED", "❌ Backtest performance: FAIL"),
        (BacktestSummary(trades=50, sharpe=-0.6), "REJECTED", "❌ Backtest performance: FAIL"),
    ],
)
def test_performance_hook_feeds_the_report(summary, status, line):
    seen = []

    def backtest(pack):
        seen.append(pack.name)
        return summary

    report = lint(decode_pack(SWING), performance=backtest)
    assert seen == ["swingsigma"]
    assert report.status == status
    rendered = report.render()
    assert rendered.startswith("Pack Validation Report\n")
    assert line in rendered and rendered.endswith(f"Status: {status}")
    assert "✅ Time coherence: PASS" in rendered


def test_load_pack_refuses_a_failing_pack(tmp_path):
    document = copy.deepcopy(SWING)
    document["gates"]["conservative"]["max_drawdown"] = 0.5
    (tmp_path / "pack.yaml").write_text(yaml.safe_dump(document))
    with pytest.raises(ConfigError, match="gates.conservative.max_drawdown: conservative needs max_drawdown <= 10%"):
        load_pack(tmp_path)
    with pytest.raises(NotFoundError, match="no pack file"):
        load_pack(tmp_path / "missing")


def test_catalog_resolves_versions_and_finds_by_inherited_tags(tmp_path):
    newer = copy.deepcopy(SWING)
    newer["version"] = "1.10.0"
    (tmp_path / "swing_next").mkdir()
    (tmp_path / "swing_next" / "pack.yaml").write_text(yaml.safe_dump(newer))
    catalog = Catalog([OFFICIAL, tmp_path])
    assert catalog.get("swingsigma").version == "1.10.0"  # numeric, not string, order
    assert catalog.get("swingsigma@1.1.0").version == "1.1.0"
    with pytest.raises(NotFoundError, match="no pack named 'nope'; known packs: swingsigma, trendsigma, zerosigma"):
        catalog.get("nope")
    with pytest.raises(NotFoundError, match="swingsigma has no version 9.9.9"):
        catalog.get("swingsigma@9.9.9")
    found = Catalog([OFFICIAL]).find(risk="conservative", direction="long_only", timeframe="swing")
    assert [(pack.name, strategy) for pack, strategy in found] == [("swingsigma", "mean_reversion")]
    breakouts = Catalog([OFFICIAL]).find(style="breakout")
    assert {(p.name, s) for p, s in breakouts} == {("swingsigma", "breakout_swing"), ("trendsigma", "channel_breakout")}


def test_tags_are_inherited_and_overridden_per_category():
    pack = {"risk": ["balanced"], "style": ["momentum"], "asset": ["stocks"]}
    strategy = {"style": ["mean_reversion"]}
    assert effective_tags(pack, strategy) == {"risk": ["balanced"], "style": ["mean_reversion"], "asset": ["stocks"]}
