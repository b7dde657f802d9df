"""``sigma packs list|show|validate|find``."""

from __future__ import annotations

import argparse
from pathlib import Path

import msgspec

from cli._common import catalog, name, print_json
from engine.errors import ConfigError
from engine.packs import TAG_CATEGORIES, validate


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("packs", help="list, show, validate and find packs")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    listing = verbs.add_parser("list", help="the installed packs")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    show = verbs.add_parser("show", help="one pack in full")
    show.add_argument("pack", type=name("pack"), help="namespace or namespace@version")
    show.add_argument("--json", action="store_true", help="print JSON (the default is YAML-like text)")
    show.set_defaults(handler=_show)

    validate = verbs.add_parser("validate", help="lint a pack.yaml and print the report (exit 1 when rejected)")
    validate.add_argument("path", type=Path, help="a pack.yaml or the folder holding it")
    validate.add_argument("--json", action="store_true", help="print JSON")
    validate.add_argument("--backtest", action="store_true",
                          help="also backtest the default strategy over a year of the synthetic market (>= 10 trades, Sharpe > -0.5)")
    validate.set_defaults(handler=_validate)

    find = verbs.add_parser("find", help="strategies whose inherited tags match every option given")
    for category in TAG_CATEGORIES:
        find.add_argument(f"--{category}", metavar="TAG", help=f"a {category} tag")
    find.add_argument("--json", action="store_true", help="print JSON")
    find.set_defaults(handler=_find)


def _list(args: argparse.Namespace) -> None:
    rows = [
        {
            "pack": pack.ref,
            "horizon": pack.personality.time_horizon,
            "risk": pack.personality.risk_appetite,
            "instruments": pack.supported_instruments,
            "cadence": pack.cadence,
            "strategies": list(pack.strategies),
        }
        for pack in catalog()
    ]
    if args.json:
        return print_json(rows)
    for row in rows:
        print(
            f"{row['pack']:<22} {row['horizon']:<8} {row['risk']:<13} {row['cadence']:<4} "
            f"{','.join(row['instruments']):<17} {', '.join(row['strategies'])}"
        )


def _show(args: argparse.Namespace) -> None:
    pack = catalog().get(args.pack)
    if args.json:
        return print_json(pack)
    import yaml

    print(f"# {pack.ref}  sha256 {pack.sha}")
    print(yaml.safe_dump(msgspec.to_builtins(pack), sort_keys=False, width=100).rstrip())


def _validate(args: argparse.Namespace) -> int:
    from research.performance import pack_performance

    path = args.path / "pack.yaml" if args.path.is_dir() else args.path
    if not path.is_file():
        raise ConfigError("path", f"no pack file at {path}", "give a pack.yaml or the folder holding one")
    report = validate(path.read_bytes(), catalog(), source=str(path), performance=pack_performance if args.backtest else None)
    if args.json:
        print_json({"pack": report.pack, "status": report.status, "checks": report.checks, "disclaimer": report.disclaimer})
    else:
        print(report.render())
    return 1 if report.status == "REJECTED" else 0


def _find(args: argparse.Namespace) -> None:
    wanted = {category: getattr(args, category) for category in TAG_CATEGORIES if getattr(args, category)}
    matches = [{"pack": pack.ref, "strategy": strategy} for pack, strategy in catalog().find(**wanted)]
    if args.json:
        return print_json(matches)
    if not matches:
        print("no strategy matches " + ", ".join(f"{k}={v}" for k, v in wanted.items()))
    for match in matches:
        print(f"{match['pack']:<22} {match['strategy']}")
