"""Several commands writing one workspace at once (RELIABILITY: two sweeps, a sweep and a training, a publish during a sweep).

Each worker process does what those commands do to ``sigma.db``: a sweep's records (start,
progress every round, finish), a training's registration, publish and unpublish. They
start together and interleave their transactions; none may fail, and no write may be lost.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from datetime import UTC, datetime

from engine.workspace import Workspace
from tests.flows.conftest import REPOSITORY

WORKER = """
import sys, time
from datetime import UTC, datetime
from pathlib import Path
from engine.models import SweepRequest
from engine.workspace import Workspace
from research.training import with_policy

home, name, trained, start = Path(sys.argv[1]), sys.argv[2], sys.argv[3], float(sys.argv[4])
while time.time() < start:  # every worker begins at the same moment
    time.sleep(0.001)
with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
    model = space.trained(trained).model
    for round in range(12):
        sweep = f"{name}-sweep-{round}"
        space.add_sweep(sweep, model, SweepRequest(model=model), {}, {}, 10, actor=name)
        for done in range(1, 11):
            space.update_sweep(sweep, done=done)
        space.update_sweep(sweep, status="finished")
        copy = with_policy(space, trained, f"{name}-{round}", actor=name, threshold=0.5)
        for _ in range(5):  # each checks the record, then changes it: a read-then-write transaction
            space.publish(copy, actor=name, forced=True, reason="concurrency test")
            space.unpublish(copy, actor=name)
print("done")
"""


def test_writers_at_once_on_one_workspace_lose_nothing_and_never_see_a_locked_database(served, tmp_path):
    import time

    home = tmp_path / "home"
    shutil.copytree(served[0], home)
    trained = served[2]
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        version, audited = space.registry_version(), len(space.audit_log())
    start = time.time() + 3.0
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(home), f"w{i}", trained, str(start)], cwd=REPOSITORY,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(4)]  # fmt: skip
    results = [worker.communicate(timeout=600) for worker in workers]
    for worker, (out, err) in zip(workers, results):
        assert worker.returncode == 0 and out.strip() == "done", err
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        sweeps = {record.id: record for record in space.sweeps()}
        for i in range(4):
            for round in range(12):
                record = sweeps[f"w{i}-sweep-{round}"]
                assert record.status == "finished" and record.done == 10, record
        copies = {record.id for record in space.trained_models()}
        assert all(f"{trained}-w{i}-{round}" in copies for i in range(4) for round in range(12))
        assert not any(record.published_at for record in space.trained_models() if record.id.startswith(f"{trained}-w"))
        assert space.registry_version() == version + 4 * 12 * 5 * 2, "every publish and unpublish bumped the registry once"
        assert len(space.audit_log()) == audited + 4 * 12 * (2 + 5 * 2), "starts, registrations, publishes, unpublishes audited"
        assert space._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_commands_opening_a_new_workspace_at_once_migrate_it_once(tmp_path):
    import time

    home = tmp_path / "fresh"
    start = time.time() + 2.0
    script = ("import sys, time; from datetime import UTC, datetime; from engine.workspace import Workspace\n"
              "while time.time() < float(sys.argv[2]): time.sleep(0.001)\n"
              "Workspace(sys.argv[1], clock=lambda: datetime.now(UTC)).close(); print('ok')")  # fmt: skip
    workers = [subprocess.Popen([sys.executable, "-c", script, str(home), str(start)], cwd=REPOSITORY, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(4)]  # fmt: skip
    for worker in workers:
        out, err = worker.communicate(timeout=120)
        assert worker.returncode == 0 and out.strip() == "ok", err
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        assert space._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert space.schema_version > 0
