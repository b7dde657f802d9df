"""The official packs, shipped as data: one folder per namespace holding its pack.yaml."""

from pathlib import Path

from engine.packs import Catalog

OFFICIAL = Path(__file__).resolve().parent
"""Folder that holds the official packs."""

OFFICIAL_NAMESPACES = frozenset(pack.namespace for pack in Catalog([OFFICIAL]))
"""The official packs' namespaces: shared by every user of a server."""


def catalog(home: Path) -> Catalog:
    """Official packs, then the workspace ``home``'s own (without creating it): the command line's, and its server users'
    private packs, whose namespaces never collide (each begins with its owner's name)."""
    user = home / "packs"
    return Catalog([OFFICIAL, user] if user.is_dir() else [OFFICIAL])
