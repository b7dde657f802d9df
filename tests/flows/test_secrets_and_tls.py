"""Credentials, exposure and TLS: a password never printed, failures in one line, /healthz on localhost, rediss:// tested."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from bytewax.testing import run_main

from cli import main
from flows.live import flow
from flows.redis_server import free_port
from flows.sinks import ALERTS
from tests.flows.conftest import REPOSITORY

PASSWORD = "s3cret-pass"


def _sigma(home, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIGMA_HOME": str(home)}
    env.pop("REDIS_URL", None)
    return subprocess.run([sys.executable, "-m", "cli", *args], cwd=REPOSITORY, env=env, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)  # fmt: skip


def _one_line(done: subprocess.CompletedProcess) -> str:
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and "Traceback" not in err and "panicked" not in err, done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    return err


def test_health_prints_no_password_in_text_json_or_healthz_and_listens_on_localhost(served, secured_redis_servers, capsys, monkeypatch):
    home, replay, _ = served
    monkeypatch.setenv("SIGMA_HOME", str(home))
    secured, _ = secured_redis_servers
    run_main(flow(home, secured.url, source="files", files=[replay]))
    for options in ([], ["--json"]):
        main(["health", "--redis-url", secured.url, "--stale-seconds", "1e12", *options])
        out = capsys.readouterr()
        assert PASSWORD not in out.out + out.err and ("healthy; Redis ok" in out.out or '"redis": "ok"' in out.out), out.out
    stopped = secured.url.replace(PASSWORD, "wrong")
    main(["health", "--redis-url", stopped])
    out = capsys.readouterr().out
    assert "authentication failed" in out and "unreachable" not in out and "wrong" not in out

    port = free_port()
    env = {**os.environ, "SIGMA_HOME": str(home)}
    server = subprocess.Popen([sys.executable, "-m", "cli", "health", "--serve", str(port), "--redis-url", secured.url,
                               "--stale-seconds", "1e12"], cwd=REPOSITORY, env=env, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert server.stdout.readline().startswith(f"serving http://127.0.0.1:{port}/healthz")
        body = None
        for _ in range(600):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read().decode()
                break
            except OSError:
                time.sleep(0.1)
        assert body is not None and json.loads(body)["redis"] == "ok" and PASSWORD not in body
        with pytest.raises(OSError):  # bound to 127.0.0.1 alone: another loopback address (as a LAN one) finds nothing
            socket.create_connection(("127.0.0.2", port), timeout=2).close()
    finally:
        server.terminate()
        server.wait(30)


def test_every_redis_failure_a_user_can_cause_is_one_line(served, secured_redis_servers, tmp_path):
    home, replay, _ = served
    secured, _ = secured_redis_servers
    wrong = secured.url.replace(PASSWORD, "wrong-pass")
    down = f"redis://:{PASSWORD}@127.0.0.1:{free_port()}/0"
    assert "refused the credentials" in _one_line(_sigma(home, "alerts", "tail", "--redis-url", wrong))
    assert "refused the credentials" in _one_line(_sigma(home, "alerts", "tail", "--redis-url", secured.url.replace(f":{PASSWORD}@", ""),
                                                         "--group", "g"))  # fmt: skip
    assert "unreachable" in _one_line(_sigma(home, "alerts", "tail", "--redis-url", down))
    assert "unreachable" in _one_line(_sigma(home, "run", "--redis-url", down))
    assert "refused the credentials" in _one_line(_sigma(home, "run", "--source", "files", "--file", str(replay), "--redis-url", wrong))
    assert "does not exist" in _one_line(_sigma(home, "run", "--source", "files", "--file", str(tmp_path / "missing.parquet"),
                                                "--redis-url", secured.url))  # fmt: skip
    (tmp_path / "ticks.txt").write_text("x")
    assert "unknown file type" in _one_line(_sigma(home, "run", "--source", "files", "--file", str(tmp_path / "ticks.txt"),
                                                   "--redis-url", secured.url))  # fmt: skip


def test_the_flow_tail_and_health_work_over_tls(served, secured_redis_servers, capsys, monkeypatch):
    home, replay, _ = served
    monkeypatch.setenv("SIGMA_HOME", str(home))
    _, tls = secured_redis_servers
    assert tls.url.startswith("rediss://")
    run_main(flow(home, tls.url, source="files", files=[replay]))
    written = tls.client().xlen(ALERTS)
    assert written > 0
    assert main(["alerts", "tail", "--redis-url", tls.url, "--count", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(json.loads(line)["alert_id"] for line in lines)
    assert main(["health", "--redis-url", tls.url, "--stale-seconds", "1e12"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("healthy; Redis ok") and PASSWORD not in out
    plain = tls.url.replace("rediss://", "redis://").split("?")[0]  # the same server without TLS: not a silent downgrade
    done = _sigma(home, "alerts", "tail", "--redis-url", plain)
    assert done.returncode == 2 and "Traceback" not in done.stderr
