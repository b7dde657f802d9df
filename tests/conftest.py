"""Shared fixtures: where the real market data lives, and how its absence is reported."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPOSITORY = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("SIGMA_SHARED_DATA", REPOSITORY.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path of a file under ../shared/data; skips the test when absent, unless CI requires it."""
    path = SHARED_DATA / relative
    if not path.exists():
        reason = f"real market data {path} is absent (set SIGMA_SHARED_DATA to its folder)"
        if os.environ.get("SIGMA_REQUIRE_SHARED_DATA") == "1":
            pytest.fail(reason + " and SIGMA_REQUIRE_SHARED_DATA=1 forbids skipping")
        pytest.skip(reason)
    return path


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A fresh, empty SIGMA_HOME for one test."""
    home = tmp_path / "sigma-home"
    monkeypatch.setenv("SIGMA_HOME", str(home))
    return home
