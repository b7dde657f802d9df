"""The alert history and the live alert stream of the API: kept once beyond the stream's trimming, each user's own only,
acknowledged, streamed as server-sent events; against a real redis-server and the flow's own alert sink."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import msgspec
import pytest

from api.app import create_app
from engine.models import SweepRequest
from engine.workspace import Workspace
from flows.archive import GROUP, Archive
from flows.readers import AlertReader
from flows.redis_server import RedisServer
from flows.sinks import ALERTS, AlertSink
from tests.api.test_api import _error, _Server
from tests.flows.test_redis import _alert
from tests.unit.test_workspace import SPEC

pytestmark = pytest.mark.skipif(not RedisServer.installed(), reason="needs a redis-server binary (Debian: apt-get install redis-server)")


def _clock() -> datetime:
    return datetime(2026, 12, 7, 12, tzinfo=UTC)


@pytest.fixture
def desk(tmp_path):
    """(home, redis server, {user: token}): alice owns trained model ``alice_m``, bob owns ``bob_m``."""
    home = tmp_path / "home"
    server = RedisServer(tmp_path / "redis").start()
    with Workspace(home, clock=_clock) as space:
        tokens = {}
        for user in ("alice", "bob"):
            space.add_user(user, "pro", actor="admin")
            tokens[user] = space.issue_token(user, actor="admin")
            spec = msgspec.structs.replace(SPEC, name=f"{user}_spy")
            space.add_model(spec, actor=user, owner=user)
            space.add_sweep(f"{user}-s", spec.name, SweepRequest(model=spec.name), {}, {}, 1, actor=user)
            sha = space.put_artifact(f"onnx bytes of {user}".encode())
            space.add_trained(f"{user}_m", spec.name, f"{user}-s", 1, sha, {"trained_id": f"{user}_m", "lineage": {"artifact_sha": sha}},
                              actor=user)  # fmt: skip
    yield home, server, tokens
    server.stop()


def _write(server: RedisServer, alerts: list) -> None:
    """As the live flow writes them: the alert sink, each id once."""
    writer = AlertSink(server.url).build("alerts", 0, 1)
    writer.write_batch(alerts)
    writer.close()


def test_the_history_keeps_each_alert_once_beyond_the_trimming_and_shows_each_user_their_own(desk):
    home, server, tokens = desk
    _write(server, [_alert(n, "alice_m") for n in range(5)] + [_alert(n, "bob_m") for n in range(3)])
    archive = Archive(home, server.url)
    reader = AlertReader(server.client(), ALERTS, GROUP, "archive", follow=False)
    assert archive.take(reader) == 8
    # Redelivered (a server killed between its write and its acknowledgement): kept once all the same.
    server.client().xgroup_setid(ALERTS, GROUP, "0")
    assert archive.take(AlertReader(server.client(), ALERTS, GROUP, "again", follow=False)) == 0
    server.client().xtrim(ALERTS, maxlen=0)  # the stream is trimmed; the history is not
    with _Server(create_app(home, redis_url=server.url)) as served:
        alice = httpx.Client(timeout=120, base_url=served.url, headers={"Authorization": f"Bearer {tokens['alice']}"})
        bob = httpx.Client(timeout=120, base_url=served.url, headers={"Authorization": f"Bearer {tokens['bob']}"})
        mine = alice.get("/api/alerts").json()
        assert sorted(alert["alert_id"] for alert in mine) == sorted(f"alice_m:SPY:{n}:open" for n in range(5))
        assert {alert["model_id"] for alert in bob.get("/api/alerts").json()} == {"bob_m"}
        assert len(alice.get("/api/alerts", params={"limit": 2}).json()) == 2
        assert _error(alice.get("/api/alerts", params={"limit": 0}), 400)["field"] == "limit"
        assert alice.get("/api/alerts/alice_m:SPY:1:open").json()["alert_id"] == "alice_m:SPY:1:open"
        assert _error(bob.get("/api/alerts/alice_m:SPY:1:open"), 404)  # another user's is as absent as none
        first = alice.post("/api/alerts/alice_m:SPY:1:open/ack").json()["acknowledged_at"]
        assert alice.post("/api/alerts/alice_m:SPY:1:open/ack").json()["acknowledged_at"] == first  # the first stands
        acknowledged = {alert["alert_id"]: alert["acknowledged_at"] for alert in alice.get("/api/alerts").json()}
        assert acknowledged["alice_m:SPY:1:open"] == first and acknowledged["alice_m:SPY:2:open"] is None
        assert _error(bob.post("/api/alerts/alice_m:SPY:1:open/ack"), 404)
        alice.close()
        bob.close()


def test_the_live_stream_sends_a_users_new_alerts_as_server_sent_events(desk):
    home, server, tokens = desk
    _write(server, [_alert(0, "alice_m")])  # before the stream is opened: not sent (it starts at the stream's end)
    with _Server(create_app(home, redis_url=server.url)) as served:
        headers = {"Authorization": f"Bearer {tokens['alice']}"}
        with httpx.Client(base_url=served.url, headers=headers, timeout=60) as client, client.stream("GET", "/api/alerts/stream") as events:
            assert events.headers["content-type"].startswith("text/event-stream")
            lines = events.iter_lines()
            assert next(lines).startswith(": alerts of your models")  # the stream is open: what is written now is sent
            _write(server, [_alert(1, "bob_m"), _alert(2, "alice_m")])
            sent = []
            for line in lines:
                if line.startswith("data: "):
                    sent.append(json.loads(line[len("data: "):]))
                    break
            assert [alert["alert_id"] for alert in sent] == ["alice_m:SPY:2:open"]  # bob's was not hers to see
            # Acknowledged as soon as it is seen, before any archive keeps it; never by another user.
            assert client.post("/api/alerts/alice_m:SPY:2:open/ack").status_code == 200
            bob = {"Authorization": f"Bearer {tokens['bob']}"}
            assert _error(httpx.post(f"{served.url}/api/alerts/alice_m:SPY:2:open/ack", headers=bob, timeout=120), 404)
    with _Server(create_app(home)) as served:  # a server without Redis says so
        assert _error(httpx.get(f"{served.url}/api/alerts/stream", headers={"Authorization": f"Bearer {tokens['alice']}"}, timeout=120), 503)


def test_performance_tracks_a_models_live_round_trips_from_the_history(desk):
    home, server, tokens = desk
    opened = _alert(1, "alice_m")
    closed = msgspec.structs.replace(opened, alert_id="alice_m:SPY:2:close", intent="close", action="SELL", entry_price=104.0,
                                     reason="take_profit", timestamp=opened.timestamp.replace(hour=16))  # fmt: skip
    _write(server, [opened, closed, _alert(3, "bob_m")])
    assert Archive(home, server.url).take(AlertReader(server.client(), ALERTS, GROUP, "archive", follow=False)) == 3
    with _Server(create_app(home)) as served:
        alice = httpx.Client(timeout=120, base_url=served.url, headers={"Authorization": f"Bearer {tokens['alice']}"})
        [record] = alice.get("/api/performance").json()
        assert (record["id"], record["stage"], record["paper"]) == ("alice_m", "trained", [])
        assert record["live"]["alerts"] == 2 and record["live"]["open"] == []
        assert record["live"]["figures"]["trades"] == 1 and abs(record["live"]["figures"]["average_return"] - 0.04) < 1e-12
        assert alice.get("/api/performance", params={"model": "alice_m"}).json() == [record]
        assert _error(alice.get("/api/performance", params={"model": "bob_m"}), 404)  # another user's is as absent as none
        alice.close()
