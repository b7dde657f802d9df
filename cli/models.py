"""``sigma models create|list|show``."""

from __future__ import annotations

import argparse

from cli._common import actor, cadence, catalog, key_values, name, print_json, ticker, workspace
from engine.errors import ConfigError
from engine.models import SYMBOL_FIELD, create_model
from engine.packs import TAG_CATEGORIES


def register(commands: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``sigma models``; returns its verbs, which the training commands extend."""
    parser = commands.add_parser("models", help="create, list and show models")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    create = verbs.add_parser(
        "create",
        help="create a model from a pack strategy",
        description="A model fixes WHAT is traded: pack strategy, indicators, instrument, risk profile, cadence. "
        "Its name defaults to <ticker>_<asset>_<horizon>_<cadence>[_<variant>].",
    )
    create.add_argument("--pack", required=True, type=name("pack"), help="namespace or namespace@version")
    create.add_argument("--strategy", required=True, help="a strategy of the pack")
    create.add_argument("--instrument", choices=("stocks", "options", "futures"), help="default: the pack's")
    create.add_argument("--ticker", type=ticker, help="the stock ticker, option underlying or futures contract root")
    create.add_argument("--set", action="append", metavar="KEY=VALUE", help="an instrument setting, e.g. default_dte=7")
    create.add_argument("--indicators", help="comma-separated subset of the pack's indicators (default: the strategy's)")
    create.add_argument("--param", action="append", metavar="INDICATOR.KEY=VALUE", help="an indicator parameter")
    create.add_argument("--risk-profile", choices=("conservative", "balanced", "aggressive"), help="default: the pack's")
    create.add_argument("--cadence", type=cadence, help="bar cadence such as 1m, 1h, 1d (default: the pack's)")
    create.add_argument("--evaluation", type=cadence,
                        help="how often it decides: finer than the cadence scores the bar so far (15m: every 15 minutes, "
                             "from stored 15m bars), the cadence itself at each close (default: the pack's)")
    create.add_argument("--tag", action="append", metavar="CATEGORY=VALUE", help="a tag; replaces that category's inherited tags")
    create.add_argument("--name", type=name("name"), help="an explicit model name")
    create.add_argument("--variant", type=name("variant"), help="suffix for the automatic name")
    create.add_argument("--json", action="store_true", help="print the model as JSON")
    create.set_defaults(handler=_create)

    listing = verbs.add_parser("list", help="the workspace's models")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    show = verbs.add_parser("show", help="one model in full")
    show.add_argument("name", type=name("model"))
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(handler=_show)
    return verbs


def _create(args: argparse.Namespace) -> None:
    pack = catalog().get(args.pack)
    instrument = args.instrument or pack.default_instrument
    settings = key_values(args.set, "--set")
    if args.ticker:
        settings[SYMBOL_FIELD[instrument]] = args.ticker
    params: dict[str, dict[str, object]] = {}
    for key, value in key_values(args.param, "--param").items():
        indicator, dot, name = key.partition(".")
        if not dot:
            raise ConfigError("--param", f"{key!r} must be INDICATOR.KEY=VALUE", "write e.g. --param rsi.period=10")
        params.setdefault(indicator, {})[name] = value
    tags: dict[str, list[str]] = {}
    for category, value in key_values(args.tag, "--tag").items():
        if category not in TAG_CATEGORIES:
            raise ConfigError("--tag", f"unknown tag category {category!r}", f"use one of: {', '.join(TAG_CATEGORIES)}")
        tags[category] = [str(value)]
    with workspace() as space:
        spec = create_model(
            pack,
            strategy=args.strategy,
            instrument=instrument,
            settings=settings,
            indicators=args.indicators.split(",") if args.indicators else None,
            params=params,
            risk_profile=args.risk_profile,
            cadence=args.cadence,
            evaluation=args.evaluation,
            tags=tags,
            name=args.name,
            variant=args.variant,
            taken=space.model_names(),
        )
        space.add_model(spec, actor=actor())
    if args.json:
        return print_json(spec)
    print(f"created model {spec.name} ({pack.ref} {spec.strategy}, {', '.join(spec.indicators)})")


def _list(args: argparse.Namespace) -> None:
    with workspace() as space:
        specs = space.models()
    if args.json:
        return print_json([{"name": s.name, "pack": f"{s.pack}@{s.pack_version}", "strategy": s.strategy, "cadence": s.cadence} for s in specs])
    if not specs:
        print("no models yet: create one with `sigma models create --pack swingsigma --strategy momentum_swing --ticker SPY`")
    for spec in specs:
        print(f"{spec.name:<32} {spec.pack}@{spec.pack_version:<8} {spec.strategy:<20} {spec.cadence}")


def _show(args: argparse.Namespace) -> None:
    with workspace() as space:
        spec = space.model(args.name)
    if args.json:
        return print_json(spec)
    print(f"model        {spec.name}")
    print(f"pack         {spec.pack}@{spec.pack_version} (sha {spec.pack_sha[:12]})")
    print(f"strategy     {spec.strategy}")
    print(f"instrument   {spec.instrument}")
    print(f"risk profile {spec.risk_profile}; cadence {spec.cadence}; decides "
          + (f"every {spec.evaluation} (the bar so far)" if spec.evaluation else "at each close"))
    for indicator, params in spec.indicators.items():
        print(f"indicator    {indicator} {params}")
    print("tags         " + "; ".join(f"{k}={','.join(v)}" for k, v in spec.tags.items()))
    lineage = spec.lineage
    print(f"lineage      indicator_set {lineage.indicator_set_sha[:12]} model_config {lineage.model_config_sha[:12]} policy {lineage.policy_sha[:12]}")
