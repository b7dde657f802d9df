"""What the subcommands share: the workspace, the pack catalog, JSON output and key=value options."""

from __future__ import annotations

import getpass
import sys
from datetime import UTC, datetime

import msgspec

import packs
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
