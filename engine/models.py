"""Models: a user's instance of a pack strategy, fixing WHAT is traded and on which instrument.

``create_model`` is the one door in: everything outside the pack is refused with the
field named, defaults come from the pack (then the strategy), and the result carries
its lineage hashes. A `SweepRequest` asks how to search HOW a model trades; research
runs it, and the live flow reads the universe it chose.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Literal, Union

import msgspec

from engine.errors import ConfigError
from engine.features import needs_ticks
from engine.indicators import TOLERANCE, check_params, indicator_class
from engine.lineage import content_sha
from engine.names import TICKER_PATTERN
from engine.packs import EVALUATION, Pack, Tags, effective_tags, evaluation_problem, time_problem
from engine.policy import SIDES
from engine.schemas import Lineage

__all__ = ["trade_side", "ModelSpec", "SweepRequest", "StockSettings", "OptionSettings", "FutureSettings", "InstrumentSettings", "SYMBOL_FIELD", "create_model"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}\Z")
Positive = Annotated[int, msgspec.Meta(ge=1)]


class _Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, tag_field="asset"):
    pass


class StockSettings(_Settings, frozen=True, kw_only=True, tag="stock"):
    """A stock or ETF: which one, which side, how many shares per signal."""

    ticker: Annotated[str, msgspec.Meta(pattern=TICKER_PATTERN)]
    position_type: Literal["long", "short", "both"] = "long"
    share_size: Positive = 100

    @property
    def symbol(self) -> str:
        return self.ticker


class OptionSettings(_Settings, frozen=True, kw_only=True, tag="option"):
    """Options on an underlying: type, days to expiry, strike rule, contracts per signal."""

    underlying: Annotated[str, msgspec.Meta(pattern=TICKER_PATTERN)]
    option_type: Literal["call", "put", "both"] = "both"
    default_dte: Annotated[int, msgspec.Meta(ge=0, le=730)] = 30
    default_strike: Literal["ATM", "OTM_5", "OTM_10", "ITM_5", "ITM_10"] = "ATM"
    contract_size: Positive = 1

    @property
    def symbol(self) -> str:
        return self.underlying


class FutureSettings(_Settings, frozen=True, kw_only=True, tag="future"):
    """A futures contract root: which month, how it rolls, contracts per signal."""

    contract: Annotated[str, msgspec.Meta(pattern=r"^[A-Z0-9]{1,8}\Z")]
    contract_month: Literal["front", "back", "specific"] = "front"
    specific_month: Annotated[str, msgspec.Meta(pattern=r"^\d{4}-(0[1-9]|1[0-2])\Z")] | None = None
    contract_size: Positive = 1
    roll_strategy: Literal["calendar", "volume"] = "volume"
    """``volume`` rolls in the expiry week, ``calendar`` at expiry (open interest is not in the data Sigma stores)."""

    def __post_init__(self) -> None:
        if (self.contract_month == "specific") != (self.specific_month is not None):
            raise ValueError("`specific_month` (YYYY-MM) is required exactly when `contract_month` is specific")

    @property
    def symbol(self) -> str:
        return self.contract


InstrumentSettings = Union[StockSettings, OptionSettings, FutureSettings]
_SETTINGS = {"stocks": StockSettings, "options": OptionSettings, "futures": FutureSettings}


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A model: pack@version + strategy + indicator subset + instrument + risk profile + cadence."""

    name: str
    pack: str
    pack_version: str
    pack_sha: str
    strategy: str
    indicators: dict[str, dict[str, int | float]]
    """Parameters as each indicator declares them (int or float), so hashes survive a round trip."""
    features: list[str]
    """The model's input columns, in order: the pack's features of these indicators."""
    instrument: InstrumentSettings
    risk_profile: Literal["conservative", "balanced", "aggressive"]
    cadence: str
    tags: Tags
    evaluation: str | None = None
    """How often it decides inside a bar (``15m``: the bar so far is scored every 15 minutes); None at each bar's close."""
    indicator_set_sha: str
    model_config_sha: str
    policy_sha: str

    @property
    def lineage(self) -> Lineage:
        return Lineage(
            pack_sha=self.pack_sha,
            indicator_set_sha=self.indicator_set_sha,
            model_config_sha=self.model_config_sha,
            policy_sha=self.policy_sha,
        )


class SweepRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a user asks a sweep of a model for: how to search HOW it trades; stored with the sweep."""

    model: str
    mode: Literal["simple", "custom"] = "simple"
    preset: str | None = None
    universe: list[str] = []
    """Tickers to trade cross-sectionally; the model's own symbol when empty."""
    overrides: dict[str, list[float | str]] = {}
    """Axis values replacing the defaults, e.g. ``{"stop_loss": [0.02, 0.04]}``."""
    pro: bool = False
    prune: bool = True
    folds: int = 5
    embargo: int = 5
    holdout: float = 0.2
    commission_bps: float = 1.0
    seed: int = 0


def create_model(
    pack: Pack,
    *,
    strategy: str,
    instrument: str | None = None,
    settings: Mapping[str, object] | None = None,
    indicators: Iterable[str] | None = None,
    params: Mapping[str, Mapping[str, object]] | None = None,
    risk_profile: str | None = None,
    cadence: str | None = None,
    evaluation: str | None = None,
    tags: Tags | None = None,
    name: str | None = None,
    variant: str | None = None,
    taken: Iterable[str] = (),
) -> ModelSpec:
    """Validate a model request against ``pack`` and build its spec; `ConfigError` names the field."""
    if strategy not in pack.strategies:
        raise ConfigError("strategy", f"{pack.ref} has no strategy {strategy!r}", f"choose one of: {', '.join(pack.strategies)}")
    recipe = pack.strategies[strategy]
    chosen = list(indicators) if indicators is not None else list(recipe.indicators)
    if not chosen:
        raise ConfigError("indicators", "a model needs at least one indicator")
    params = params or {}
    resolved: dict[str, dict[str, int | float]] = {}
    for indicator in chosen:
        if indicator not in pack.indicators:
            allowed = ", ".join(pack.indicators)
            raise ConfigError("indicators", f"{indicator!r} is not in pack {pack.ref}", f"choose from: {allowed}")
        merged = {**_pack_tolerance(pack, indicator), **pack.indicators[indicator], **recipe.indicators.get(indicator, {}),
                  **params.get(indicator, {})}  # fmt: skip
        resolved[indicator] = check_params(indicator, merged, where=f"params.{indicator}")
    for indicator in params:
        if indicator not in resolved:
            raise ConfigError(f"params.{indicator}", "sets parameters of an indicator the model does not use")

    kind = instrument or pack.default_instrument
    if kind not in pack.supported_instruments:
        supported = ", ".join(pack.supported_instruments)
        raise ConfigError("instrument", f"{pack.ref} does not trade {kind}", f"choose one of: {supported}")
    instrument_settings = _instrument_settings(pack, kind, settings or {})
    trade_side(recipe.label.direction, instrument_settings, strategy)

    profile = risk_profile or pack.personality.risk_appetite
    if profile not in pack.gates:
        raise ConfigError("risk_profile", f"{pack.ref} has no gates for {profile!r}", f"choose one of: {', '.join(pack.gates)}")
    cadence = cadence or pack.cadence
    problem = time_problem(pack.personality.time_horizon, cadence, resolved)
    if problem is not None:
        raise ConfigError(problem[0], problem[1])
    evaluation = evaluation or pack.evaluation or EVALUATION[pack.personality.time_horizon][0] or cadence
    problem = evaluation_problem(pack.personality.time_horizon, cadence, evaluation)
    if problem is not None:
        raise ConfigError(problem[0], problem[1])
    reads_ticks = [name for name in resolved if needs_ticks(name)]
    if evaluation != cadence and reads_ticks:
        raise ConfigError("evaluation", f"{', '.join(reads_ticks)} read ticks, which a bar still forming does not give research",
                          f"evaluate at each close (--evaluation {cadence}), or leave them out")

    indicator_set = dict(sorted(resolved.items()))
    features = [name for name in pack.features if name.partition(".")[0] in indicator_set]
    covered = {name.partition(".")[0] for name in features}
    features += [indicator for indicator in indicator_set if indicator not in covered]
    indicator_set_sha = content_sha(indicator_set)
    what = {
        "pack_sha": pack.sha,
        "strategy": strategy,
        "label": recipe.label,
        "indicators": indicator_set,
        "features": features,
        "instrument": instrument_settings,
        "risk_profile": profile,
        "cadence": cadence,
    } | ({"evaluation": evaluation} if evaluation != cadence else {})
    policy = {"policies": pack.policies, "gates": pack.gates[profile], "rules": recipe.rules}
    return ModelSpec(
        name=_model_name(pack, instrument_settings, cadence, name, variant, set(taken)),
        pack=pack.namespace,
        pack_version=pack.version,
        pack_sha=pack.sha,
        strategy=strategy,
        indicators=indicator_set,
        features=features,
        instrument=instrument_settings,
        risk_profile=profile,  # type: ignore[arg-type]
        cadence=cadence,
        evaluation=evaluation if evaluation != cadence else None,
        tags=effective_tags(effective_tags(pack.tags, recipe.tags), tags or {}),
        indicator_set_sha=indicator_set_sha,
        model_config_sha=content_sha(what),
        policy_sha=content_sha(policy),
    )


def _pack_tolerance(pack: Pack, indicator: str) -> dict[str, float]:
    """The pack's ``warmup_tolerance`` as the seed tolerance of ``indicator``, when it is recursive."""
    return {"tolerance": pack.warmup_tolerance} if TOLERANCE in indicator_class(indicator).parameters else {}


_NARROWING = {StockSettings: "position_type", OptionSettings: "option_type"}
_NARROWED = {"long": 1, "short": -1, "call": 1, "put": -1, "both": 0}


def trade_side(direction: str, instrument: InstrumentSettings, strategy: str = "the strategy") -> int:
    """The side the policy trades (`SIDES`): the label's ``direction``, narrowed by the instrument's own setting.

    A stock's ``position_type`` and an option's ``option_type`` say which directions the
    trader takes; a strategy whose label predicts the other one is refused, not traded
    against the setting.
    """
    side = SIDES[direction]
    field = _NARROWING.get(type(instrument))
    if field is None:  # futures: long and short alike
        return side
    setting = getattr(instrument, field)
    allowed = _NARROWED[setting]
    if allowed == 0:
        return side
    if side not in (0, allowed):
        kind = " positions" if field == "position_type" else "s"
        raise ConfigError(f"instrument.{field}", f"{setting}{kind} cannot trade {strategy}'s {direction} signals",
                          f"create the model with {field} both, or choose a {setting} strategy")  # fmt: skip
    return allowed


def _instrument_settings(pack: Pack, kind: str, given: Mapping[str, object]) -> InstrumentSettings:
    defaults: dict[str, object] = {}
    if kind == "options" and pack.options is not None:
        defaults = {
            "default_dte": pack.options.default_dte,
            "default_strike": pack.options.default_strike,
            "option_type": pack.options.option_type,
        }
    elif kind == "futures" and pack.futures is not None:
        defaults = {"contract_month": pack.futures.contract_month, "roll_strategy": pack.futures.roll_strategy}
    cls = _SETTINGS[kind]
    try:
        return msgspec.convert({**defaults, **given}, cls, strict=False)
    except msgspec.ValidationError as error:
        message = str(error)
        where = re.search(r"at `\$\.(\w+)`", message)
        missing = re.search(r"missing required field `(\w+)`", message)
        field = where.group(1) if where else missing.group(1) if missing else ""
        allowed = ", ".join(f for f in cls.__struct_fields__)
        raise ConfigError(
            f"instrument.{field}" if field else "instrument",
            message.split(" - at ")[0],
            f"{kind} settings are: {allowed}",
        ) from None


SYMBOL_FIELD = {"stocks": "ticker", "options": "underlying", "futures": "contract"}
"""The instrument setting a ticker fills: a stock's ticker, an option's underlying, a future's contract root."""


def _model_name(
    pack: Pack, instrument: InstrumentSettings, cadence: str, name: str | None, variant: str | None, taken: set[str]
) -> str:
    if name is None:
        asset = type(instrument).__struct_config__.tag
        base = f"{instrument.symbol.lower().replace('.', '_').replace('-', '_')}_{asset}_{pack.personality.time_horizon}_{cadence}"
        name = f"{base}_{variant}" if variant else base
        number = 2
        while name in taken and variant is None:
            name = f"{base}_{number}"
            number += 1
    if not _NAME.match(name):
        raise ConfigError("name", f"{name!r} must be lower-case letters, digits and _ (at most 64)")
    if name in taken:
        raise ConfigError("name", f"a model named {name!r} already exists", "choose another name or --variant")
    return name
