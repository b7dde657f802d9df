"""The HTTP API under concurrent clients, beside a bare uvicorn endpoint measured in the same run.

`GET /api/alerts` (a user's 100 newest alerts of a history of 20,000, token checked,
JSON answered) and a bare FastAPI endpoint answering ``{}`` on the same uvicorn, each
served by its own process, asked by ``--clients`` threads at once: median and p99 of the
request latency, and requests a second. The rate limit is lifted for the benchmark
(it measures serving, not the limit). Then the live alert stream: ``--clients``
server-sent-event connections open, alerts written by the flow's own sink to a private
redis-server, and the latency from the sink's write to each client's receipt of the
alert, beside the bare floor of one XADD and one XREAD.

    python -m benchmarks.api
    python -m benchmarks.api --clients 16 --requests 400
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import msgspec
import numpy as np

from api.accounts import RateLimiter
from engine.models import SweepRequest, create_model
from engine.packs import load_pack
from engine.schemas import Lineage, StockAlert
from engine.workspace import Workspace
from flows.redis_server import RedisServer
from flows.sinks import AlertSink
from packs import OFFICIAL

REPOSITORY = Path(__file__).resolve().parent.parent
LINEAGE = Lineage(pack_sha="a" * 64, indicator_set_sha="b" * 64, model_config_sha="c" * 64, policy_sha="d" * 64)


class _Unlimited(RateLimiter):
    def take(self, key: str, per_minute: int) -> float:
        return 0.0


def app():
    """The API of SIGMA_HOME with the rate limit lifted (uvicorn --factory)."""
    from api.app import create_app

    return create_app(Path(os.environ["SIGMA_HOME"]), limiter=_Unlimited(), redis_url=os.environ.get("REDIS_URL"))


def bare():
    """The floor: FastAPI on the same uvicorn answering ``{}`` (uvicorn --factory)."""
    from fastapi import FastAPI
    from fastapi.responses import Response

    floor = FastAPI()

    @floor.get("/ping")
    def ping() -> Response:
        return Response(b"{}", media_type="application/json")

    return floor


def _alert(number: int, model: str, at: datetime) -> StockAlert:
    return StockAlert(alert_id=f"{model}:SPY:{number}:open", timestamp=at, model_id=model, action="BUY", ticker="SPY", quantity=100,
                      confidence=0.7, entry_price=100.0, valid_until=at, lineage=LINEAGE, received_at=at, emitted_at=at)  # fmt: skip


def _workspace(home: Path, history: int) -> str:
    """A user with one trained model and ``history`` archived alerts; the user's token."""
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        space.add_user("bench", "pro", actor="bench")
        token = space.issue_token("bench", actor="bench")
        spec = create_model(load_pack(OFFICIAL / "swingsigma"), strategy="momentum_swing", settings={"ticker": "SPY"},
                            evaluation="1d", name="bench_spy")  # fmt: skip
        space.add_model(spec, actor="bench", owner="bench")
        space.add_sweep("bench-s", spec.name, SweepRequest(model=spec.name), {}, {}, 1, actor="bench")
        sha = space.put_artifact(b"stand-in onnx bytes")
        space.add_trained("bench_m", spec.name, "bench-s", 1, sha, {"trained_id": "bench_m", "lineage": {"artifact_sha": sha}}, actor="bench")
        start = datetime(2024, 1, 2, 14, 30, tzinfo=UTC)
        alerts = [_alert(n, "bench_m", start + timedelta(minutes=n)) for n in range(history)]
        space.archive_alerts([(a.alert_id, a.model_id, a.ticker, a.timestamp.isoformat(), msgspec.json.encode(a)) for a in alerts])
    return token


def _serve(factory: str, home: Path, redis_url: str | None) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "SIGMA_HOME": str(home), **({"REDIS_URL": redis_url} if redis_url else {})}
    process = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port), "--log-level", "warning",
                                "--no-access-log"], cwd=REPOSITORY, env=env)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    while True:
        try:
            httpx.get(f"{url}/healthz" if "app" in factory.rpartition(":")[2] else f"{url}/ping")
            return process, url
        except httpx.TransportError:
            assert process.poll() is None, f"{factory} did not start"
            time.sleep(0.05)


def _load(url: str, path: str, headers: dict, clients: int, requests: int) -> tuple[list[float], float]:
    """``clients`` threads, each with its own connection, asking ``requests`` times: latencies (s) and requests a second."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client() -> None:
        mine = []
        with httpx.Client(base_url=url, headers=headers) as session:
            session.get(path)  # the connection opened outside the timing
            for _ in range(requests):
                began = time.perf_counter()
                answer = session.get(path)
                mine.append(time.perf_counter() - began)
                assert answer.status_code == 200, answer.text
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, len(latencies) / (time.perf_counter() - began)


def _figures(latencies: list[float]) -> str:
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3
    return f"p50 {p50:6.2f} ms  p99 {p99:6.2f} ms"


def _stream(url: str, token: str, server: RedisServer, clients: int, alerts: int) -> list[float]:
    """Latency from the sink's write of each alert to its receipt by each of ``clients`` open event streams."""
    written: dict[str, float] = {}
    received: list[float] = []
    lock = threading.Lock()
    ready = threading.Barrier(clients + 1)

    def listen() -> None:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=120) as session:
            with session.stream("GET", "/api/alerts/stream") as events:
                lines = events.iter_lines()
                next(lines)  # open: what is written from now on is sent
                ready.wait()
                seen = 0
                for line in lines:
                    if line.startswith("data: "):
                        at = time.perf_counter()
                        alert_id = msgspec.json.decode(line[6:])["alert_id"]
                        with lock:
                            received.append(at - written[alert_id])
                        seen += 1
                        if seen == alerts:
                            return

    threads = [threading.Thread(target=listen) for _ in range(clients)]
    for thread in threads:
        thread.start()
    ready.wait()
    writer = AlertSink(server.url).build("alerts", 0, 1)
    at = datetime(2025, 1, 2, 14, 30, tzinfo=UTC)
    for n in range(alerts):
        alert = _alert(n, "bench_m", at + timedelta(minutes=n))
        written[alert.alert_id] = time.perf_counter()
        writer.write_batch([alert])
        time.sleep(0.01)  # alerts as a flow writes them, not one burst
    for thread in threads:
        thread.join()
    writer.close()
    return received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=8, help="concurrent clients (default 8)")
    parser.add_argument("--requests", type=int, default=200, help="requests per client (default 200)")
    parser.add_argument("--alerts", type=int, default=200, help="alerts written while the event streams are open (default 200)")
    arguments = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="sigma-bench-api-"))
    token = _workspace(folder / "home", 20_000)
    server = RedisServer(folder / "redis").start()
    processes = []
    try:
        bare_process, bare_url = _serve("benchmarks.api:bare", folder / "home", None)
        processes.append(bare_process)
        api_process, api_url = _serve("benchmarks.api:app", folder / "home", server.url)
        processes.append(api_process)
        floor, floor_rate = _load(bare_url, "/ping", {}, arguments.clients, arguments.requests)
        served, served_rate = _load(api_url, "/api/alerts", {"Authorization": f"Bearer {token}"}, arguments.clients, arguments.requests)
        print(f"{arguments.clients} clients x {arguments.requests} requests, one uvicorn worker each, on this machine:")
        print(f"  bare FastAPI GET /ping      {_figures(floor)}  {floor_rate:8,.0f} requests/s")
        print(f"  GET /api/alerts (100 rows)  {_figures(served)}  {served_rate:8,.0f} requests/s  "
              f"({statistics.median(served) / statistics.median(floor):.1f}x the bare median)")  # fmt: skip
        client = server.client()
        round_trips = []
        for n in range(500):
            began = time.perf_counter()
            entry = client.xadd("floor", {"alert": "x" * 600})
            client.xread({"floor": "0"}, count=1) if n == 0 else client.xrange("floor", entry, entry)
            round_trips.append(time.perf_counter() - began)
        stream = _stream(api_url, token, server, arguments.clients, arguments.alerts)
        print(f"  floor: one XADD and one read back  {_figures(round_trips)}")
        print(f"  event stream, {arguments.clients} clients x {arguments.alerts} alerts: sink write -> receipt  {_figures(stream)}")
    finally:
        for process in processes:
            process.terminate()
            process.wait()
        server.stop()


if __name__ == "__main__":
    main()
