"""SIGKILL of long research work at random points, then resume: the result equals an uninterrupted run's.

`sigma sweep run` is killed (SIGKILL, not Ctrl-C: no handler runs) at random moments of
its run, out-of-fold training and backtests alike, and `sigma sweep resume` finishes it;
its leaderboard equals the uninterrupted sweep's row for row and value for value, and
the workspace database passes SQLite's integrity check.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.parquet as pq

from engine.workspace import Workspace

REPOSITORY = Path(__file__).resolve().parent.parent.parent
SWEEP = ["sweep", "run", "{model}", "--mode", "custom", "--set", "max_positions=1", "--set", "stop_loss=0.03,0.06"]


def _sigma(home: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cli", *args], cwd=REPOSITORY, env={**os.environ, "SIGMA_HOME": str(home)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip


def _board(home: Path, sweep_id: str) -> list[dict]:
    table = pq.read_table(home / "sweeps" / sweep_id / "leaderboard.parquet")
    return table.replace_schema_metadata(None).to_pylist()  # the metadata names the sweep's own id


def _sweeps(home: Path) -> dict[str, str]:
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        return {record.id: record.shown_status for record in space.sweeps()}


def test_a_sweep_killed_at_random_points_resumes_to_the_uninterrupted_leaderboard(swing):
    space, _, spec = swing
    home = space.home
    command = [part.format(model=spec.name) for part in SWEEP]
    began = time.monotonic()
    done = _sigma(home, *command)
    assert done.wait(600) == 0, done.stderr.read()
    took = time.monotonic() - began
    [reference] = _sweeps(home)
    expected = _board(home, reference)

    known = set(_sweeps(home))
    delay = random.uniform(0.1, 0.9) * took  # a new point each run: training, backtests or the leaderboard
    victim = _sigma(home, *command)
    time.sleep(delay)
    victim.send_signal(signal.SIGKILL)
    victim.wait(60)
    started = [sweep_id for sweep_id in _sweeps(home) if sweep_id not in known]
    if started:  # else killed before it recorded the sweep: nothing to resume, nothing left behind
        [sweep_id] = started
        if _sweeps(home)[sweep_id] != "finished":
            assert _sweeps(home)[sweep_id] == "killed", "a killed sweep is never shown running"
            resumed = _sigma(home, "sweep", "resume", sweep_id)
            assert resumed.wait(600) == 0, resumed.stderr.read()
        assert _sweeps(home)[sweep_id] == "finished"
        assert _board(home, sweep_id) == expected, f"killed {delay:.2f} s in: the resumed leaderboard differs"
    with Workspace(home, clock=lambda: datetime.now(UTC)) as check:
        assert check._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

