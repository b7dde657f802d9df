import sqlite3
from datetime import UTC, datetime

import pytest

from engine.errors import ConfigError, IntegrityError, NotFoundError, SigmaError
from engine.lineage import content_sha
from engine.models import SweepRequest, create_model
from engine.packs import Catalog
from engine.workspace import _SEALS_MANIFESTS, MIGRATIONS, Workspace
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
        with pytest.raises(IntegrityError, match=f"artifact {sha} failed its SHA-256 check"):
            space.read_artifact(sha)
        with pytest.raises(NotFoundError):
            space.read_artifact("0" * 64)
        with pytest.raises(ConfigError, match="is not a SHA-256"):
            space.read_artifact("../../etc/passwd")


def _trained(space: Workspace, trained_id: str = "m-r1") -> str:
    """A trained model of SPEC over stand-in ONNX bytes; returns its artifact's SHA-256."""
    if SPEC.name not in space.model_names():
        space.add_model(SPEC, actor="ana")
        space.add_sweep("s1", SPEC.name, SweepRequest(model=SPEC.name), {}, {}, 1, actor="ana")
    sha = space.put_artifact(f"onnx bytes of {trained_id}".encode())
    manifest = {"trained_id": trained_id, "features": ["ret_1", "rsi", "macd"], "policy": {"parameters": {"threshold": 0.6}},
                "lineage": {"artifact_sha": sha}}  # fmt: skip
    space.add_trained(trained_id, SPEC.name, "s1", 1, sha, manifest, actor="ana")
    return sha


def test_a_trained_model_loads_only_as_it_was_sealed_at_training(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        sha = _trained(space)
        record, model = space.load_trained("m-r1")
        assert model == b"onnx bytes of m-r1" and record.manifest["features"] == ["ret_1", "rsi", "macd"]
        [entry] = [e for e in space.audit_log("m-r1") if e.action == "model.train"]
        assert entry.details["manifest_sha"] == record.manifest_sha
    db = sqlite3.connect(tmp_path / "sigma.db", isolation_level=None)
    untouched = db.execute("SELECT manifest FROM trained_models").fetchone()[0]
    db.execute("UPDATE trained_models SET manifest = json_set(manifest, '$.features[0]', json_extract(manifest, '$.features[1]'),"
               " '$.features[1]', json_extract(manifest, '$.features[0]'))")  # fmt: skip
    with Workspace(tmp_path, clock=CLOCK) as space:
        assert space.trained("m-r1").manifest["features"] == ["rsi", "ret_1", "macd"]  # listing still shows it
        with pytest.raises(IntegrityError, match=r"trained model m-r1 is refused: its manifest in .*sigma.db was changed after "
                           r'training \(features\[0\] was "ret_1", now "rsi"; features\[1\] was "rsi", now "ret_1"\); '
                           r"train it again \(`sigma train s1 --rows 1`\)"):  # fmt: skip
            space.load_trained("m-r1")
    db.execute("UPDATE trained_models SET manifest = ?", (untouched,))
    path = tmp_path / "artifacts" / sha[:2] / sha
    path.write_bytes(b"onnx bytes of m-r2")
    with Workspace(tmp_path, clock=CLOCK) as space:
        with pytest.raises(IntegrityError, match=f"trained model m-r1 is refused: its ONNX bytes \\(artifact {sha}\\) were changed on disk"):
            space.load_trained("m-r1")
        path.write_bytes(b"onnx bytes of m-r1")
        other = _trained(space, "m-r2")
        db.execute("UPDATE trained_models SET artifact_sha = ? WHERE id = 'm-r1'", (other,))
        with pytest.raises(IntegrityError, match=f"m-r1 is refused: its row names ONNX artifact {other}, but its manifest was trained with {sha}"):
            space.load_trained("m-r1")
        db.execute("UPDATE trained_models SET artifact_sha = ? WHERE id = 'm-r1'", (sha,))
        assert space.load_trained("m-r1")[1] == b"onnx bytes of m-r1"


def test_a_changed_manifest_recorded_as_a_new_trained_model_loads_with_its_own_seal(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        sha = _trained(space)
        manifest = dict(space.trained("m-r1").manifest)
        manifest["policy"] = {"parameters": {"threshold": 0.4}}
        space.add_trained("m-r1-eager", SPEC.name, "s1", 1, sha, manifest, actor="ana")
        record, model = space.load_trained("m-r1-eager")
        assert record.manifest["policy"] == {"parameters": {"threshold": 0.4}} and model == b"onnx bytes of m-r1"
        assert record.manifest_sha != space.trained("m-r1").manifest_sha
        with pytest.raises(IntegrityError, match=f"the manifest of m-x names ONNX artifact {sha}, not {'0' * 64}"):
            space.add_trained("m-x", SPEC.name, "s1", 1, "0" * 64, manifest, actor="ana")
        sealed = tmp_path / "artifacts" / record.manifest_sha[:2] / record.manifest_sha
        size = sealed.stat().st_size
        assert space.discard("m-r1-eager", actor="ana") == size  # the ONNX bytes stay: m-r1 shares them
        assert not sealed.exists() and space.load_trained("m-r1")[1] == b"onnx bytes of m-r1"


def test_models_trained_before_manifests_were_sealed_are_sealed_on_upgrade(tmp_path):
    with Workspace(tmp_path, clock=CLOCK) as space:
        _trained(space)
    db = sqlite3.connect(tmp_path / "sigma.db", isolation_level=None)
    later = "DROP TABLE packs; DROP TABLE alert_acks; DROP TABLE alerts; DROP TABLE tokens; DROP TABLE users; ALTER TABLE models DROP COLUMN owner;"  # later
    db.executescript(f"ALTER TABLE trained_models DROP COLUMN manifest_sha; {later} PRAGMA user_version = {_SEALS_MANIFESTS - 1};")
    with Workspace(tmp_path, clock=CLOCK) as space:
        assert space.schema_version == len(MIGRATIONS)
        assert space.load_trained("m-r1")[0].manifest_sha
        assert [(e.action, e.details) for e in space.audit_log("trained_models")] == [("workspace.seal_manifests", {"sealed": ["m-r1"]})]


def test_a_new_workspace_and_recovery_store_are_the_owners_alone(tmp_path):
    import stat

    from flows.recovery import prepare

    with Workspace(tmp_path / "home", clock=lambda: datetime(2026, 1, 1, tzinfo=UTC)):
        pass
    mode = lambda path: stat.S_IMODE(path.stat().st_mode)  # noqa: E731
    assert mode(tmp_path / "home") == 0o700 and mode(tmp_path / "home" / "sigma.db") == 0o600
    prepare(tmp_path / "recovery", 2)
    assert mode(tmp_path / "recovery") == 0o700
    assert all(mode(part) == 0o600 for part in (tmp_path / "recovery").glob("part-*.sqlite3"))


def test_a_transaction_that_reads_then_writes_is_not_broken_by_another_writer(tmp_path):
    """Every transaction takes the write lock as it begins: a writer that comes while one reads waits for it, rather
    than committing underneath it (the reader's write would then fail with "database is locked")."""
    import threading

    clock = lambda: datetime(2026, 1, 1, tzinfo=UTC)  # noqa: E731
    Workspace(tmp_path, clock=clock).close()
    reader, failures = Workspace(tmp_path, clock=clock), []

    def write() -> None:
        try:
            with Workspace(tmp_path, clock=clock) as writer:
                writer.audit("other", "test.write", "x")
        except Exception as error:  # noqa: BLE001 - reported below, in the test's thread
            failures.append(error)

    other = threading.Thread(target=write)
    with reader._transaction():
        version = reader.registry_version()  # the read ...
        other.start()
        other.join(timeout=1.0)  # a deferred transaction lets it commit here; an immediate one makes it wait
        reader._bump_registry()  # ... then the write
    other.join()
    assert not failures and reader.registry_version() == version + 1 and [e.action for e in reader.audit_log("x")] == ["test.write"]
    reader.close()


def _private_pack(namespace: str):
    text = (OFFICIAL / "swingsigma" / "pack.yaml").read_bytes().replace(b"namespace: swingsigma", b"namespace: " + namespace.encode(), 1)
    from engine.packs import decode_pack

    return decode_pack(text), text


def test_a_private_pack_is_on_disk_exactly_when_its_owner_is_recorded(tmp_path, monkeypatch):
    """A save or delete that fails at its record (here its audit entry) leaves files and records as they were."""
    pack, text = _private_pack("alice_p")
    with Workspace(tmp_path / "home", clock=lambda: datetime(2026, 12, 7, tzinfo=UTC)) as space:
        folder = space.packs_folder / pack.ref
        space.save_pack(pack, text, owner="alice", actor="alice")
        assert (folder / "pack.yaml").read_bytes() == text and space.pack_owners() == {"alice_p": "alice"}

        def failing(*args, **kwargs):
            raise RuntimeError("the disk is full")

        monkeypatch.setattr(space, "audit", failing)
        with pytest.raises(RuntimeError):
            space.delete_pack("alice_p", None, actor="alice")
        assert (folder / "pack.yaml").read_bytes() == text and space.pack_owners() == {"alice_p": "alice"}  # put back
        other, other_text = _private_pack("alice_q")
        with pytest.raises(RuntimeError):
            space.save_pack(other, other_text, owner="alice", actor="alice")
        assert not (space.packs_folder / other.ref).exists() and "alice_q" not in space.pack_owners()  # nothing half made
        monkeypatch.undo()
        with pytest.raises(ConfigError, match="taken"):
            space.save_pack(pack, text, owner="bob", actor="bob")
        assert space.delete_pack("alice_p", None, actor="alice") == [pack.ref]
        assert not folder.exists() and space.pack_owners() == {} and not list((space.home / "trash").iterdir())
