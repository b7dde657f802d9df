"""The registry serves a published model only as it was sealed at training."""

from __future__ import annotations

import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from engine.errors import IntegrityError
from engine.workspace import Workspace
from flows.registry import Registry
from tests.flows.conftest import policy_copy


def _clock() -> datetime:
    return datetime(2026, 11, 22, tzinfo=UTC)


def _swap_features(home: Path, trained_id: str) -> bytes:
    """Swap the first two feature names of a stored manifest, straight in SQLite; returns the manifest as it was."""
    db = sqlite3.connect(home / "sigma.db", isolation_level=None)
    [original] = db.execute("SELECT manifest FROM trained_models WHERE id = ?", (trained_id,)).fetchone()
    db.execute("UPDATE trained_models SET manifest = json_set(manifest, '$.features[0]', json_extract(manifest, '$.features[1]'),"
               " '$.features[1]', json_extract(manifest, '$.features[0]')) WHERE id = ?", (trained_id,))  # fmt: skip
    db.close()
    return original


@pytest.fixture
def home(served, tmp_path) -> Path:
    """A copy of the served workspace that a test may tamper with."""
    copy = tmp_path / "home"
    shutil.copytree(served[0], copy)
    return copy


def test_a_flow_does_not_start_on_a_tampered_manifest_or_onnx_artifact(served, home):
    trained_id = served[2]
    assert list(Registry(home).models) == [trained_id]
    original = _swap_features(home, trained_id)
    with pytest.raises(IntegrityError, match=f"trained model {trained_id} is refused: its manifest .*features\\[0\\] was"):
        Registry(home)
    db = sqlite3.connect(home / "sigma.db", isolation_level=None)
    db.execute("UPDATE trained_models SET manifest = ? WHERE id = ?", (original, trained_id))
    db.close()
    assert list(Registry(home).models) == [trained_id]
    with Workspace(home, clock=_clock) as space:
        sha = space.trained(trained_id).artifact_sha
    path = home / "artifacts" / sha[:2] / sha
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(IntegrityError, match=f"trained model {trained_id} is refused: its ONNX bytes \\(artifact {sha}\\)"):
        Registry(home)


def test_a_running_flow_keeps_the_copy_it_checked_and_leaves_a_tampered_newcomer_out(served, home, capsys):
    trained_id = served[2]
    registry = Registry(home, poll_seconds=0.0)
    loaded = registry.models[trained_id]
    _swap_features(home, trained_id)
    with Workspace(home, clock=_clock) as space:
        newcomer = policy_copy(space, trained_id, "late", threshold=0.4)
        space.publish(newcomer, actor="test")
        space.kill(trained_id, True, actor="test")
        tampered = policy_copy(space, trained_id, "tampered", threshold=0.5)
        _swap_features(home, tampered)
        space.publish(tampered, actor="test")
    assert registry.refresh()
    assert set(registry.models) == {trained_id, newcomer}
    kept = registry.models[trained_id]
    assert kept.manifest == loaded.manifest and kept.killed  # the checked copy, under today's kill switch
    err = capsys.readouterr().err
    assert f"trained model {trained_id} is refused" in err and f"{trained_id} keeps serving the copy loaded before" in err
    assert f"trained model {tampered} is refused" in err and f"{tampered} is not served" in err


def test_a_model_whose_history_keeps_regular_hours_only_is_served_bars_of_regular_hours_only(served, home):
    """Case 18: a ticker whose stored bars were imported with ``--hours regular`` gets its live intraday bars built from
    the session's ticks only; pre-market ticks make no bar for it, as they do for a ticker of every hour."""
    from engine.calendar import CALENDARS
    from engine.pipeline import Closed
    from engine.schemas import Tick
    from engine.store import load_bars, store_bars
    from flows.steps import TickerStep

    second = 1_000_000_000
    premarket, open_ = (int(datetime(2024, 3, 19, hour, minute, tzinfo=UTC).timestamp()) * second for hour, minute in ((12, 0), (13, 30)))
    items = [("tick", Tick(ticker="SPY", ts=ts, price=100.0, size=1.0), 0) for ts in (premarket, premarket + second, open_ + second)]

    def bar_starts() -> list[int]:
        out, _ = TickerStep(Registry(home), 0, None).on_batch([*items, ("clock", open_ + 120 * second, 0)])
        return sorted({item.scored.bar.start for item in out if isinstance(item, Closed)})

    assert bar_starts() == [premarket, open_], "a dataset of every hour: bars of every hour"
    bars, info = load_bars(home, "SPY", "1m")
    store_bars(home, bars, CALENDARS[info.calendar], source=info.source, hours="regular")
    assert bar_starts() == [open_], "08:00 New York made no bar; 09:30 did"


def test_a_feed_serves_only_models_whose_history_it_continues_as_one_series(served, home, capsys):
    """Case 15: one declared kind of prices per feed. A raw feed continues a model trained and warmed on raw or
    split-adjusted history; a dividend-adjusted history (Adj Close beside a feed of Close) is refused, naming the model,
    what it read and the fix, at the start, and a running flow leaves such a model out."""
    from engine.calendar import CALENDARS
    from engine.errors import ConfigError
    from engine.store import load_bars, store_bars

    trained_id = served[2]
    assert Registry(home).adjustment == "raw" and list(Registry(home).models) == [trained_id]
    with pytest.raises(ConfigError, match=f"{trained_id} was trained on raw prices, which a feed of total_return prices does not"
                                          " continue.*--adjustment raw"):
        Registry(home, adjustment="total_return")
    with pytest.raises(ConfigError, match="'adjusted' is not a kind of prices"):
        Registry(home, adjustment="adjusted")
    running = Registry(home, poll_seconds=0.0)

    def restore(ticker: str, adjustment: str) -> None:
        bars, info = load_bars(home, ticker, "1m")
        store_bars(home, bars, CALENDARS[info.calendar], source=info.source, adjustment=adjustment)

    restore("QQQ", "split")  # ends at the raw price: a raw feed continues it
    assert list(Registry(home).models) == [trained_id]
    restore("QQQ", "total_return")
    with pytest.raises(ConfigError, match=f"{trained_id} warms up on QQQ's stored total_return prices.*re-import QQQ 1m as raw or split"):
        Registry(home)
    with Workspace(home, clock=_clock) as space:
        space.publish(policy_copy(space, trained_id, "later", threshold=0.4), actor="test")
    assert running.refresh() and list(running.models) == [trained_id]  # the model loaded before keeps its checked copy
    assert f"{trained_id}-later warms up on QQQ's stored total_return prices" in capsys.readouterr().err
