"""The official packs, shipped as data: one folder per namespace holding its pack.yaml."""

from pathlib import Path

from engine.packs import Catalog

OFFICIAL = Path(__file__).resolve().parent
"""Folder that holds the official packs."""


def catalog(home: Path) -> Catalog:
    """Official packs, then the user's own from the workspace ``home`` (without creating it)."""
    user = home / "packs"
    return Catalog([OFFICIAL, user] if user.is_dir() else [OFFICIAL])
