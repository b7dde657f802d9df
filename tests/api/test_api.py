"""The HTTP API against a real uvicorn server: tokens, two users who cannot see each other, errors, rate limits, docs."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, date, datetime

import httpx
import pytest
import uvicorn

from api.accounts import TIERS, RateLimiter
from api.app import create_app
from cli import main
from engine.calendar import CALENDARS
from engine.errors import ConfigError
from engine.models import create_model
from engine.packs import load_pack
from engine.store import store_bars
from engine.workspace import Workspace
from packs import OFFICIAL
from research.synthetic import generate

MODEL = {"pack": "swingsigma", "strategy": "momentum_swing", "ticker": "SPY", "name": "spy"}
PATIENCE = 600  # seconds a request may take: bounds a hung server only (a sweep's estimate on a fresh install compiles the backtester)


def _clock() -> datetime:
    return datetime(2026, 12, 7, 12, tzinfo=UTC)


class _Server:
    """A uvicorn server of ``app`` on a free loopback port, in a thread of this process."""

    def __init__(self, app) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        deadline = time.monotonic() + 60  # a loaded machine: started is what counts, the deadline only bounds a broken start
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture
def users(tmp_path):
    """(home, {user: token}): alice on pro, bob on free, and a server of their workspace."""
    home = tmp_path / "home"
    with Workspace(home, clock=_clock) as space:
        space.add_user("alice", "pro", actor="admin")
        space.add_user("bob", "free", actor="admin")
        tokens = {name: space.issue_token(name, actor="admin") for name in ("alice", "bob")}
    return home, tokens


@pytest.fixture
def served(users):
    home, tokens = users
    with _Server(create_app(home)) as server:
        clients = {name: httpx.Client(timeout=PATIENCE, base_url=server.url, headers={"Authorization": f"Bearer {token}"}) for name, token in tokens.items()}
        clients["anonymous"] = httpx.Client(timeout=PATIENCE, base_url=server.url)
        yield clients
        for client in clients.values():
            client.close()


def _store_spy(home) -> None:
    """600 daily bars of a synthetic SPY: enough for a sweep."""
    for bars, _ in generate(["SPY"], "1d", 600, CALENDARS["us_equities"], seed=1, start=date(2023, 1, 3)).values():
        store_bars(home, bars, CALENDARS["us_equities"], source="synthetic")


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"field", "problem", "fix", "message"}
    return error


def test_every_route_but_healthz_needs_a_live_token(served, users):
    home, tokens = users
    anonymous = served["anonymous"]
    assert anonymous.get("/healthz").json()["status"] == "ok"
    for path in ("/api/me", "/api/packs", "/api/models", "/api/trained", "/api/audit"):
        error = _error(anonymous.get(path), 401)
        assert error["field"] == "Authorization" and "sigma users token" in error["fix"]
    assert _error(anonymous.get("/api/me", headers={"Authorization": "Bearer sig_forged"}), 401)["problem"].endswith("unknown or revoked")
    assert served["alice"].get("/api/me").json() == {"name": "alice", "tier": "pro", "limits": {
        "description": TIERS["pro"].description, "private_packs": -1, "custom_sweep_configurations": 3000, "requests_per_minute": 3000}}
    with Workspace(home, clock=_clock) as space:
        assert space.revoke_tokens("alice", actor="admin") == 1
    _error(served["alice"].get("/api/me"), 401)
    assert served["bob"].get("/api/me").status_code == 200


def test_two_users_see_and_name_only_their_own_models(served):
    alice, bob = served["alice"], served["bob"]
    created = alice.post("/api/models", json=MODEL)
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "alice_spy"
    assert [m["name"] for m in alice.get("/api/models").json()] == ["alice_spy"]
    assert alice.get("/api/models/alice_spy").json()["strategy"] == "momentum_swing"
    # Another user's model is as absent as one that does not exist: the same 404, the same words.
    assert bob.get("/api/models").json() == []
    theirs, missing = _error(bob.get("/api/models/alice_spy"), 404), _error(bob.get("/api/models/bob_nothing"), 404)
    assert theirs["problem"].replace("alice_spy", "X") == missing["problem"].replace("bob_nothing", "X")
    # Names are unique per user: bob may call his "spy" too; alice may not twice.
    assert bob.post("/api/models", json=MODEL).json()["name"] == "bob_spy"
    assert _error(alice.post("/api/models", json=MODEL), 400)["field"] == "name"
    # Without a name, each user's automatic names count their own models only.
    automatic = {key: value for key, value in MODEL.items() if key != "name"}
    assert alice.post("/api/models", json=automatic).json()["name"] == "alice_spy_stock_days_1d"
    assert alice.post("/api/models", json=automatic).json()["name"] == "alice_spy_stock_days_1d_2"
    assert bob.post("/api/models", json=automatic).json()["name"] == "bob_spy_stock_days_1d"
    actions = [(entry["actor"], entry["action"], entry["subject"]) for entry in alice.get("/api/audit", params={"action": "model."}).json()]
    assert actions == [("alice", "model.create", "alice_spy"), ("alice", "model.create", "alice_spy_stock_days_1d"),
                       ("alice", "model.create", "alice_spy_stock_days_1d_2")]  # fmt: skip
    assert alice.get("/api/trained").json() == []


def test_bad_input_is_one_json_error_in_the_command_lines_words(served):
    alice = served["alice"]
    pack = load_pack(OFFICIAL / "swingsigma")
    with pytest.raises(ConfigError) as cli_words:
        create_model(pack, strategy="no_such_strategy", settings={"ticker": "SPY"})
    error = _error(alice.post("/api/models", json=MODEL | {"strategy": "no_such_strategy"}), 400)
    assert (error["field"], error["message"]) == ("strategy", str(cli_words.value))
    assert _error(alice.post("/api/models", json=MODEL | {"colour": "red"}), 400)["problem"].startswith("Object contains unknown field `colour`")
    assert _error(alice.post("/api/models", json=MODEL | {"risk_profile": "reckless"}), 400)["field"] == "risk_profile"
    assert _error(alice.post("/api/models", json=MODEL | {"ticker": "../etc"}), 400)["field"] == "ticker"
    assert _error(alice.post("/api/models", content=b"{not json"), 400)["field"] == "body"
    assert _error(alice.post("/api/models", json=MODEL | {"name": "x" * 60}), 400)["field"] == "name"
    assert _error(alice.get("/api/packs/nosuchpack"), 404)["problem"]
    assert _error(alice.get("/api/models/bad name!"), 400)["field"] == "model"
    assert _error(alice.get("/api/nothing/here"), 404)["problem"] == "Not Found"
    assert _error(alice.delete("/api/packs"), 405)["fix"] == "GET /docs lists the routes"
    assert alice.get("/api/models").json() == []  # nothing was written by any of them


def test_packs_are_listed_filtered_shown_and_validated(served):
    alice = served["alice"]
    every = alice.get("/api/packs").json()
    assert {"swingsigma", "trendsigma", "zerosigma"} <= {row["pack"].partition("@")[0] for row in every}
    assert {row["pack"].partition("@")[0] for row in alice.get("/api/packs", params={"q": "swingsigma"}).json()} == {"swingsigma"}
    aggressive = alice.get("/api/packs", params={"risk": "aggressive"}).json()
    assert aggressive and all("aggressive" in str(row["tags"]) or row["risk"] == "aggressive" for row in aggressive)
    assert alice.get("/api/packs/swingsigma").json()["namespace"] == "swingsigma"
    official = (OFFICIAL / "swingsigma" / "pack.yaml").read_bytes()
    assert alice.post("/api/packs/validate", content=official).json()["status"] == "APPROVED"
    broken = alice.post("/api/packs/validate", content=official.replace(b"cadence: 1d", b"cadence: 7x", 1)).json()
    assert broken["status"] == "REJECTED" and [c["field"] for c in broken["checks"] if c["status"] == "FAIL"] == ["cadence"]
    assert _error(alice.post("/api/packs/validate", content=b"#" * 1_000_001), 413)["field"] == "body"
    registry = alice.get("/api/indicators").json()
    assert {"rsi", "macd", "atr"} <= {row["name"] for row in registry}
    rsi = next(row for row in alice.get("/api/indicators", params={"group": "momentum"}).json() if row["name"] == "rsi")
    assert {"name": "period", "default": 14}.items() <= rsi["parameters"][0].items()
    assert _error(alice.get("/api/indicators", params={"group": "astrology"}), 400)["field"] == "group"
    undecodable = alice.post("/api/packs/validate", content=official.replace(b"namespace:", b"namespaces:", 1)).json()
    assert undecodable["status"] == "REJECTED" and undecodable["checks"][0]["name"] == "Schema"


def test_a_token_past_its_tiers_rate_is_answered_429(users):
    home, tokens = users
    frozen = RateLimiter(clock=lambda: 0.0)  # no time passes: the bucket never refills
    with _Server(create_app(home, limiter=frozen)) as server, httpx.Client(timeout=PATIENCE, base_url=server.url) as client:
        bob = {"Authorization": f"Bearer {tokens['bob']}"}
        answers = [client.get("/api/me", headers=bob).status_code for _ in range(TIERS["free"].requests_per_minute + 1)]
        assert answers[:-1] == [200] * TIERS["free"].requests_per_minute
        refused = client.get("/api/me", headers=bob)
        assert _error(refused, 429)["problem"].startswith("more than 120 requests a minute") and int(refused.headers["retry-after"]) >= 1
        assert client.get("/api/me", headers={"Authorization": f"Bearer {tokens['alice']}"}).status_code == 200  # per token


def test_the_rate_limiter_refills_with_time():
    now = [0.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take("t", 60) for _ in range(60)] == [0.0] * 60
    assert limiter.take("t", 60) == pytest.approx(1.0)
    now[0] = 1.0
    assert limiter.take("t", 60) == 0.0 and limiter.take("t", 60) > 0.0


def test_docs_and_cors(users):
    home, tokens = users
    with _Server(create_app(home)) as server, httpx.Client(timeout=PATIENCE, base_url=server.url) as client:
        document = client.get("/openapi.json").json()
        assert "ModelRequest" in document["components"]["schemas"] and "/api/models" in document["paths"]
        assert client.get("/docs").status_code == 200
        assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers
    with _Server(create_app(home, cors_origins=("https://desk.example",))) as server, httpx.Client(timeout=PATIENCE, base_url=server.url) as client:
        allowed = client.get("/healthz", headers={"Origin": "https://desk.example"})
        assert allowed.headers["access-control-allow-origin"] == "https://desk.example"
        assert "access-control-allow-origin" not in client.get("/healthz", headers={"Origin": "https://evil.example"}).headers


def test_users_from_the_command_line(capsys, workspace):
    assert main(["users", "add", "carol", "--tier", "premium"]) == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("sig_") and len(token) > 40
    with Workspace(workspace, clock=_clock) as space:
        assert space.token_user(token).name == "carol"
        stored = space._db.execute("SELECT sha256 FROM tokens").fetchall()
    assert token not in str(stored)  # only its hash is kept
    assert main(["users", "list"]) == 0 and "carol" in capsys.readouterr().out
    assert main(["users", "token", "carol"]) == 0
    second = capsys.readouterr().out.strip()
    assert main(["users", "revoke", "carol"]) == 0 and "revoked 2 tokens of carol" in capsys.readouterr().out
    with Workspace(workspace, clock=_clock) as space:
        assert space.token_user(token) is None and space.token_user(second) is None
    assert main(["users", "add", "local"]) == 2 and "command line's own" in capsys.readouterr().err
    assert main(["users", "add", "Bad-Name"]) == 2 and "cannot name a user" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["users", "add", "dave", "--tier", "gold"])
    assert refused.value.code == 2 and "invalid choice: 'gold'" in capsys.readouterr().err
    assert main(["users", "token", "nobody"]) == 2 and "no user named 'nobody'" in capsys.readouterr().err


def test_sweeps_are_queued_cancelled_and_capped_by_tier(served, users):
    """With no worker running, a sweep stays queued: cancelled there, it ends; a tier caps custom sweeps (403)."""
    home, _ = users
    with Workspace(home, clock=_clock) as space:
        space.add_user("carol", "premium", actor="admin")
        carol = httpx.Client(timeout=PATIENCE, base_url=str(served["alice"].base_url), headers={"Authorization": f"Bearer {space.issue_token('carol', actor='admin')}"})
    alice, bob = served["alice"], served["bob"]
    for client in (alice, bob, carol):
        assert client.post("/api/models", json=MODEL | {"evaluation": "1d"}).status_code == 201
    # Without the bars it needs, a sweep is refused before it queues, in the words of the command line.
    missing = _error(alice.post("/api/sweeps", json={"model": "alice_spy"}), 400)
    assert missing["field"] == "data" and missing["problem"] == "no 1d bars for SPY in the workspace" and "sigma data import" in missing["fix"]
    _store_spy(home)
    # The estimate is measured before it starts: asked alone (dry_run), nothing is queued.
    told = alice.post("/api/sweeps", params={"dry_run": True}, json={"model": "alice_spy"}).json()
    assert told["estimate"]["configurations"] == told["combinations"] and told["estimate"]["rows"] == 600
    assert told["estimate"]["seconds"] > 0 and alice.get("/api/sweeps").json() == []
    queued = alice.post("/api/sweeps", json={"model": "alice_spy"})
    assert queued.status_code == 202 and queued.json()["status"] == "queued" and queued.json()["combinations"] <= 45
    assert queued.json()["estimate"]["backtests"] == queued.json()["combinations"]  # a simple sweep is never pruned
    sweep_id = queued.json()["id"]
    assert [row["id"] for row in alice.get("/api/sweeps").json()] == [sweep_id] and bob.get("/api/sweeps").json() == []
    assert _error(alice.get(f"/api/sweeps/{sweep_id}/results"), 404)["problem"].startswith(f"sweep {sweep_id} is queued")
    assert alice.post(f"/api/sweeps/{sweep_id}/cancel").json()["status"] == "cancelled"
    assert alice.post(f"/api/sweeps/{sweep_id}/resume").status_code == 202  # queued for a worker again
    assert _error(bob.post(f"/api/sweeps/{sweep_id}/cancel"), 404)
    # Tiers: free runs simple sweeps only; premium up to 1,000 custom configurations; the pro flag is the tier's, not the body's.
    assert _error(bob.post("/api/sweeps", json={"model": "bob_spy", "mode": "custom", "pro": True}), 403)["field"] == "mode"
    wide = {"threshold": [0.5, 0.55, 0.6, 0.65, 0.7], "stop_loss": [0.01, 0.02, 0.03, 0.04, 0.05], "take_profit": [0.02, 0.04, 0.06, 0.08, 0.1],
            "max_positions": [1, 2]}  # fmt: skip
    over = _error(carol.post("/api/sweeps", json={"model": "carol_spy", "mode": "custom", "overrides": wide}), 403)
    assert over["field"] == "overrides" and "premium tier's 1,000" in over["problem"]
    assert alice.post("/api/sweeps", json={"model": "alice_spy", "mode": "custom", "overrides": wide}).status_code == 202
    carol.close()


def _private(namespace: str, version: str = "1.0.0", name: str = "") -> bytes:
    """The official swingsigma pack as a private pack ``namespace@version``."""
    text = (OFFICIAL / "swingsigma" / "pack.yaml").read_bytes()
    return (text.replace(b"namespace: swingsigma", b"namespace: " + namespace.encode(), 1)
            .replace(b"version: 1.1.0", b"version: " + version.encode(), 1)
            .replace(b"name: swingsigma", b"name: " + (name or namespace).encode(), 1))  # fmt: skip


def test_private_packs_are_their_owners_and_capped_by_tier(served, users):
    home, _ = users
    alice, bob = served["alice"], served["bob"]
    created = alice.post("/api/packs", content=_private("alice_swing"))
    assert created.status_code == 201 and created.json()["status"] == "APPROVED" and created.json()["pack"] == "alice_swing@1.0.0"
    assert (home / "packs" / "alice_swing@1.0.0" / "pack.yaml").read_bytes() == _private("alice_swing")
    assert "alice_swing@1.0.0" in {row["pack"] for row in alice.get("/api/packs").json()}
    # bob sees the official packs only; alice's is as absent to him as a pack that does not exist.
    assert {row["pack"].partition("@")[0] for row in bob.get("/api/packs").json()} == {"swingsigma", "trendsigma", "zerosigma"}
    assert _error(bob.get("/api/packs/alice_swing"), 404)
    assert _error(bob.post("/api/models", json=MODEL | {"pack": "alice_swing"}), 404)
    assert _error(bob.put("/api/packs/alice_swing", content=_private("alice_swing", "2.0.0")), 404)
    assert _error(bob.delete("/api/packs/alice_swing"), 404)
    # The free tier keeps no private pack (403); a namespace is its owner's (400 naming the field and the fix).
    assert _error(bob.post("/api/packs", content=_private("bob_swing")), 403)["field"] == "pack"
    theirs = _error(alice.post("/api/packs", content=_private("bob_swing", name="bobs")), 400)
    assert theirs["field"] == "namespace" and theirs["fix"] == "name it alice_bob_swing"
    assert _error(alice.post("/api/packs", content=_private("alice_swing")), 400)["fix"] == "PUT /api/packs/alice_swing to change it"
    assert _error(alice.post("/api/packs", content=_private("alice_x@1.0.0", name="ax")), 400)["field"] == "namespace"
    # A rejected pack is answered 400 with the linter's whole report; nothing is kept.
    rejected = alice.post("/api/packs", content=_private("alice_bad").replace(b"cadence: 1d", b"cadence: 7x", 1))
    assert _error(rejected, 400)["field"] == "cadence" and rejected.json()["report"]["status"] == "REJECTED"
    assert not list(home.glob("packs/alice_bad*"))
    # A model is made from it; that version may no longer change, a new version may be added beside it.
    assert alice.post("/api/models", json=MODEL | {"pack": "alice_swing"}).json()["pack"] == "alice_swing"
    changed = _private("alice_swing").replace(b"slippage_bps: 5", b"slippage_bps: 6")
    assert _error(alice.put("/api/packs/alice_swing", content=changed), 400)["field"] == "version"
    assert alice.put("/api/packs/alice_swing", content=_private("alice_swing", "1.1.0")).status_code == 200
    assert alice.get("/api/packs/alice_swing").json()["version"] == "1.1.0"
    assert _error(alice.put("/api/packs/alice_swing", content=_private("alice_other")), 400)["field"] == "namespace"
    # Deleting: refused while a model was made from the version, done for the one no model uses.
    assert _error(alice.delete("/api/packs/alice_swing"), 400)["field"] == "pack"
    assert alice.delete("/api/packs/alice_swing@1.1.0").json()["deleted"] == ["alice_swing@1.1.0"]
    assert alice.delete("/api/models/alice_spy").status_code == 200
    assert alice.delete("/api/packs/alice_swing").json()["deleted"] == ["alice_swing@1.0.0"]
    assert _error(alice.get("/api/packs/alice_swing"), 404)
    actions = [(entry["action"], entry["subject"]) for entry in alice.get("/api/audit", params={"action": "pack."}).json()]
    assert actions == [("pack.create", "alice_swing@1.0.0"), ("pack.update", "alice_swing@1.1.0"), ("pack.delete", "alice_swing"),
                       ("pack.delete", "alice_swing")]  # fmt: skip


def test_the_premium_tier_keeps_five_private_packs(users):
    home, _ = users
    with Workspace(home, clock=_clock) as space:
        space.add_user("carol", "premium", actor="admin")
        token = space.issue_token("carol", actor="admin")
    with _Server(create_app(home)) as server, httpx.Client(timeout=PATIENCE, base_url=server.url, headers={"Authorization": f"Bearer {token}"}) as carol:
        for number in range(5):
            assert carol.post("/api/packs", content=_private(f"carol_p{number}")).status_code == 201
        sixth = _error(carol.post("/api/packs", content=_private("carol_p5")), 403)
        assert sixth["problem"] == "the premium tier keeps 5 private packs and you have 5"
        assert carol.put("/api/packs/carol_p0", content=_private("carol_p0", "1.0.1")).status_code == 200  # a version is no new pack
        assert carol.delete("/api/packs/carol_p4").status_code == 200
        assert carol.post("/api/packs", content=_private("carol_p5")).status_code == 201


def test_a_model_is_updated_until_a_sweep_is_run_on_it(served, users):
    _store_spy(users[0])
    alice, bob = served["alice"], served["bob"]
    daily = MODEL | {"evaluation": "1d"}
    assert alice.post("/api/models", json=daily).status_code == 201
    checked = alice.put("/api/models/alice_spy", params={"dry_run": True}, json=MODEL | {"risk_profile": "aggressive"})
    assert checked.json()["risk_profile"] == "aggressive" and alice.get("/api/models/alice_spy").json()["risk_profile"] == "balanced"
    updated = alice.put("/api/models/alice_spy", json={key: value for key, value in daily.items() if key != "name"} | {"risk_profile": "aggressive"})
    assert updated.status_code == 200 and updated.json()["name"] == "alice_spy"
    assert alice.get("/api/models/alice_spy").json()["risk_profile"] == "aggressive"
    assert _error(alice.put("/api/models/alice_spy", json=MODEL | {"name": "other"}), 400)["field"] == "name"
    assert _error(alice.put("/api/models/alice_spy", json=MODEL | {"variant": "b"}), 400)["field"] == "variant"
    assert _error(alice.put("/api/models/alice_spy", json=MODEL | {"strategy": "nope"}), 400)["field"] == "strategy"
    assert _error(bob.put("/api/models/alice_spy", json=MODEL), 404)
    swept = alice.post("/api/sweeps", json={"model": "alice_spy"})
    assert swept.status_code == 202, swept.text
    assert _error(alice.put("/api/models/alice_spy", json=daily), 400)["field"] == "model"
    audit = [entry["action"] for entry in alice.get("/api/audit", params={"subject": "alice_spy"}).json()]
    assert audit[:2] == ["model.create", "model.update"]
