"""What the subcommands share: the workspace, the pack catalog, checked names, JSON output and key=value options."""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime

import msgspec

import packs
from engine import names
from engine.cadence import parse_cadence
from engine.errors import ConfigError
from engine.packs import Catalog
from engine.workspace import Workspace, default_home


def workspace() -> Workspace:
    return Workspace(default_home(), clock=lambda: datetime.now(UTC))


def catalog() -> Catalog:
    """Official packs, then the user's own from the workspace (without creating it)."""
    return packs.catalog(default_home())


def pack_and_model(space: Workspace, name: str):
    """(pack, model spec) of a model stored in the workspace."""
    spec = space.model(name)
    return catalog().get(f"{spec.pack}@{spec.pack_version}"), spec


def actor() -> str:
    return getpass.getuser()


def print_json(value: object) -> None:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")


def number(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def key_values(pairs: list[str] | None, option: str) -> dict[str, object]:
    """Parse repeated ``key=value`` options; numbers become numbers."""
    parsed: dict[str, object] = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(option, f"{pair!r} is not key=value", f"write e.g. {option} period=14")
        parsed[key.strip()] = number(value.strip())
    return parsed


def _argument(check: Callable[[str, str], str], field: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        try:
            return check(text, field)
        except ConfigError as error:
            raise argparse.ArgumentTypeError(f"{error.problem}; {error.fix}") from None

    parse.__name__ = field
    return parse


def name(field: str) -> Callable[[str], str]:
    """An argparse ``type`` for a model, pack, sweep, trained-model, run or account name (`engine.names.name`)."""
    return _argument(names.name, field)


def ticker(text: str) -> str:
    """An argparse ``type`` for one ticker, upper-cased (`engine.names.ticker`)."""
    return _argument(names.ticker, "ticker")(text.strip().upper())


def tickers(text: str) -> list[str]:
    """An argparse ``type`` for comma-separated tickers, each upper-cased and checked."""
    return [ticker(part) for part in text.split(",") if part.strip()]


def names_list(field: str) -> Callable[[str], list[str]]:
    """An argparse ``type`` for comma-separated names, each checked."""
    check = name(field)

    def parse(text: str) -> list[str]:
        return [check(part.strip()) for part in text.split(",") if part.strip()]

    parse.__name__ = field
    return parse


def cadence(text: str) -> str:
    """An argparse ``type`` for a bar cadence such as 1m, 1h, 1d (`engine.cadence.parse_cadence`)."""
    return _argument(lambda value, field: str(parse_cadence(value, field)), "cadence")(text)
