"""Long work started through the API, run outside the request by the job workers: sweeps, trainings, paper runs.

The queue is huey's: a small, kept library whose SQLite queue lives in the workspace
(``jobs.db``: nothing more to run or operate on one machine), or Redis when the server is
given one (``sigma serve --jobs-redis URL``, for workers on several machines), and
tasks that outlive a restart of the server. Celery or dramatiq would need a broker even
on one machine; arq is asyncio-only, and the work here is CPU-bound numba and XGBoost.
The workers are threads of one process beside the server's: a training fits its rows
in processes of its own, which a daemonic huey worker process may not start.

A job is a call of what the command line calls (`research.sweep.resume`), and its
state is the record it works on (a sweep's status, progress and finished chunks), not
the queue's: cancel and resume are the command line's own, and a job lost with a
killed worker is found again. When workers start (`work`), every sweep, training and
paper run of a server user that a dead process left running, or took off the queue
and never began, is queued again and resumes where it stopped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from huey import RedisHuey, SqliteHuey
from huey.api import Huey

import packs
from engine.workspace import LOCAL, Workspace

__all__ = ["Jobs", "work"]


class Jobs:
    """The workspace's job queue: what the API puts on it, and the tasks its workers run."""

    def __init__(self, home: Path, *, redis_url: str | None = None) -> None:
        self.home = Path(home)
        with self._workspace():  # the queue's file lives in the workspace: made (or migrated) first
            pass
        self.huey: Huey = (RedisHuey("sigma", url=redis_url) if redis_url
                           else SqliteHuey("sigma", filename=str(self.home / "jobs.db")))  # fmt: skip
        self._sweep = self.huey.task(name="sweep")(self._run_sweep)
        self._train = self.huey.task(name="train")(self._run_training)
        self._paper = self.huey.task(name="paper")(self._run_paper)

    def sweep(self, sweep_id: str, actor: str, *, again: bool = False) -> None:
        """Queue a created sweep; ``again``: continue one that was cancelled, failed or killed."""
        self._sweep(sweep_id, actor, again)

    def train(self, sweep_id: str, ranks: list[int], actor: str, *, seed: int = 0) -> None:
        """Queue the training of a finished sweep's rows at ``ranks`` (`research.training.train`)."""
        self._train(sweep_id, ranks, actor, seed)

    def paper(self, run_id: str) -> None:
        """Queue a created paper run (`replay.sim.execute`), judged by the trust gate when it is done."""
        self._paper(run_id)

    def recover(self) -> list[str]:
        """Queue again every server user's sweep, training and paper run that a dead process left running or never began;
        their ids. One still on the queue is then there twice: the second finds it taken
        (`engine.workspace.Workspace.claim_sweep`, a training's lock) or done, and ends."""
        with self._workspace() as space:
            # Killed while running, or taken off the queue by a worker that died before it began.
            lost = [(record.id, space.owner(record.model)) for record in space.sweeps() if record.shown_status in ("killed", "queued")]
        lost = [(sweep_id, owner) for sweep_id, owner in lost if owner != LOCAL]  # the command line resumes its own
        for sweep_id, owner in lost:
            self.sweep(sweep_id, owner, again=True)
        from replay import sim

        with self._workspace() as space:  # a paper run resumes where it stopped, doubling nothing (`sigma sim resume`)
            runs = [run.run_id for run in sim.runs(self.home) if run.shown_status == "killed"
                    and {space.owner(space.trained(model).model) for model in run.request.models} - {LOCAL}]  # fmt: skip
        for run_id in runs:
            self.paper(run_id)
        from research import training

        rows: dict[tuple[str, int, str], list[int]] = {}
        with self._workspace() as space:
            for job in training.lost(self.home):
                # Whose model it is, not who ran it: the command line trains its own in the foreground (as its shell's
                # user), and `sigma train` again resumes it.
                if space.owner(space.sweep(job.sweep).model) != LOCAL:
                    rows.setdefault((job.sweep, job.seed, job.actor), []).append(job.rank)
        for (sweep_id, seed, actor), ranks in rows.items():
            self.train(sweep_id, ranks, actor, seed=seed)
        trainings = [training.trained_id(sweep_id, rank) for (sweep_id, _, _), ranks in rows.items() for rank in ranks]
        return [sweep_id for sweep_id, _ in lost] + runs + trainings

    def _workspace(self) -> Workspace:
        return Workspace(self.home, clock=lambda: datetime.now(UTC))

    def _run_sweep(self, sweep_id: str, actor: str, again: bool) -> None:
        from research import sweep

        with self._workspace() as space:
            record = space.sweep(sweep_id)
            runnable = record.status == "queued" or (again and record.shown_status in ("cancelled", "failed", "killed"))
            if not runnable:  # cancelled while queued, finished, or taken by another worker
                return
            spec = space.model(record.model)
            pack = packs.catalog(self.home).get(f"{spec.pack}@{spec.pack_version}")
            sweep.resume(space, pack, spec, sweep_id, actor=actor, announce=lambda line: None)

    def _run_paper(self, run_id: str) -> None:
        from replay import gate, sim

        if sim.load(self.home, run_id).shown_status not in ("queued", "killed"):  # cancelled while queued, done, or running
            return
        if sim.execute(self.home, run_id, announce=lambda line: None).status == "done":
            gate.judge(self.home, run_id)

    def _run_training(self, sweep_id: str, ranks: list[int], actor: str, seed: int) -> None:
        from research import training

        with self._workspace() as space:
            spec = space.model(space.sweep(sweep_id).model)
            pack = packs.catalog(self.home).get(f"{spec.pack}@{spec.pack_version}")
            # The rows still waiting: not cancelled, not run by another worker, not registered; each resumes from its checkpoints.
            training.train(space, pack, spec, sweep_id, ranks, actor=actor, seed=seed, queued=True)


def work(home: Path, *, redis_url: str | None = None, workers: int = 1) -> None:
    """Run the workers of ``home``'s queue until stopped (SIGINT finishes the running jobs, SIGTERM stops at once)."""
    jobs = Jobs(home, redis_url=redis_url)
    jobs.recover()
    jobs.huey.create_consumer(workers=workers, worker_type="thread").run()
