"""A paced file replay (``sigma sim run --speed 10x``): event time runs the asked multiple of the wall clock."""

from __future__ import annotations

import json

import pytest

from engine.errors import ConfigError
from flows.sources import Reader, _FilePartition
from replay.sim import pace

SECOND = 1_000_000_000


class Wall:
    """A wall clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _rows(path, count: int):
    start = 1_710_000_000 * SECOND
    path.write_text("".join(json.dumps({"ticker": "SPY", "start": start + i * 60 * SECOND, "end": start + (i + 1) * 60 * SECOND,
                                        "open": 100.0, "high": 101.0, "low": 99.0, "close": 100.5, "volume": 10.0}) + "\n"
                            for i in range(count)))  # fmt: skip
    return path


def test_a_paced_replay_emits_each_bar_once_event_time_reaches_it_on_the_wall_clock(tmp_path):
    wall = Wall()
    part = _FilePartition(_rows(tmp_path / "bars.jsonl", 30), "bars", None, 1000, Reader("data"), speed=60.0, wall=wall)
    bars = lambda items: [item for item in items if item[0] == "bar"]  # noqa: E731
    assert len(bars(part.next_batch())) == 1  # the first bar at once
    assert bars(part.next_batch()) == [] and part.next_awake() is not None  # the next is a minute of event time away
    wall.now += 1.0  # one wall second at 60x: one event minute
    assert len(bars(part.next_batch())) == 1
    wall.now += 10.0
    assert len(bars(part.next_batch())) == 10
    wall.now += 1_000.0
    assert len(bars(part.next_batch())) == 18 and part.next_awake() is None
    with pytest.raises(StopIteration):
        part.next_batch()


def test_an_unpaced_replay_reads_as_fast_as_it_is_asked(tmp_path):
    part = _FilePartition(_rows(tmp_path / "bars.jsonl", 30), "bars", None, 1000, Reader("data"), wall=Wall())
    assert len([item for item in part.next_batch() if item[0] == "bar"]) == 30


@pytest.mark.parametrize(("speed", "value"), [("max", None), ("1x", 1.0), ("10x", 10.0), ("0.5x", 0.5)])
def test_speeds_read(speed, value):
    assert pace(speed) == value


@pytest.mark.parametrize("speed", ["10", "x", "-1x", "0x", "infx", "fast"])
def test_a_speed_that_is_not_one_is_refused_naming_the_option(speed):
    with pytest.raises(ConfigError, match="--speed"):
        pace(speed)
