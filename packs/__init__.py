"""The official packs, shipped as data: one folder per namespace holding its pack.yaml."""

from pathlib import Path

OFFICIAL = Path(__file__).resolve().parent
"""Folder that holds the official packs."""
