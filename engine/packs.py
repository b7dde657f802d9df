"""Packs: versioned trading personalities, decoded strictly from YAML and linted before use.

A pack names indicators from the closed registry (never code paths), declares its
strategies, gates per risk profile, policies and sweep spaces. ``load_pack`` decodes
and lints; a pack with any failing check is refused with the first failure named.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Annotated, Literal

import msgspec
import yaml

from engine.cadence import cadence_timescale, parse_cadence, rolls_up
from engine.errors import ConfigError, NotFoundError
from engine.gates import Gates
from engine.indicators import INDICATORS, check_params
from engine.lineage import content_sha

__all__ = [
    "Pack",
    "Strategy",
    "Label",
    "Policies",
    "Check",
    "PackReport",
    "BacktestSummary",
    "decode_pack",
    "load_pack",
    "lint",
    "validate",
    "Catalog",
    "effective_tags",
    "time_problem",
    "evaluation_problem",
    "HORIZON_TIMESCALES",
    "EVALUATION",
]

Horizon = Literal["seconds", "minutes", "hours", "days", "weeks", "months"]
RiskProfile = Literal["conservative", "balanced", "aggressive"]
Instrument = Literal["stocks", "options", "futures"]
Percent = Annotated[float, msgspec.Meta(gt=0, le=100)]
Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]
Tags = dict[str, list[str]]
TAG_CATEGORIES = ("risk", "direction", "timeframe", "market", "asset", "style", "experience")

# The C loader is the same safe subset of YAML, several times faster.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_SEMVER = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?\Z"

HORIZON_TIMESCALES: dict[str, frozenset[str]] = {
    "seconds": frozenset({"tick", "minute"}),
    "minutes": frozenset({"tick", "minute", "hour"}),
    "hours": frozenset({"minute", "hour", "day"}),
    "days": frozenset({"hour", "day", "week"}),
    "weeks": frozenset({"day", "week", "month"}),
    "months": frozenset({"week", "month"}),
}
"""Data timescales that make sense for each time horizon."""

EVALUATION: dict[str, tuple[str | None, str]] = {
    "seconds": (None, "1m"),
    "minutes": (None, "1m"),
    "hours": (None, "1m"),
    "days": ("15m", "5m"),
    "weeks": ("1h", "15m"),
    "months": ("1h", "1h"),
}
"""Per time horizon, how often its models decide by default (None: at each bar's close) and at the finest: 0DTE and
intraday packs at each bar, swing packs every 5 to 15 minutes, position packs every hour, while their bars stay daily
or weekly (the pack system requirements' table)."""

BLOCKED_INSTRUMENTS: dict[str, frozenset[str]] = {
    # Holding options for months is a different product (theta, rolls); not supported.
    "options": frozenset({"months"}),
    "stocks": frozenset(),
    "futures": frozenset(),
}
"""Instrument x time horizon pairs a pack may not combine."""

RISK_RULES: dict[str, dict[str, float]] = {
    "conservative": {"min_trades": 50, "max_drawdown": 0.10, "min_sharpe": 1.0, "min_size": 0.5, "max_size": 5.0},
    "balanced": {"min_trades": 30, "max_drawdown": 0.25, "min_sharpe": 0.5, "min_size": 1.0, "max_size": 10.0},
    "aggressive": {"min_trades": 20, "max_drawdown": 0.40, "min_sharpe": 0.3, "min_size": 2.0, "max_size": 25.0},
}
"""What each risk profile's gates must demand at least, and its position-size band (% of equity)."""

DISCLAIMERS = {
    "conservative": "Signals are research output, not advice. Past performance does not guarantee future results.",
    "balanced": "Signals are research output, not advice. Expect drawdowns; size positions to what you can lose.",
    "aggressive": (
        "Signals are research output, not advice. This pack accepts deep drawdowns and can lose"
        " most of the capital allocated to it."
    ),
}


class _Strict(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class Personality(_Strict, kw_only=True):
    time_horizon: Horizon
    risk_appetite: RiskProfile
    decision_style: Literal["technical", "fundamental", "sentiment", "flow"]
    market_preference: Literal["trending", "ranging", "volatile", "all_weather"]
    execution_character: Literal["aggressive", "patient", "adaptive"]


class Label(_Strict, kw_only=True):
    """What a strategy's model predicts: forward return over `horizon_bars` beats `cost_bps`."""

    kind: Literal["forward_return"] = "forward_return"
    horizon_bars: Annotated[int, msgspec.Meta(ge=1, le=10_000)]
    cost_bps: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    direction: Literal["long", "short"] = "long"


class Strategy(_Strict, kw_only=True):
    """A pre-configured recipe: indicator subset with parameters, a label, optional rules, tags."""

    description: str = ""
    indicators: dict[str, dict[str, float]]
    label: Label
    rules: dict[str, float] = {}
    tags: Tags = {}


class Execution(_Strict, kw_only=True):
    order_type: Literal["market", "limit", "stop"] = "market"
    slippage_bps: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    size_by_conf: bool = True
    """Size each entry by its confidence: nothing at 0.5, the whole `position_size_pct` at `conf_cap` and above."""
    conf_cap: Annotated[float, msgspec.Meta(gt=0.5, le=1.0)] = 0.75


class Risk(_Strict, kw_only=True):
    max_drawdown: Fraction
    max_exposure: Annotated[float, msgspec.Meta(gt=0, le=10)] = 1.0
    stop_loss: Fraction | None = None
    take_profit: Annotated[float, msgspec.Meta(ge=0)] | None = None
    position_size_pct: Percent = 5.0


class Alerting(_Strict, kw_only=True):
    cooldown_minutes: Annotated[int, msgspec.Meta(ge=0)] = 60
    max_trades_per_day: Annotated[int, msgspec.Meta(ge=1)] = 3


class Policies(_Strict, kw_only=True):
    execution: Execution = Execution()
    risk: Risk
    alerting: Alerting = Alerting()


class SimpleSweep(_Strict, kw_only=True):
    thresholds: list[Annotated[float, msgspec.Meta(ge=0.5, le=1)]] = msgspec.field(
        default_factory=lambda: [0.50, 0.55, 0.60, 0.65, 0.70]
    )
    allowed_hours: list[list[Annotated[int, msgspec.Meta(ge=0, le=23)]]] = msgspec.field(
        default_factory=lambda: [[9, 10], [13, 14, 15], []]
    )
    """Lists of exchange-local hours; an empty list means all day."""
    top_pct: list[Percent] | None = None
    position_size_pct: list[Percent] | None = None


CustomParameter = Literal[
    "stop_loss", "take_profit", "max_positions", "hold_days", "strike_selection", "dte_target", "entry_type"
]


class Sweep(_Strict, kw_only=True):
    simple: SimpleSweep = SimpleSweep()
    custom_parameters: list[CustomParameter] = []
    presets: dict[RiskProfile, dict[str, float | str | list[float]]] = {}


class PackOptions(_Strict, kw_only=True):
    """Defaults for option models of the pack; `multiplier` is shares per contract."""

    default_dte: Annotated[int, msgspec.Meta(ge=0, le=730)]
    default_strike: Literal["ATM", "OTM_5", "OTM_10", "ITM_5", "ITM_10"] = "ATM"
    option_type: Literal["call", "put", "both"] = "both"
    multiplier: Annotated[int, msgspec.Meta(ge=1)] = 100
    slippage_bps: Annotated[float, msgspec.Meta(ge=0, le=1000)] | None = None
    """What crossing an option's spread costs, in bps of its premium; the execution slippage when absent."""


class PackFutures(_Strict, kw_only=True):
    """Defaults for futures models of the pack."""

    contract_month: Literal["front", "back", "specific"] = "front"
    roll_strategy: Literal["calendar", "volume"] = "volume"
    """``volume`` rolls in the expiry week, ``calendar`` at expiry (open interest is not in the data Sigma stores)."""


class PackTraining(_Strict, kw_only=True):
    """How the pack's models are trained: axes of the hyperparameter grid that replace the defaults."""

    grid: dict[Literal["n_estimators", "max_depth", "learning_rate"], list[Annotated[float, msgspec.Meta(gt=0)]]] = {}


class Pack(_Strict, kw_only=True):
    """A versioned trading personality (the whole ``pack.yaml``)."""

    namespace: str
    version: Annotated[str, msgspec.Meta(pattern=_SEMVER)]
    name: str
    description: str
    personality: Personality
    supported_instruments: list[Instrument]
    default_instrument: Instrument
    indicators: dict[str, dict[str, float]]
    features: list[str]
    strategies: dict[str, Strategy]
    gates: dict[RiskProfile, Gates]
    policies: Policies
    sweep: Sweep = Sweep()
    cadence: str
    evaluation: str | None = None
    """How often its models decide by default: a cadence finer than `cadence` (the bar so far is scored at each
    point), or `cadence` itself (at each close); None takes its time horizon's (`EVALUATION`)."""
    warmup_tolerance: Annotated[float, msgspec.Meta(ge=1e-12, le=1e-2)] = 1e-9
    """The seed error its recursive indicators (EMA, MACD, RSI, ATR, ADX) may keep at their first value.

    The looser, the sooner they start: ADX(14) on daily bars gives its first value
    after 588 bars at 1e-9, 278 at 1e-4, 154 at 1e-2. An indicator's own
    ``tolerance`` parameter overrides it.
    """
    tags: Tags = {}
    options: PackOptions | None = None
    futures: PackFutures | None = None
    training: PackTraining | None = None
    disclaimer: str | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}@{self.version}"

    @property
    def sha(self) -> str:
        return content_sha(self)


class BacktestSummary(msgspec.Struct, frozen=True):
    """What the performance hook reports: a one-year backtest of the pack's default strategy."""

    trades: int
    sharpe: float


PerformanceCheck = Callable[[Pack], BacktestSummary]
"""Hook that runs the pack's one-year backtest; the research package provides it."""


class Check(msgspec.Struct, frozen=True):
    """One line of a validation report."""

    name: str
    status: Literal["PASS", "WARN", "FAIL"]
    detail: str
    field: str = ""


class PackReport(msgspec.Struct, frozen=True):
    """Result of linting a pack: every check, the verdict and the disclaimer shown to users."""

    pack: str
    checks: list[Check]
    disclaimer: str

    @property
    def status(self) -> Literal["APPROVED", "APPROVED WITH WARNINGS", "REJECTED"]:
        statuses = {check.status for check in self.checks}
        if "FAIL" in statuses:
            return "REJECTED"
        return "APPROVED WITH WARNINGS" if "WARN" in statuses else "APPROVED"

    def render(self) -> str:
        marks = {"PASS": "✅", "WARN": "⚠️", "FAIL": "❌"}
        lines = ["Pack Validation Report", f"Pack: {self.pack}"]
        for check in self.checks:
            verdict = "MARGINAL" if check.status == "WARN" and check.name == "Backtest performance" else check.status
            detail = f" ({check.detail})" if check.detail and check.status != "PASS" else ""
            lines.append(f"{marks[check.status]} {check.name}: {verdict}{detail}")
        lines.append(f"Disclaimer: {self.disclaimer}")
        lines.append(f"Status: {self.status}")
        return "\n".join(lines)


def decode_pack(document: bytes | str | Mapping[str, object], source: str = "pack") -> Pack:
    """Decode YAML text (or an already-parsed mapping) into a `Pack`; `ConfigError` names the field."""
    if isinstance(document, bytes | str):
        try:
            document = yaml.load(document, Loader=_SAFE_LOADER)
        except yaml.YAMLError as error:
            raise ConfigError(source, f"is not valid YAML: {error}".replace("\n", " ")) from None
    if not isinstance(document, Mapping):
        raise ConfigError(source, "must be a YAML mapping of pack fields")
    try:
        return msgspec.convert(document, Pack)
    except msgspec.ValidationError as error:
        raise ConfigError(source, str(error), "see packs/swingsigma/pack.yaml for a complete example") from None


def validate(document: bytes | str, catalog: Catalog, *, source: str = "pack", performance: PerformanceCheck | None = None) -> PackReport:
    """The linter's report on a pack's YAML text, against the other packs of ``catalog``; a pack that does not decode is
    reported as a failed schema check, naming the field, never raised."""
    try:
        pack = decode_pack(document, source=source)
    except ConfigError as error:
        return PackReport(pack=source, checks=[Check("Schema", "FAIL", str(error), error.field)], disclaimer="")
    return lint(pack, known={other.name for other in catalog if other.namespace != pack.namespace}, performance=performance)


def lint(pack: Pack, *, known: Iterable[str] = (), performance: PerformanceCheck | None = None) -> PackReport:
    """Run every validation check on a decoded pack; ``known`` holds the other packs' names."""
    checks = [
        _check_name(pack, set(known)),
        _check_description(pack),
        _check_indicator_count(pack),
        _check_references(pack),
        _check_time(pack),
        _check_gates(pack),
        _check_risk(pack),
        _check_instruments(pack),
        _check_strategies(pack),
    ]
    if performance is not None:
        checks.append(_check_performance(performance(pack)))
    disclaimer = pack.disclaimer or DISCLAIMERS[pack.personality.risk_appetite]
    return PackReport(pack=pack.ref, checks=checks, disclaimer=disclaimer)


def load_pack(path: Path | str, *, performance: PerformanceCheck | None = None) -> Pack:
    """Read, decode and lint ``path`` (a pack.yaml or its folder); refuse a pack that fails a check."""
    path = Path(path)
    if path.is_dir():
        path = path / "pack.yaml"
    if not path.is_file():
        raise NotFoundError(f"no pack file at {path}")
    pack = decode_pack(path.read_bytes(), source=str(path))
    report = lint(pack, performance=performance)
    for check in report.checks:
        if check.status == "FAIL":
            raise ConfigError(check.field or str(path), check.detail)
    return pack


def _fail(name: str, detail: str, field: str) -> Check:
    return Check(name, "FAIL", detail, field)


def _check_name(pack: Pack, known: set[str]) -> Check:
    name = "Name"
    if not re.fullmatch(r"[a-z0-9_]{1,19}", pack.name):
        return _fail(name, f"{pack.name!r} must be 1-19 characters of a-z, 0-9 and _", "name")
    if pack.name in known:
        return _fail(name, f"another pack is already named {pack.name!r}", "name")
    return Check(name, "PASS", "")


def _check_description(pack: Pack) -> Check:
    length = len(pack.description.strip())
    if not 50 <= length <= 500:
        return _fail("Description", f"is {length} characters; write 50 to 500", "description")
    return Check("Description", "PASS", "")


def _check_indicator_count(pack: Pack) -> Check:
    count = len(pack.indicators)
    if not 3 <= count <= 15:
        return _fail("Indicator count", f"{count} indicators; a pack declares 3 to 15", "indicators")
    return Check("Indicator count", "PASS", "")


def _check_references(pack: Pack) -> Check:
    name = "Indicators and features"
    for indicator, params in pack.indicators.items():
        if indicator not in INDICATORS:
            known = ", ".join(sorted(INDICATORS))
            return _fail(name, f"unknown indicator {indicator!r}; known: {known}", f"indicators.{indicator}")
        try:
            check_params(indicator, params, where=f"indicators.{indicator}")
        except ConfigError as error:
            return _fail(name, f"{error.problem}; {error.fix}".rstrip("; "), error.field)
    for position, feature in enumerate(pack.features):
        indicator, _, output = feature.partition(".")
        field = f"features[{position}]"
        if indicator not in pack.indicators:
            return _fail(name, f"{feature!r} names no indicator of this pack", field)
        outputs = INDICATORS[indicator].outputs
        if (output or outputs[0]) not in outputs:
            return _fail(name, f"{indicator} has no output {output!r}; its outputs: {', '.join(outputs)}", field)
    if not pack.features:
        return _fail(name, "no features declared", "features")
    return Check(name, "PASS", "")


def time_problem(horizon: str, cadence: str, indicators: Iterable[str]) -> tuple[str, str] | None:
    """(field, detail) of the first way a cadence or an indicator misfits a time horizon, or None."""
    allowed = HORIZON_TIMESCALES[horizon]
    try:
        timescale = cadence_timescale(cadence)
    except ConfigError as error:
        return "cadence", f"{error.problem}; {error.fix}"
    if timescale not in allowed:
        return "cadence", f"cadence {cadence} ({timescale} bars) does not fit a {horizon} horizon"
    for indicator in indicators:
        if indicator not in INDICATORS:
            continue  # reported by the references check
        timescales = INDICATORS[indicator].timescales
        if not timescales & allowed:
            scales = "/".join(sorted(timescales))
            return f"indicators.{indicator}", f"{indicator} works on {scales} data, not in a {horizon} pack"
        if timescale not in timescales and "tick" not in timescales:
            return f"indicators.{indicator}", f"{indicator} does not run on {timescale} bars (cadence {cadence})"
    return None


def evaluation_problem(horizon: str, cadence: str, evaluation: str) -> tuple[str, str] | None:
    """(field, detail and fix) when a model of ``horizon`` on ``cadence`` bars cannot decide every ``evaluation``, or None.

    It decides at least once per bar, at most as often as its horizon allows
    (`EVALUATION`), and its points split each bar into whole intervals.
    """
    try:
        points, bars = parse_cadence(evaluation, "evaluation"), parse_cadence(cadence)
    except ConfigError as error:
        return error.field, f"{error.problem}; {error.fix}"
    if points == bars:
        return None
    finest = parse_cadence(EVALUATION[horizon][1])
    if not rolls_up(points, bars):
        if rolls_up(bars, points):
            return "evaluation", f"every {evaluation} is less often than each {cadence} bar; use {cadence} (at each close) or finer"
        return "evaluation", f"{evaluation} points do not split {cadence} bars into whole intervals; use one that does, e.g. 15m"
    if points.bars_per_day > finest.bars_per_day:
        return "evaluation", f"a {horizon} model decides at most every {finest}, not every {evaluation}; use {finest} or coarser"
    return None


def _check_time(pack: Pack) -> Check:
    problem = time_problem(pack.personality.time_horizon, pack.cadence, pack.indicators)
    if problem is None:
        evaluation = pack.evaluation or EVALUATION[pack.personality.time_horizon][0] or pack.cadence
        problem = evaluation_problem(pack.personality.time_horizon, pack.cadence, evaluation)
    if problem is not None:
        return _fail("Time coherence", problem[1], problem[0])
    if evaluation == pack.cadence and cadence_timescale(pack.cadence) not in ("minute", "hour") and any(pack.sweep.simple.allowed_hours):
        detail = (f"its models decide once per {pack.cadence} bar, at the close: allowed_hours filters cannot apply; use [[]], "
                  "or let them evaluate inside the bar (evaluation: 15m)")
        return _fail("Time coherence", detail, "sweep.simple.allowed_hours")
    return Check("Time coherence", "PASS", "")


def _check_gates(pack: Pack) -> Check:
    name = "Required gates"
    if pack.personality.risk_appetite not in pack.gates:
        appetite = pack.personality.risk_appetite
        return _fail(name, f"no gates for the pack's own risk profile {appetite!r}", "gates")
    for profile, gates in pack.gates.items():
        if gates.min_trades < 20:
            return _fail(name, f"min_trades {gates.min_trades} is below 20", f"gates.{profile}.min_trades")
        if gates.min_sharpe < 0:
            return _fail(name, f"min_sharpe {gates.min_sharpe} is below 0", f"gates.{profile}.min_sharpe")
    return Check(name, "PASS", "")


def _check_risk(pack: Pack) -> Check:
    name = "Risk coherence"
    for profile, gates in pack.gates.items():
        rule = RISK_RULES[profile]
        field = f"gates.{profile}"
        if gates.min_trades < rule["min_trades"]:
            return _fail(name, f"{profile} needs min_trades >= {rule['min_trades']:.0f}, was {gates.min_trades}", f"{field}.min_trades")
        if gates.max_drawdown > rule["max_drawdown"]:
            return _fail(name, f"{profile} needs max_drawdown <= {rule['max_drawdown']:.0%}, was {gates.max_drawdown:.0%}", f"{field}.max_drawdown")
        if gates.min_sharpe < rule["min_sharpe"]:
            return _fail(name, f"{profile} needs min_sharpe >= {rule['min_sharpe']}, was {gates.min_sharpe}", f"{field}.min_sharpe")
    appetite = pack.personality.risk_appetite
    rule = RISK_RULES[appetite]
    sizes = [("policies.risk.position_size_pct", pack.policies.risk.position_size_pct)]
    sizes += [("sweep.simple.position_size_pct", s) for s in pack.sweep.simple.position_size_pct or ()]
    for field, size in sizes:
        if not rule["min_size"] <= size <= rule["max_size"]:
            band = f"{rule['min_size']}% to {rule['max_size']}%"
            return _fail(name, f"a {appetite} pack sizes positions at {band}, was {size}%", field)
    if pack.policies.risk.max_drawdown > rule["max_drawdown"]:
        return _fail(name, f"a {appetite} pack allows at most {rule['max_drawdown']:.0%} drawdown", "policies.risk.max_drawdown")
    return Check(name, "PASS", "")


def _check_instruments(pack: Pack) -> Check:
    name = "Instrument compatibility"
    if not pack.supported_instruments:
        return _fail(name, "no supported instruments", "supported_instruments")
    if pack.default_instrument not in pack.supported_instruments:
        return _fail(name, f"default {pack.default_instrument} is not among the supported instruments", "default_instrument")
    horizon = pack.personality.time_horizon
    for instrument in pack.supported_instruments:
        if horizon in BLOCKED_INSTRUMENTS[instrument]:
            return _fail(name, f"{instrument} cannot be traded with a {horizon} horizon", "supported_instruments")
    if "options" in pack.supported_instruments and pack.options is None:
        return _fail(name, "an options pack needs an `options` block (default_dte, default_strike)", "options")
    if "futures" in pack.supported_instruments and pack.futures is None:
        return _fail(name, "a futures pack needs a `futures` block (contract_month, roll_strategy)", "futures")
    return Check(name, "PASS", "")


def _check_strategies(pack: Pack) -> Check:
    name = "Strategies"
    if not pack.strategies:
        return _fail(name, "a pack needs at least one strategy", "strategies")
    for strategy_name, strategy in pack.strategies.items():
        field = f"strategies.{strategy_name}.indicators"
        if not strategy.indicators:
            return _fail(name, "a strategy uses at least one indicator", field)
        for indicator, params in strategy.indicators.items():
            if indicator not in pack.indicators:
                return _fail(name, f"{indicator!r} is not among the pack's indicators", f"{field}.{indicator}")
            if indicator not in INDICATORS:
                continue  # reported by the references check
            try:
                check_params(indicator, {**pack.indicators[indicator], **params}, where=f"{field}.{indicator}")
            except ConfigError as error:
                return _fail(name, f"{error.problem}; {error.fix}".rstrip("; "), error.field)
    return Check(name, "PASS", "")


def _check_performance(summary: BacktestSummary) -> Check:
    name = "Backtest performance"
    detail = f"Sharpe {summary.sharpe:.2f}, {summary.trades} trades over one year"
    if summary.trades < 10 or summary.sharpe <= -0.5:
        return _fail(name, detail + "; needs >= 10 trades and Sharpe > -0.5", "strategies")
    if summary.sharpe < 0.5:
        return Check(name, "WARN", f"Sharpe {summary.sharpe:.2f}")
    return Check(name, "PASS", detail)


def effective_tags(parent: Tags, child: Tags) -> Tags:
    """Tags a child inherits: the parent's, with each category the child sets replaced by its own."""
    return {**parent, **child}


class Catalog:
    """The packs found in some folders (official first), by namespace and version."""

    def __init__(self, folders: Iterable[Path]) -> None:
        self._packs: dict[str, dict[str, Pack]] = {}
        for folder in folders:
            for path in sorted(Path(folder).glob("*/pack.yaml")):
                pack = load_pack(path)
                self._packs.setdefault(pack.namespace, {})[pack.version] = pack

    def __iter__(self):
        for versions in self._packs.values():
            yield from versions.values()

    def only(self, keep: Callable[[Pack], bool]) -> Catalog:
        """The packs of this catalog that ``keep`` keeps (a user's view of a shared workspace)."""
        kept = Catalog(())
        for pack in self:
            if keep(pack):
                kept._packs.setdefault(pack.namespace, {})[pack.version] = pack
        return kept

    def get(self, reference: str) -> Pack:
        """A pack by ``namespace`` (newest version) or ``namespace@version``."""
        namespace, _, version = reference.partition("@")
        versions = self._packs.get(namespace)
        if not versions:
            known = ", ".join(sorted(self._packs)) or "none"
            raise NotFoundError(f"no pack named {namespace!r}; known packs: {known}")
        if not version:
            return versions[max(versions, key=_version_key)]
        if version not in versions:
            raise NotFoundError(f"{namespace} has no version {version}; versions: {', '.join(sorted(versions))}")
        return versions[version]

    def find(self, **wanted: str) -> list[tuple[Pack, str]]:
        """(pack, strategy) pairs whose inherited tags hold every wanted value, e.g. ``risk="conservative"``."""
        matches = []
        for pack in self:
            for strategy_name, strategy in pack.strategies.items():
                tags = effective_tags(pack.tags, strategy.tags)
                if all(value in tags.get(category, ()) for category, value in wanted.items()):
                    matches.append((pack, strategy_name))
        return matches


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("-")[0].split("."))
