import re

import pytest

from engine.errors import ConfigError
from engine.models import FutureSettings, OptionSettings, StockSettings, create_model
from engine.packs import Catalog, load_pack
from packs import OFFICIAL

CATALOG = Catalog([OFFICIAL])
SWING = CATALOG.get("swingsigma")
TREND = CATALOG.get("trendsigma")


def test_defaults_come_from_the_strategy_and_the_pack():
    spec = create_model(SWING, strategy="mean_reversion", settings={"ticker": "SPY"})
    assert spec.name == "spy_stock_days_1d"
    assert spec.indicators["rsi"] == {"period": 7, "tolerance": 1e-4}  # the strategy's override of the pack's 14; the pack's tolerance
    assert spec.indicators["bollinger"] == {"period": 20, "deviations": 2.0}
    assert spec.instrument == StockSettings(ticker="SPY")
    assert spec.risk_profile == "balanced" and spec.cadence == "1d"


def test_the_packs_warmup_tolerance_reaches_its_recursive_indicators_unless_they_set_their_own():
    spec = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, params={"adx": {"tolerance": 1e-6}})
    assert spec.indicators["macd"]["tolerance"] == 1e-4 and spec.indicators["adx"]["tolerance"] == 1e-6
    assert "tolerance" not in spec.indicators["roc"]  # not recursive: nothing to remember
    with pytest.raises(ConfigError, match=r"params.adx.tolerance: 0.5 is out of range; use 1e-12 to 0.01"):
        create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, params={"adx": {"tolerance": 0.5}})
    loose = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, params={"adx": {"tolerance": 1e-2}})
    assert loose.indicator_set_sha != spec.indicator_set_sha  # part of the model's lineage


def test_tags_inherit_pack_then_strategy_then_model():
    spec = create_model(SWING, strategy="mean_reversion", settings={"ticker": "SPY"}, tags={"experience": ["expert"]})
    assert spec.tags["timeframe"] == ["swing"]  # from the pack
    assert spec.tags["style"] == ["mean_reversion"] and spec.tags["risk"] == ["conservative"]  # strategy
    assert spec.tags["experience"] == ["expert"]  # the user's


def test_auto_names_follow_the_pattern_and_never_collide():
    option = create_model(SWING, strategy="momentum_swing", instrument="options", settings={"underlying": "AAPL"})
    assert option.name == "aapl_option_days_1d"
    assert option.instrument == OptionSettings(underlying="AAPL", default_dte=30, default_strike="ATM")
    again = create_model(SWING, strategy="momentum_swing", instrument="options", settings={"underlying": "AAPL"}, taken={option.name})
    assert again.name == "aapl_option_days_1d_2"
    variant = create_model(SWING, strategy="momentum_swing", settings={"ticker": "BRK.B"}, variant="fast")
    assert variant.name == "brk_b_stock_days_1d_fast"
    future = create_model(TREND, strategy="trend_following", instrument="futures", settings={"contract": "ES"})
    assert future.name == "es_future_weeks_1w"
    assert future.instrument == FutureSettings(contract="ES", contract_month="front", roll_strategy="volume")


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"strategy": "scalp"}, "strategy", "swingsigma@1.1.0 has no strategy 'scalp'"),
        ({"indicators": ["rsi", "vpin"]}, "indicators", "'vpin' is not in pack swingsigma@1.1.0"),
        ({"indicators": []}, "indicators", "a model needs at least one indicator"),
        ({"params": {"rsi": {"period": 1}}}, "params.rsi.period", "1 is out of range"),
        ({"params": {"atr": {"period": 5}}}, "params.atr", "sets parameters of an indicator the model does not use"),
        ({"instrument": "futures"}, "instrument", "swingsigma@1.1.0 does not trade futures"),
        ({"settings": {"ticker": "SPY", "share_size": 0}}, "instrument.share_size", "Expected `int` >= 1"),
        ({"settings": {"ticker": "SPY", "leverage": 2}}, "instrument", "unknown field `leverage`"),
        ({"settings": {}}, "instrument.ticker", "missing required field `ticker`"),
        ({"risk_profile": "yolo"}, "risk_profile", "has no gates for 'yolo'"),
        ({"cadence": "5m"}, "cadence", "cadence 5m (minute bars) does not fit a days horizon"),
        ({"evaluation": "1w"}, "evaluation", "every 1w is less often than each 1d bar; use 1d (at each close) or finer"),
        ({"evaluation": "1m"}, "evaluation", "a days model decides at most every 5m, not every 1m; use 5m or coarser"),
        ({"evaluation": "7x"}, "evaluation", "'7x' is not a cadence"),
        ({"cadence": "1h", "evaluation": "7m"}, "evaluation", "7m points do not split 1h bars into whole intervals"),
        ({"name": "Bad Name"}, "name", "must be lower-case letters"),
        ({"taken": {"spy_stock_days_1d"}, "name": "spy_stock_days_1d"}, "name", "already exists"),
    ],
)
def test_anything_outside_the_pack_is_refused_with_the_field(kwargs, field, message):
    request = {"strategy": "momentum_swing", "settings": {"ticker": "SPY"}} | kwargs
    with pytest.raises(ConfigError, match=re.escape(message)) as caught:
        create_model(SWING, **request)
    assert caught.value.field == field


def test_specific_futures_month_must_be_given():
    with pytest.raises(ConfigError, match="`specific_month`"):
        create_model(TREND, strategy="trend_following", instrument="futures", settings={"contract": "ES", "contract_month": "specific"})


def test_lineage_hashes_track_content_not_names():
    a = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"})
    b = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, name="other", tags={"style": ["x"]})
    c = create_model(SWING, strategy="momentum_swing", settings={"ticker": "QQQ"})
    d = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, params={"rsi": {"period": 10}})
    assert a.lineage == b.lineage
    assert c.indicator_set_sha == a.indicator_set_sha and c.model_config_sha != a.model_config_sha
    assert d.indicator_set_sha != a.indicator_set_sha
    assert create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, risk_profile="aggressive").policy_sha != a.policy_sha


def test_a_stock_model_whose_position_type_contradicts_its_label_is_refused():
    from engine.models import trade_side

    pack = load_pack(OFFICIAL / "swingsigma")
    with pytest.raises(ConfigError, match="instrument.position_type: short positions cannot trade momentum_swing's long signals"):
        create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY", "position_type": "short"})
    both = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY", "position_type": "both"})
    assert (trade_side("long", both.instrument), trade_side("short", both.instrument)) == (1, -1)
    long_only = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"}).instrument
    with pytest.raises(ConfigError, match="position_type"):
        trade_side("short", long_only)


def test_open_interest_rolls_are_refused():
    pack = load_pack(OFFICIAL / "trendsigma")
    with pytest.raises(ConfigError, match="roll_strategy"):
        create_model(pack, strategy="trend_following", instrument="futures", settings={"contract": "ES", "roll_strategy": "oi"})


def test_the_evaluation_cadence_defaults_to_the_pack_s_and_a_model_may_decide_at_each_close():
    """Swing packs decide every 15 minutes, position packs hourly, 0DTE at each minute's bar; at the bar cadence itself a
    model decides at each close, as before (its lineage unchanged)."""
    swing = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"})
    trend = create_model(TREND, strategy="trend_following", settings={"ticker": "SPY"})
    zero = create_model(CATALOG.get("zerosigma"), strategy="vwap_reversion", settings={"underlying": "SPY"})
    assert (swing.evaluation, trend.evaluation, zero.evaluation) == ("15m", "1h", None)
    at_close = create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, evaluation="1d")
    assert at_close.evaluation is None and at_close.model_config_sha != swing.model_config_sha
    assert create_model(SWING, strategy="momentum_swing", settings={"ticker": "SPY"}, evaluation="5m").evaluation == "5m"


def test_tick_features_are_read_at_closes_only():
    zero = CATALOG.get("zerosigma")
    with pytest.raises(ConfigError, match="read ticks, which a bar still forming does not give research") as caught:
        create_model(zero, strategy="order_flow_scalp", settings={"underlying": "SPY"}, cadence="5m", evaluation="1m")
    assert caught.value.field == "evaluation"
