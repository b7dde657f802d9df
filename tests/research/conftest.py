"""Fixtures for research tests: a workspace holding a small synthetic market and a model on it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from engine.calendar import CALENDARS
from engine.models import create_model
from engine.packs import load_pack
from engine.store import store_bars
from engine.workspace import Workspace
from packs import OFFICIAL
from research.synthetic import generate

US = CALENDARS["us_equities"]


@pytest.fixture
def space(tmp_path):
    with Workspace(tmp_path / "home", clock=lambda: datetime(2026, 11, 21, tzinfo=UTC)) as workspace:
        yield workspace


@pytest.fixture
def swing(space):
    """(workspace, pack, model) with five years of synthetic daily bars for SPY, QQQ and IWM."""
    for bars, _ in generate(["SPY", "QQQ", "IWM"], "1d", 1260, US, seed=3).values():
        store_bars(space.home, bars, US, source="synthetic")
    pack = load_pack(OFFICIAL / "swingsigma")
    spec = create_model(pack, strategy="momentum_swing", settings={"ticker": "SPY"}, evaluation="1d")  # daily bars only
    space.add_model(spec, actor="test")
    return space, pack, spec
