"""Sweeps through the API, run by `sigma serve`'s job workers: progress, results, cancel, tiers, and a server killed
in the middle of a sweep that finishes after a restart without redoing its finished work."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, date, datetime

import httpx
import pytest

from api.jobs import Jobs
from engine.calendar import CALENDARS
from engine.models import SweepRequest
from engine.store import store_bars
from engine.workspace import Workspace
from packs import catalog
from research import sweep, training
from research.synthetic import generate

# A random walk has no edge: the aggressive gates (Sharpe 0.4) let its luckiest rows through, as research's tests find.
MODEL = {"pack": "swingsigma", "strategy": "momentum_swing", "ticker": "SPY", "name": "spy", "evaluation": "1d", "risk_profile": "aggressive"}
PATIENCE = 600  # seconds: bounds a broken run only; every wait below is for a state, never for a duration


def _until(check, what: str):
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"never {what}"
        time.sleep(0.2)


class _Serve:
    """`sigma serve` in a session of its own (the server, its job workers and theirs), on a free port."""

    def __init__(self, home, *, redis_url: str | None = None) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.home, self.redis_url = home, redis_url
        self.process: subprocess.Popen | None = None

    def start(self) -> _Serve:
        env = {key: value for key, value in os.environ.items() if key != "REDIS_URL"} | {"SIGMA_HOME": str(self.home)}
        alerts = ["--redis-url", self.redis_url] if self.redis_url else []
        self.process = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(self.port), *alerts], env=env,
                                        start_new_session=True, stdin=subprocess.DEVNULL)  # fmt: skip
        _until(lambda: self._answers(), "started")
        return self

    def _answers(self) -> bool:
        assert self.process.poll() is None, "sigma serve exited"
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def kill(self) -> None:
        """SIGKILL the server and every worker: a machine that died."""
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def desk(tmp_path):
    """(home, {user: client}, serve): eight years of synthetic SPY bars, alice on pro and bob on free, a running server."""
    home = tmp_path / "home"
    with Workspace(home, clock=lambda: datetime(2026, 12, 7, tzinfo=UTC)) as space:
        for bars, _ in generate(["SPY"], "1d", 2000, CALENDARS["us_equities"], seed=1, start=date(2017, 1, 3)).values():
            store_bars(home, bars, CALENDARS["us_equities"], source="synthetic")
        tokens = {}
        for name, tier in (("alice", "pro"), ("bob", "free")):
            space.add_user(name, tier, actor="admin")
            tokens[name] = space.issue_token(name, actor="admin")
    serve = _Serve(home).start()
    clients = {name: httpx.Client(timeout=120, base_url=f"http://127.0.0.1:{serve.port}", headers={"Authorization": f"Bearer {token}"})
               for name, token in tokens.items()}  # fmt: skip
    try:
        yield home, clients, serve
    finally:
        for client in clients.values():
            client.close()
        serve.stop()


@contextlib.contextmanager
def _write_lock(home):
    """The workspace's write lock, held: every writer (a worker recording progress or an end) waits for it."""
    db = sqlite3.connect(home / "sigma.db", isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        db.execute("ROLLBACK")
        db.close()


def _error_field(response: httpx.Response) -> str:
    assert 400 <= response.status_code < 500, response.text
    return response.json()["error"]["field"]


def _status(client: httpx.Client, sweep_id: str) -> dict:
    answer = client.get(f"/api/sweeps/{sweep_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_sweep_runs_in_a_worker_and_survives_the_server_killed_in_its_middle(desk):
    home, clients, serve = desk
    alice, bob = clients["alice"], clients["bob"]
    assert alice.post("/api/models", json=MODEL).status_code == 201
    # A custom sweep over a free tier is refused before anything is written; bob cannot see or sweep alice's model.
    assert bob.post("/api/models", json=MODEL).status_code == 201
    refused = bob.post("/api/sweeps", json={"model": "bob_spy", "mode": "custom"})
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "mode"
    assert bob.post("/api/sweeps", json={"model": "alice_spy"}).status_code == 404
    started = alice.post("/api/sweeps", json={"model": "alice_spy", "mode": "custom", "overrides": {"threshold": [0.5, 0.55, 0.6]}})
    assert started.status_code == 202, started.text
    sweep_id = started.json()["id"]
    assert bob.get(f"/api/sweeps/{sweep_id}").status_code == 404 and bob.get("/api/sweeps").json() == []
    # Killed (server and workers at once) while the worker runs it: it has claimed the sweep, and the workspace's write
    # lock, held here, keeps it from recording any end before the kill, however fast the machine.
    _until(lambda: _status(alice, sweep_id)["status"] == "running", "taken by a worker")
    with _write_lock(home):
        serve.kill()
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        assert space.sweep(sweep_id).shown_status == "killed"
    serve.start()
    finished = _until(lambda: (s := _status(alice, sweep_id))["status"] == "finished" and s, "finished after the restart")
    assert finished["done"] == finished["total"] and finished["best"]
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        actions = [entry.action for entry in space.audit_log(sweep_id)]
    assert actions == ["sweep.start", "sweep.resume", "sweep.finish"], actions
    results = alice.get(f"/api/sweeps/{sweep_id}/results", params={"top": 3, "sort": "sharpe", "descending": True}).json()
    assert len(results["rows"]) == 3 and [row["sharpe"] for row in results["rows"]] == sorted((row["sharpe"] for row in results["rows"]), reverse=True)
    every = alice.get(f"/api/sweeps/{sweep_id}/results", params={"top": 100_000}).json()["rows"]
    csv = alice.get(f"/api/sweeps/{sweep_id}/results", params={"format": "csv"})
    assert csv.headers["content-type"].startswith("text/csv") and len(csv.text.splitlines()) == len(every) + 1
    assert alice.get(f"/api/sweeps/{sweep_id}/results", params={"sort": "colour"}).json()["error"]["field"] == "sort"
    passing = alice.get(f"/api/sweeps/{sweep_id}/results", params={"top": 100_000, "gate": "pass,marginal"}).json()["rows"]
    assert [row["rank"] for row in passing] == [row["rank"] for row in every if row["gate"] != "FAIL"]
    assert _error_field(alice.get(f"/api/sweeps/{sweep_id}/results", params={"gate": "GREEN"})) == "gate"


def test_a_sweep_taken_off_the_queue_by_a_worker_that_died_runs_after_the_restart(desk):
    home, clients, serve = desk
    alice = clients["alice"]
    assert alice.post("/api/models", json=MODEL).status_code == 201
    serve.kill()
    sweep_id = _queued(home, "alice_spy", "alice")  # as POST /api/sweeps queues it, with no worker running
    with _write_lock(home):  # a worker takes the task, then waits to claim the sweep: killed there
        serve.start()
        _until(lambda: Jobs(home).huey.pending_count() == 0, "taken off the queue")
        serve.kill()
    assert _status_in(home, sweep_id) == "queued"
    serve.start()
    _until(lambda: _status(alice, sweep_id)["status"] == "finished", "finished after the restart")


def _queued(home, model: str, user: str) -> str:
    """A sweep of ``model`` created and queued as POST /api/sweeps does; its id."""
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        spec = space.model(model)
        pack = catalog(home).get(f"{spec.pack}@{spec.pack_version}")
        sweep_id = sweep.create(space, pack, spec, SweepRequest(model=model), actor=user)
    Jobs(home).sweep(sweep_id, user)
    return sweep_id


def _status_in(home, sweep_id: str) -> str:
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        return space.sweep(sweep_id).shown_status


def test_a_queued_sweep_cancelled_never_runs_and_a_finished_one_trains_and_goes_live(desk):
    home, clients, serve = desk
    alice, bob = clients["alice"], clients["bob"]
    assert alice.post("/api/models", json=MODEL).status_code == 201
    preview = alice.get("/api/models/alice_spy/preview", params={"bars": 500}).json()
    assert preview["bars"] == 500 and preview["columns"] and preview["status"] in ("PASS", "WARN", "FAIL")
    assert _error_field(alice.get("/api/models/alice_spy/preview", params={"bars": 0})) == "bars"
    assert bob.get("/api/models/alice_spy/preview").status_code == 404
    assert alice.post("/api/models", json=MODEL | {"name": "spare"}).status_code == 201
    assert bob.delete("/api/models/alice_spare").status_code == 404
    assert alice.delete("/api/models/alice_spare").json() == {"name": "alice_spare", "deleted": True}
    assert [m["name"] for m in alice.get("/api/models").json()] == ["alice_spy"]
    serve.kill()  # no worker: what is queued now waits
    queued = _queued(home, "alice_spy", "alice")
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        sweep.cancel(space, queued, actor="alice")
        assert space.sweep(queued).status == "cancelled"
    serve.start()
    started = alice.post("/api/sweeps", json={"model": "alice_spy"})
    sweep_id = started.json()["id"]
    _until(lambda: _status(alice, sweep_id)["status"] == "finished", "finished")
    assert _status(alice, queued)["status"] == "cancelled"  # the worker never ran it
    assert _error_field(alice.delete("/api/models/alice_spy")) == "model"  # its sweeps name it
    every = alice.get(f"/api/sweeps/{sweep_id}/results", params={"top": 100_000}).json()["rows"]

    again = alice.post(f"/api/sweeps/{queued}/resume")
    assert again.status_code == 202
    _until(lambda: _status(alice, queued)["status"] == "finished", "resumed to the end")
    assert alice.post(f"/api/sweeps/{queued}/resume").json()["error"]["field"] == "sweep"

    # Train the best row the gates let through: the server is killed while a worker trains it, and after the restart the
    # training is queued again and finishes. The write lock held here keeps the worker from registering it before the kill.
    rank = next(row["rank"] for row in every if row["gate"] != "FAIL")
    failing = next((row["rank"] for row in every if row["gate"] == "FAIL"), None)
    if failing is not None:
        assert _error_field(alice.post("/api/training", json={"sweep": sweep_id, "rows": [failing]})) == "rows"
    assert _error_field(alice.post("/api/training", json={"sweep": sweep_id, "rows": []})) == "rows"
    assert bob.post("/api/training", json={"sweep": sweep_id, "rows": [rank]}).status_code == 404
    with _write_lock(home):
        queued = alice.post("/api/training", json={"sweep": sweep_id, "rows": [rank]})
        assert queued.status_code == 202, queued.text
        [trained_id] = queued.json()["trained"]
        # Running, or on a machine so loaded that the worker's wait for the lock ran out first and it died: killed either way.
        _until(lambda: alice.get(f"/api/training/{trained_id}").json()["status"] in ("running", "killed"), "taken by a worker")
        serve.kill()
    _until(lambda: training.status(home, trained_id) == "killed", "seen killed")  # once the kernel let go of the dead worker's lock
    serve.start()
    trained = _until(lambda: (t := alice.get(f"/api/training/{trained_id}").json())["registered"] and t, "trained after the restart")
    assert trained["status"] == "done"
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        # The first start was never written (the lock held it back): the training that ran is the one after the restart.
        assert [entry.action for entry in space.audit_log(trained_id)] == ["train.start", "model.train"]

    # Review it, and walk it to live and back.
    review = alice.get(f"/api/trained/{trained_id}").json()
    assert review["stage"] == "trained" and review["manifest"]["trained_id"] == trained_id
    assert alice.get(f"/api/trained/{trained_id}/review.png").content.startswith(b"\x89PNG")
    assert bob.get(f"/api/trained/{trained_id}").status_code == 404
    refused = alice.post(f"/api/trained/{trained_id}/publish").json()["error"]
    assert refused["field"] == "publish" and ("no paper record" in refused["problem"] or "not publishable" in refused["problem"])
    # Paper-trade it over the last half year through the live dataflow, judged by the trust gate.
    assert _error_field(alice.post("/api/paper", json={"models": [trained_id], "redis_url": "redis://10.0.0.1"})) == "redis_url"
    assert bob.post("/api/paper", json={"models": [trained_id]}).status_code == 404
    paper = alice.post("/api/paper", json={"models": [trained_id], "start": "2024-06-01"})
    assert paper.status_code == 202, paper.text
    run_id = paper.json()["id"]
    done = _until(lambda: (r := alice.get(f"/api/paper/{run_id}").json())["status"] in ("done", "failed") and r["verdict"] and r, "paper-traded")
    assert done["status"] == "done" and done["verdict"]["status"] in ("PASS", "MARGINAL", "FAIL"), done
    assert [run["id"] for run in alice.get("/api/paper").json()] == [run_id] and bob.get("/api/paper").json() == []
    report = alice.get(f"/api/paper/{run_id}/report").json()
    assert report["run"]["run_id"] == run_id and report["parity"]["decisions"] > 0
    assert alice.get(f"/api/paper/{run_id}/report", params={"html": True}).text.lstrip().lower().startswith("<!doctype html")
    assert alice.get(f"/api/trained/{trained_id}").json()["stage"].startswith("paper ")
    [tracked] = alice.get("/api/performance", params={"model": trained_id}).json()  # the model's paper record, its own trades
    assert [(entry["run"], entry["verdict"]) for entry in tracked["paper"]] == [(run_id, done["verdict"]["status"])]
    assert tracked["paper"][0]["figures"]["trades"] == done["summary"]["trades"] and tracked["live"]["alerts"] == 0
    forced = alice.post(f"/api/trained/{trained_id}/publish", json={"force": True, "reason": "api test"}).json()
    assert forced["published"]
    assert alice.post(f"/api/trained/{trained_id}/kill").json()["killed"] is True
    assert [t["killed_at"] is not None for t in alice.get("/api/trained").json()] == [True]
    assert _error_field(alice.delete(f"/api/trained/{trained_id}")) == "discard"  # published: not discarded
    assert alice.post(f"/api/trained/{trained_id}/unpublish").json()["published"] is False
    assert alice.delete(f"/api/trained/{trained_id}").json()["discarded"] is True
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        forced_entries = [e for e in space.audit_log(trained_id) if "publish" in e.action]
    [published] = [e for e in forced_entries if e.action == "model.publish"]
    # Over a refusing verdict the audit keeps why; through passing ones there was nothing to override.
    assert published.actor == "alice" and published.details.get("reason") == ("api test" if forced["overridden"] else None), published


def test_the_workers_queue_again_a_server_users_lost_training_never_the_command_lines(tmp_path):
    import msgspec

    from tests.unit.test_workspace import SPEC

    home = tmp_path / "home"
    with Workspace(home, clock=lambda: datetime(2026, 12, 7, tzinfo=UTC)) as space:
        space.add_user("alice", "pro", actor="admin")
        for owner, model in (("alice", "alice_spy"), ("local", "spy")):
            space.add_model(msgspec.structs.replace(SPEC, name=model), actor=owner, owner=owner)
            space.add_sweep(f"{model}-s", model, SweepRequest(model=model), {}, {}, 1, actor=owner)
            space.update_sweep(f"{model}-s", status="finished")
            training.queue(space, f"{model}-s", [1, 2], actor="root" if owner == "local" else owner)
        training.cancel(space, "alice_spy-s-r2")  # cancelled while queued: never run
    jobs = Jobs(home)
    assert jobs.recover() == ["alice_spy-s-r1"]  # the command line's own (its shell's user "root") resumes with `sigma train`
    assert jobs.huey.pending_count() == 1
