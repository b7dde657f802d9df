"""State that survives a deploy: a recovery store resumes under new code of the same state layout, and only under it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from engine import snapshot
from engine.bar_builder import BarBuilder
from engine.errors import ConfigError
from engine.screening import TickScreen
from flows.recovery import STAMP, prepare
from tests.flows.conftest import REPOSITORY
from tests.flows.test_live import KILLER, alerts, push, replay_file, tick_rows

SAYS_WHERE = "import engine; print('engine from', engine.__file__, flush=True)\n"


def _attempt(repository, arguments: list[str], env: dict, kill_after: int) -> subprocess.CompletedProcess:
    """`sigma ARGUMENTS` run by the code in ``repository``, killed by SIGKILL once its source has read ``kill_after`` items."""
    return subprocess.run([sys.executable, "-c", SAYS_WHERE + KILLER, *arguments], cwd=repository, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(repository), "SIGMA_TEST_KILL_AFTER": str(kill_after)}, timeout=300)  # fmt: skip


def test_a_deploy_of_new_code_with_the_same_layout_resumes_the_store_and_alerts_as_the_uninterrupted_run(served, redis_server,
                                                                                                         tmp_path):  # fmt: skip
    home, replay, _ = served
    replay_file(home, redis_server, replay)
    expected = alerts(redis_server)
    redis_server.client().flushall()
    push(redis_server, tick_rows(replay))
    # The new version: every source file of the flow as it is, and one of them changed (as any deploy changes some).
    deployed = tmp_path / "deployed"
    shutil.copytree(REPOSITORY, deployed, ignore=shutil.ignore_patterns(".*", "__pycache__", "tests", "*.egg-info"))
    with (deployed / "engine" / "book.py").open("a") as source:
        source.write("\n# A later version of the code: this line is new, no state class changed.\n")
    store = tmp_path / "recovery"
    arguments = ["run", "--redis-url", redis_server.url, "--recovery", str(store), "--snapshot-seconds", "0.05", "--batch", "50"]
    env = {**os.environ, "SIGMA_HOME": str(home)}

    old = _attempt(REPOSITORY, arguments, env, 3000)
    assert old.returncode == -signal.SIGKILL, old.stderr
    assert f"engine from {REPOSITORY}" in old.stdout and old.stdout.split()[-1] == "None", "the old code began afresh"
    new = _attempt(deployed, arguments, env, 10**9)
    assert new.returncode == 0, new.stderr
    assert f"engine from {deployed}" in new.stdout, "the resumed run is the new code's"
    assert new.stdout.split()[-1] != "None", "it resumed from the old code's snapshot, not from the stream's start"
    got = alerts(redis_server)
    assert len(got) == len({alert["alert_id"] for alert in got}), "no alert was written twice"
    assert got == expected


@pytest.fixture
def changed_layout(monkeypatch):
    """The state classes as a later version might declare them: BarBuilder with a new field, TickScreen without one, a new class."""
    snapshot.layout()  # the current layout's version, cached: the monkeypatch puts it back afterwards
    name, fields, *rest = snapshot._CLASSES[BarBuilder]
    monkeypatch.setitem(snapshot._CLASSES, BarBuilder, (name, (*fields, "x"), *rest))
    name, fields, *rest = snapshot._CLASSES[TickScreen]
    monkeypatch.setitem(snapshot._CLASSES, TickScreen, (name, tuple(f for f in fields if f != "_move"), *rest))

    class Foo:
        __slots__ = ("a",)

    monkeypatch.setitem(snapshot._CLASSES, Foo, ("Foo", ("a",), False, False))
    monkeypatch.setattr(snapshot, "_version", None)


def test_a_store_of_another_layout_is_refused_naming_what_changed(tmp_path, request):
    store = tmp_path / "store"
    prepare(store, 2)
    request.getfixturevalue("changed_layout")
    with pytest.raises(ConfigError) as refused:
        prepare(store, 2)
    message = str(refused.value)
    assert "holds state of another layout" in message
    assert "BarBuilder gained field `x`; class Foo is new; TickScreen lost field `_move`" in message
    assert "delete the folder to start fresh (the flow then replays from the source's start), or point --recovery at a new one" in message


def test_sigma_run_refuses_a_store_of_another_layout_before_the_flow_starts(served, redis_server, tmp_path):
    home, replay, _ = served
    store = tmp_path / "store"
    prepare(store, 4)
    stamp = json.loads((store / STAMP).read_text())
    stamp["layout"]["classes"]["BarBuilder"].append("x")  # written by a version whose bar builder had one more field
    (store / STAMP).write_text(json.dumps(stamp))
    run = subprocess.run([sys.executable, "-m", "cli", "run", "--source", "files", "--file", str(replay), "--redis-url", redis_server.url,
                          "--recovery", str(store)], cwd=REPOSITORY, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "SIGMA_HOME": str(home)})  # fmt: skip
    assert run.returncode == 2
    assert "BarBuilder lost field `x`" in run.stderr and "delete the folder" in run.stderr
    assert alerts(redis_server) == [], "nothing ran"
