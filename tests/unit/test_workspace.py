import sqlite3
from datetime import UTC, datetime

import pytest

from engine.errors import ConfigError, NotFoundError, SigmaError
from engine.lineage import content_sha
from engine.models import create_model
from engine.packs import Catalog
from engine.workspace import MIGRATIONS, Workspace
from packs import OFFICIAL

CLOCK = lambda: datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)  # noqa: E731
SPEC = create_model(Catalog([OFFICIAL]).get("swingsigma"), strategy="momentum_swing", settings={"ticker": "SPY"})


def test_new_workspace_has_its_folders_and_latest_schema(tmp_path):
    with Workspace(tmp_path / "home", clock=CLOCK) as space:
        assert space.schema_version == len(MIGRATIONS)
        assert {p.name for p in (tmp_path / "home").iterdir()} >= {"sigma.db", "data", "artifacts", "packs"}


def test_models_persist_and_are_audited(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        space.add_model(SPEC, actor="ana")
        with pytest.raises(ConfigError, match="already exists"):
            space.add_model(SPEC, actor="ana")
    with Workspace(tmp_path, clock=CLOCK) as space:
        assert space.model(SPEC.name) == SPEC
        assert content_sha(space.model(SPEC.name)) == content_sha(SPEC)  # 14 stays 14, not 14.0
        assert [m.name for m in space.models()] == [SPEC.name]
        [entry] = space.audit_log()
        assert (entry.at, entry.actor, entry.action, entry.subject) == ("2026-01-02T03:04:05+00:00", "ana", "model.create", SPEC.name)
        assert entry.details["lineage"]["model_config_sha"] == SPEC.model_config_sha
        with pytest.raises(NotFoundError, match="no model named 'nope'"):
            space.model("nope")


def test_audit_log_is_append_only(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        space.audit("ana", "test", "x")
    db = sqlite3.connect(tmp_path / "sigma.db")
    for statement in ("UPDATE audit_log SET actor = 'eve'", "DELETE FROM audit_log"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(statement)


def test_migrations_run_once_and_a_newer_schema_is_refused(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        space.add_model(SPEC, actor="ana")
    with Workspace(tmp_path, clock=CLOCK) as space:  # re-opening migrates nothing, keeps data
        assert space.model_names() == {SPEC.name}
    db = sqlite3.connect(tmp_path / "sigma.db")
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(SigmaError, match="newer than this Sigma understands"):
        Workspace(tmp_path, clock=CLOCK)


def test_artifacts_are_content_addressed_and_verified(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        sha = space.put_artifact(b"onnx bytes")
        assert space.put_artifact(b"onnx bytes") == sha
        assert space.read_artifact(sha) == b"onnx bytes"
        path = tmp_path / "artifacts" / sha[:2] / sha
        path.write_bytes(b"tampered")
        with pytest.raises(SigmaError, match=f"artifact {sha} failed its SHA-256 check"):
            space.read_artifact(sha)
        with pytest.raises(NotFoundError):
            space.read_artifact("0" * 64)
        with pytest.raises(ConfigError, match="is not a SHA-256"):
            space.read_artifact("../../etc/passwd")
