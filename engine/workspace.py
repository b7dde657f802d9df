"""The embedded workspace: one folder (SIGMA_HOME) with SQLite metadata, Parquet data and artifacts.

Layout::

    <home>/sigma.db          models, sweeps, trained models, publications, audit log, users and their tokens, the alert history
    <home>/data/             Parquet bars and results
    <home>/artifacts/ab/<sha256>   content-addressed files (ONNX models, manifests)
    <home>/packs/            the user's own packs

The database schema is versioned with ``PRAGMA user_version``; ``MIGRATIONS[i]``
upgrades version i to i + 1 and runs once, in a transaction. The audit log is
append-only: triggers refuse UPDATE and DELETE. Time comes from an injected clock.

A workspace served over HTTP (`sigma serve`) has users, each with a tier and API
tokens; a token is kept only as its SHA-256 (it is 256 random bits, so no slow hash
is needed) and shown once, when issued. Every model has an owner: `LOCAL`, the one
user of the command line, or a user of the server, who sees only their own.

A trained model is sealed when it is recorded: its manifest is stored as an artifact
too, and the row keeps the manifest's SHA-256 beside its copy, while the manifest
names the SHA-256 of the ONNX bytes. `Workspace.load_trained`, the one door to a
model that is going to score, checks that chain on every load and refuses a model
whose manifest or ONNX bytes changed since, saying which.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import secrets
import shutil
import sqlite3
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import msgspec

from engine.errors import ConfigError, IntegrityError, NotFoundError, SigmaError
from engine.gates import PolicyCheck
from engine.models import ModelSpec, SweepRequest
from engine.packs import Pack

__all__ = ["Workspace", "AuditEntry", "SweepRecord", "TrainedRecord", "UserRecord", "MIGRATIONS", "LOCAL", "default_home",
           "process_alive"]  # fmt: skip

Clock = Callable[[], datetime]

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        pack TEXT NOT NULL,
        strategy TEXT NOT NULL,
        model_config_sha TEXT NOT NULL,
        spec BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE sweeps (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL REFERENCES models(name),
        status TEXT NOT NULL,
        config BLOB NOT NULL,
        tags TEXT NOT NULL DEFAULT '[]',
        lineage BLOB,
        created_at TEXT NOT NULL,
        finished_at TEXT
    );
    CREATE TABLE trained_models (
        id TEXT PRIMARY KEY,
        model TEXT NOT NULL REFERENCES models(name),
        sweep TEXT REFERENCES sweeps(id),
        artifact_sha TEXT,
        manifest BLOB NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE publications (
        trained_model TEXT PRIMARY KEY REFERENCES trained_models(id),
        published_at TEXT NOT NULL,
        published_by TEXT NOT NULL
    );
    CREATE TABLE audit_log (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        subject TEXT NOT NULL,
        details BLOB NOT NULL
    );
    CREATE TRIGGER audit_log_is_append_only_update BEFORE UPDATE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    CREATE TRIGGER audit_log_is_append_only_delete BEFORE DELETE ON audit_log
        BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
    """,
    """
    ALTER TABLE sweeps ADD COLUMN done INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sweeps ADD COLUMN total INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sweeps ADD COLUMN pid INTEGER;
    ALTER TABLE sweeps ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE sweeps ADD COLUMN summary BLOB;
    """,
    """
    ALTER TABLE trained_models ADD COLUMN rank INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE registry_version (version INTEGER NOT NULL);
    INSERT INTO registry_version VALUES (0);
    """,
    """
    ALTER TABLE publications ADD COLUMN killed_at TEXT;
    """,
    """
    ALTER TABLE trained_models ADD COLUMN manifest_sha TEXT;
    """,
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        tier TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    CREATE TABLE tokens (
        sha256 TEXT PRIMARY KEY,
        user TEXT NOT NULL REFERENCES users(name),
        created_at TEXT NOT NULL,
        revoked_at TEXT
    );
    ALTER TABLE models ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
    CREATE TABLE alerts (
        alert_id TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        ticker TEXT NOT NULL,
        timestamp TEXT NOT NULL,
        alert BLOB NOT NULL
    );
    CREATE INDEX alerts_by_model_time ON alerts (model, timestamp);
    CREATE TABLE alert_acks (
        alert_id TEXT NOT NULL,
        user TEXT NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (alert_id, user)
    );
    """,
    """
    CREATE TABLE packs (
        namespace TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        created_at TEXT NOT NULL
    );
    """,
)
_SEALS_MANIFESTS = 5
"""The schema version from which every trained model's manifest is sealed by its SHA-256."""


LOCAL = "local"
"""The owner of what the command line creates: the workspace's single local user."""
_USER = re.compile(r"^[a-z][a-z0-9]{0,15}\Z")


class UserRecord(msgspec.Struct, frozen=True):
    """A user of the server: a name, a tier (what they may do) and when they were added."""

    name: str
    tier: str
    created_at: str
    tokens: int
    """Tokens not revoked."""


def default_home() -> Path:
    """SIGMA_HOME, or ./.sigma when it is not set."""
    return Path(os.environ.get("SIGMA_HOME", ".sigma"))


class AuditEntry(msgspec.Struct, frozen=True):
    """One line of the audit log: who did what to which thing, when, with which lineage."""

    seq: int
    at: str
    actor: str
    action: str
    subject: str
    details: dict[str, object]


class SweepRecord(msgspec.Struct, frozen=True):
    """A sweep's row: its model, status, progress, request, tags, lineage and result summary."""

    id: str
    model: str
    status: str
    done: int
    total: int
    pid: int | None
    cancel_requested: bool
    config: dict[str, object]
    tags: dict[str, list[str]]
    lineage: dict[str, object] | None
    summary: dict[str, object] | None
    created_at: str
    finished_at: str | None

    @property
    def shown_status(self) -> str:
        """The status as a user should read it: a "running" sweep whose process is gone was killed."""
        if self.status == "running" and not (self.pid and process_alive(self.pid)):
            return "killed"
        return self.status


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (a sweep's or a run's recorded worker)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a zombie is dead, whoever has not reaped it (an orphan's new parent in a container may never do)
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rpartition(b")")[2].split()[0] != b"Z"
    except (OSError, IndexError):  # no /proc here: trust the signal
        return True


class TrainedRecord(msgspec.Struct, frozen=True):
    """A trained model's row: where it came from, its artifact and manifest, whether it is published."""

    id: str
    model: str
    sweep: str | None
    rank: int
    artifact_sha: str | None
    manifest_sha: str | None
    """SHA-256 of the manifest as recorded at training, stored as an artifact too."""
    manifest: dict[str, object]
    created_at: str
    published_at: str | None
    published_by: str | None
    killed_at: str | None = None
    """Set while the model's kill switch is on: published, but it opens no new position."""

    @property
    def refusal(self) -> str:
        """Why training marked the model not publishable (its manifest's policy check); empty when it may be published."""
        check = msgspec.convert(self.manifest.get("check"), PolicyCheck | None)
        return "" if check is None or check.publishable else check.reason


_TRAINED_COLUMNS = (
    "t.id, t.model, t.sweep, t.rank, t.artifact_sha, t.manifest_sha, t.manifest, t.created_at, p.published_at, p.published_by,"
    " p.killed_at"
    " FROM trained_models t LEFT JOIN publications p ON p.trained_model = t.id"
)
_SWEEP_COLUMNS = "id, model, status, done, total, pid, cancel_requested, config, tags, lineage, summary, created_at, finished_at"
_MANIFEST = 6  # the manifest's place in a `_TRAINED_COLUMNS` row
_SHOWN_CHANGES = 5
_encode = msgspec.json.Encoder().encode
_decode_details = msgspec.json.Decoder(dict[str, object]).decode
_decode_model = msgspec.json.Decoder(ModelSpec).decode
_decode_request = msgspec.json.Decoder(SweepRequest).decode


class Workspace:
    """A user's workspace folder; open it with ``Workspace(home, clock=...)`` and close when done."""

    def __init__(self, home: Path | str, *, clock: Clock) -> None:
        self.home = Path(home)
        self._clock = clock
        new = not self.home.exists()
        for folder in ("data", "artifacts", "packs"):
            (self.home / folder).mkdir(mode=0o700, parents=True, exist_ok=True)
        if new:  # models, artifacts and the audit log are the owner's alone (a folder made by the user keeps its mode)
            self.home.chmod(0o700)
        database = self.home / "sigma.db"
        database.touch(mode=0o600, exist_ok=True)
        # Several commands may write at once (two sweeps, a publish during a training): a writer waits up to 30 s for
        # another's transaction, and every transaction takes the write lock as it begins (`_Transaction`).
        self._db = sqlite3.connect(database, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA foreign_keys = ON")
        self._prepare()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    @property
    def packs_folder(self) -> Path:
        return self.home / "packs"

    def _prepare(self) -> None:
        """Put the database in WAL mode and migrate it, once: two commands opening a new workspace at once take turns."""
        if self.schema_version == len(MIGRATIONS) and self._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
            return
        with (self.home / "sigma.db.migrating").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._db.execute("PRAGMA journal_mode = WAL")  # persistent: set once for every later connection
            self._migrate()

    def _migrate(self) -> None:
        current = self.schema_version
        if current > len(MIGRATIONS):
            raise SigmaError(
                f"workspace {self.home} has schema version {current}, newer than this Sigma "
                f"understands ({len(MIGRATIONS)}); upgrade Sigma to open it"
            )
        for version in range(current, len(MIGRATIONS)):
            # executescript commits on its own; the script opens the step's transaction, so that the
            # step, with the sealing that follows its SQL, applies whole or not at all.
            try:
                self._db.executescript(f"BEGIN IMMEDIATE; {MIGRATIONS[version]}")
                if version + 1 == _SEALS_MANIFESTS:
                    self._seal_manifests()
                self._db.execute(f"PRAGMA user_version = {version + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def _seal_manifests(self) -> None:
        """Seal the manifests of models trained before manifests were sealed, as they are found, and audit it."""
        rows = self._db.execute("SELECT id, manifest FROM trained_models ORDER BY id").fetchall()
        for trained_id, manifest in rows:
            self._db.execute("UPDATE trained_models SET manifest_sha = ? WHERE id = ?", (self.put_artifact(_blob(manifest)), trained_id))
        if rows:
            self.audit("sigma", "workspace.seal_manifests", "trained_models", {"sealed": [trained_id for trained_id, _ in rows]})

    def _now(self) -> str:
        return self._clock().isoformat()

    def audit(self, actor: str, action: str, subject: str, details: dict[str, object] | None = None) -> None:
        """Append one entry to the audit log."""
        self._db.execute(
            "INSERT INTO audit_log (at, actor, action, subject, details) VALUES (?, ?, ?, ?, ?)",
            (self._now(), actor, action, subject, _encode(details or {})),
        )

    def audit_log(self, subject: str | None = None) -> list[AuditEntry]:
        query = "SELECT seq, at, actor, action, subject, details FROM audit_log"
        rows = self._db.execute(query + (" WHERE subject = ?" if subject else "") + " ORDER BY seq", (subject,) if subject else ())
        return [AuditEntry(seq, at, actor, action, subj, _decode_details(details)) for seq, at, actor, action, subj, details in rows]

    def add_model(self, spec: ModelSpec, *, actor: str, owner: str = LOCAL) -> None:
        """Store a new model of ``owner`` and audit its creation; refuse a name already taken."""
        lineage = msgspec.to_builtins(spec.lineage)
        try:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO models (name, pack, strategy, model_config_sha, spec, created_at, owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (spec.name, f"{spec.pack}@{spec.pack_version}", spec.strategy, spec.model_config_sha, _encode(spec), self._now(),
                     owner),
                )  # fmt: skip
                self.audit(actor, "model.create", spec.name, {"lineage": lineage})
        except sqlite3.IntegrityError:
            raise ConfigError("name", f"a model named {spec.name!r} already exists", "choose another name") from None

    def model(self, name: str) -> ModelSpec:
        row = self._db.execute("SELECT spec FROM models WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no model named {name!r}; `sigma models list` shows the models")
        return _decode_model(row[0])

    def models(self, owner: str | None = None) -> list[ModelSpec]:
        """Every model, or ``owner``'s only."""
        where, args = ("WHERE owner = ?", (owner,)) if owner is not None else ("", ())
        return [_decode_model(spec) for (spec,) in self._db.execute(f"SELECT spec FROM models {where} ORDER BY name", args)]

    def delete_model(self, name: str, *, actor: str) -> None:
        """Delete a model that no sweep was run on (its sweeps and trained models keep its lineage), and audit it."""
        self.model(name)
        with self._transaction():
            self._refuse_swept(name)
            self._db.execute("DELETE FROM models WHERE name = ?", (name,))
            self.audit(actor, "model.delete", name)

    def replace_model(self, spec: ModelSpec, *, actor: str) -> None:
        """Replace a model, of the same name, that no sweep was run on, and audit both lineages."""
        before = self.model(spec.name)
        with self._transaction():
            self._refuse_swept(spec.name)
            self._db.execute("UPDATE models SET pack = ?, strategy = ?, model_config_sha = ?, spec = ? WHERE name = ?",
                             (f"{spec.pack}@{spec.pack_version}", spec.strategy, spec.model_config_sha, _encode(spec), spec.name))  # fmt: skip
            self.audit(actor, "model.update", spec.name, {"before": msgspec.to_builtins(before.lineage), "lineage": msgspec.to_builtins(spec.lineage)})

    def _refuse_swept(self, model: str) -> None:
        if self._db.execute("SELECT 1 FROM sweeps WHERE model = ? LIMIT 1", (model,)).fetchone():
            raise ConfigError("model", f"{model} has sweeps, whose leaderboards and trained models were made from it as it is",
                              "keep it; create a new model for another configuration")  # fmt: skip

    def owner(self, model: str) -> str:
        """Who owns ``model``; `NotFoundError` when there is no such model."""
        row = self._db.execute("SELECT owner FROM models WHERE name = ?", (model,)).fetchone()
        if row is None:
            raise NotFoundError(f"no model named {model!r}; `sigma models list` shows the models")
        return row[0]

    # -- users of the server -----------------------------------------------------------

    def add_user(self, name: str, tier: str, *, actor: str) -> None:
        """Add a user of ``tier``; refuse a name taken (or `LOCAL`'s)."""
        if not _USER.match(name) or name == LOCAL:  # a user's models are named <user>_<name>
            raise ConfigError("name", f"{name!r} cannot name a user" + (": it is the command line's own" if name == LOCAL else ""),
                              "use 1 to 16 lower-case letters and digits, starting with a letter (not 'local')")  # fmt: skip
        try:
            with self._transaction():
                self._db.execute("INSERT INTO users (name, tier, created_at) VALUES (?, ?, ?)", (name, tier, self._now()))
                self.audit(actor, "user.add", name, {"tier": tier})
        except sqlite3.IntegrityError:
            raise ConfigError("name", f"a user named {name!r} already exists", "choose another name") from None

    def users(self) -> list[UserRecord]:
        rows = self._db.execute(
            "SELECT name, tier, created_at, (SELECT count(*) FROM tokens WHERE user = name AND revoked_at IS NULL) FROM users ORDER BY name"
        )
        return [UserRecord(*row) for row in rows]

    def user(self, name: str) -> UserRecord:
        for record in self.users():
            if record.name == name:
                return record
        raise NotFoundError(f"no user named {name!r}; `sigma users list` shows the users")

    def issue_token(self, user: str, *, actor: str) -> str:
        """A new API token for ``user``, returned this once: only its SHA-256 is kept."""
        self.user(user)
        token = "sig_" + secrets.token_urlsafe(32)
        with self._transaction():
            self._db.execute("INSERT INTO tokens (sha256, user, created_at) VALUES (?, ?, ?)", (_token_sha(token), user, self._now()))
            self.audit(actor, "user.token", user)
        return token

    def revoke_tokens(self, user: str, *, actor: str) -> int:
        """Revoke every token of ``user``; how many were live."""
        self.user(user)
        with self._transaction():
            revoked = self._db.execute("UPDATE tokens SET revoked_at = ? WHERE user = ? AND revoked_at IS NULL", (self._now(), user)).rowcount
            self.audit(actor, "user.revoke", user, {"tokens": revoked})
        return revoked

    # -- private packs of the server's users --------------------------------------------

    def pack_owners(self) -> dict[str, str]:
        """The namespaces of the server users' private packs, and whose each is."""
        return dict(self._db.execute("SELECT namespace, owner FROM packs"))

    def save_pack(self, pack: Pack, text: bytes, *, owner: str, actor: str) -> None:
        """Keep ``pack`` (decoded and linted from ``text``) as ``owner``'s, in the workspace's packs folder, and audit it: a
        new namespace, a new version of theirs, or a version no model was made from replaced.

        The file is put in place only once the record is committed, so that no pack is ever on disk without an owner (which
        would take its namespace from everyone); a kill in between leaves the owner's record, and saving again completes it.
        """
        folder = self.packs_folder / f"{pack.namespace}@{pack.version}"
        replaced = (folder / "pack.yaml").exists()
        folder.mkdir(mode=0o700, exist_ok=True)
        partial = folder / "pack.yaml.partial"  # the catalog reads */pack.yaml: a pack is there whole or not at all
        partial.write_bytes(text)
        try:
            with self._transaction():
                found = self._db.execute("SELECT owner FROM packs WHERE namespace = ?", (pack.namespace,)).fetchone()
                if found is not None and found[0] != owner:  # a namespace begins with its owner's name: never another user's
                    raise ConfigError("namespace", f"{pack.namespace!r} is taken", "choose another namespace")
                users = self._models_of_pack(pack.namespace, pack.version)
                if users:
                    raise ConfigError("version", f"{pack.ref} is what {', '.join(users)} were made from",
                                      f"give the changed pack a new version (above {pack.version})")  # fmt: skip
                if found is None:
                    self._db.execute("INSERT INTO packs (namespace, owner, created_at) VALUES (?, ?, ?)", (pack.namespace, owner, self._now()))
                self.audit(actor, "pack.update" if found or replaced else "pack.create", pack.ref, {"sha": pack.sha})
        except BaseException:
            partial.unlink(missing_ok=True)
            if not replaced:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        partial.replace(folder / "pack.yaml")

    def delete_pack(self, namespace: str, version: str | None, *, actor: str) -> list[str]:
        """Delete a private pack's ``version`` (every version when None) that no model was made from; the versions deleted.

        Its folders are moved aside while the record changes and put back if it does not commit, then removed: a failure
        never leaves an owned pack without its file, nor a file without its owner."""
        folders = [folder for folder in sorted(self.packs_folder.glob(f"{namespace}@*"))
                   if version is None or folder.name == f"{namespace}@{version}"]  # fmt: skip
        if not folders:
            raise NotFoundError(f"no version {version} of pack {namespace!r}" if version else f"no pack named {namespace!r}")
        aside = self.home / "trash" / secrets.token_hex(8)
        moved: list[tuple[Path, Path]] = []
        try:
            with self._transaction():
                for folder in folders:
                    users = self._models_of_pack(*folder.name.split("@", 1))
                    if users:
                        raise ConfigError("pack", f"{folder.name} is what {', '.join(users)} were made from",
                                          "delete those models first, or keep the pack")  # fmt: skip
                aside.mkdir(parents=True)
                for folder in folders:
                    folder.rename(aside / folder.name)
                    moved.append((folder, aside / folder.name))
                if not any(self.packs_folder.glob(f"{namespace}@*/pack.yaml")):
                    self._db.execute("DELETE FROM packs WHERE namespace = ?", (namespace,))
                self.audit(actor, "pack.delete", namespace, {"versions": [folder.name for folder in folders]})
        except BaseException:
            for folder, away in moved:
                away.rename(folder)
            raise
        finally:
            shutil.rmtree(aside, ignore_errors=True)
        return [folder.name for folder in folders]

    def _models_of_pack(self, namespace: str, version: str) -> list[str]:
        return [name for (name,) in self._db.execute("SELECT name FROM models WHERE pack = ? ORDER BY name", (f"{namespace}@{version}",))]

    # -- the alert history -------------------------------------------------------------

    def archive_alerts(self, alerts: list[tuple[str, str, str, str, bytes]]) -> int:
        """Keep (alert id, trained model, ticker, ISO timestamp, alert JSON) rows, each id once; how many were new."""
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany("INSERT OR IGNORE INTO alerts (alert_id, model, ticker, timestamp, alert) VALUES (?, ?, ?, ?, ?)", alerts)
            return self._db.total_changes - before

    def alerts(self, models: set[str], *, ticker: str | None = None, since: str = "", limit: int = 100, user: str = "") -> list[tuple[bytes, str | None]]:
        """The newest ``limit`` alerts of ``models`` (of ``ticker``, at or after ``since``), newest first, each with when ``user``
        acknowledged it."""
        if not models:
            return []
        marks = ", ".join("?" * len(models))
        query = (f"SELECT a.alert, k.at FROM alerts a LEFT JOIN alert_acks k ON k.alert_id = a.alert_id AND k.user = ? "
                 f"WHERE a.model IN ({marks}) AND a.timestamp >= ?" + (" AND a.ticker = ?" if ticker else "")
                 + " ORDER BY a.timestamp DESC, a.alert_id DESC LIMIT ?")  # fmt: skip
        return list(self._db.execute(query, (user, *sorted(models), since, *([ticker] if ticker else []), limit)))

    def model_alerts(self, model: str) -> list[bytes]:
        """Every kept alert of the trained ``model``, oldest first."""
        return [alert for (alert,) in self._db.execute("SELECT alert FROM alerts WHERE model = ? ORDER BY timestamp, alert_id", (model,))]

    def alert(self, alert_id: str) -> tuple[str, bytes]:
        """(trained model, alert JSON) of one kept alert; `NotFoundError` when it is not in the history."""
        row = self._db.execute("SELECT model, alert FROM alerts WHERE alert_id = ?", (alert_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no alert {alert_id!r} in the history")
        return row

    def acknowledge(self, alert_id: str, user: str) -> str:
        """Mark an alert acknowledged by ``user`` (once: the first time stands), kept yet or not (the live stream may show
        it a moment before the archive keeps it); when."""
        with self._transaction():
            self._db.execute("INSERT OR IGNORE INTO alert_acks (alert_id, user, at) VALUES (?, ?, ?)", (alert_id, user, self._now()))
        return self._db.execute("SELECT at FROM alert_acks WHERE alert_id = ? AND user = ?", (alert_id, user)).fetchone()[0]

    def token_user(self, token: str) -> UserRecord | None:
        """The user a live ``token`` belongs to; None for an unknown or revoked one."""
        row = self._db.execute(
            "SELECT u.name, u.tier, u.created_at, (SELECT count(*) FROM tokens o WHERE o.user = u.name AND o.revoked_at IS NULL) "
            "FROM tokens t JOIN users u ON u.name = t.user WHERE t.sha256 = ? AND t.revoked_at IS NULL", (_token_sha(token),)
        ).fetchone()  # fmt: skip
        return None if row is None else UserRecord(*row)

    def trained_ids(self, owner: str) -> set[str]:
        """The trained models of ``owner``'s models."""
        rows = self._db.execute("SELECT t.id FROM trained_models t JOIN models m ON m.name = t.model WHERE m.owner = ?", (owner,))
        return {trained_id for (trained_id,) in rows}

    def model_names(self) -> set[str]:
        return {name for (name,) in self._db.execute("SELECT name FROM models")}

    @property
    def sweeps_folder(self) -> Path:
        return self.home / "sweeps"

    def add_sweep(self, sweep_id: str, model: str, request: SweepRequest, tags: object, lineage: object, total: int, *, actor: str) -> None:
        """Record a new sweep, queued until a process runs it (`research.sweep.resume` marks it running), and audit it."""
        with self._transaction():
            self._db.execute(
                "INSERT INTO sweeps (id, model, status, config, tags, lineage, created_at, total) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (sweep_id, model, _encode(request), _encode(tags), _encode(lineage), self._now(), total),
            )
            self.audit(actor, "sweep.start", sweep_id, {"model": model, "combinations": total, "lineage": lineage})

    def update_sweep(self, sweep_id: str, **fields: object) -> None:
        """Set some of a sweep's columns (status, done, total, pid, summary, finished_at, cancel_requested)."""
        allowed = {"status", "done", "total", "pid", "summary", "cancel_requested"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"cannot update sweep columns {sorted(unknown)}")
        values = {key: _encode(value) if key == "summary" else value for key, value in fields.items()}
        if fields.get("status") in ("finished", "cancelled", "failed"):
            values["finished_at"] = self._now()
        assignments = ", ".join(f"{key} = ?" for key in values)
        self._db.execute(f"UPDATE sweeps SET {assignments} WHERE id = ?", (*values.values(), sweep_id))

    def claim_sweep(self, seen: SweepRecord) -> bool:
        """Mark a sweep running in this process if nobody changed its status or process since ``seen`` was read; False when
        another process claimed it first (two workers handed the same sweep run it once)."""
        cursor = self._db.execute("UPDATE sweeps SET status = 'running', pid = ?, cancel_requested = 0 WHERE id = ? AND status = ? AND pid IS ?",
                                  (os.getpid(), seen.id, seen.status, seen.pid))  # fmt: skip
        return cursor.rowcount == 1

    def sweep(self, sweep_id: str) -> SweepRecord:
        row = self._db.execute(f"SELECT {_SWEEP_COLUMNS} FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no sweep {sweep_id!r}; `sigma sweep list` shows the sweeps")
        return _sweep_record(row)

    def sweep_request(self, sweep_id: str) -> SweepRequest:
        """The request a sweep was started with."""
        row = self._db.execute("SELECT config FROM sweeps WHERE id = ?", (sweep_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no sweep {sweep_id!r}; `sigma sweep list` shows the sweeps")
        return _decode_request(row[0])

    def sweeps(self, model: str | None = None) -> list[SweepRecord]:
        query = f"SELECT {_SWEEP_COLUMNS} FROM sweeps" + (" WHERE model = ?" if model else "") + " ORDER BY created_at, id"
        return [_sweep_record(row) for row in self._db.execute(query, (model,) if model else ())]

    def add_trained(self, trained_id: str, model: str, sweep: str, rank: int, artifact_sha: str, manifest: object, *, actor: str) -> None:
        """Record and seal a trained model whose ONNX artifact is stored, and audit it with its lineage."""
        manifest_json = _encode(manifest)
        lineage = msgspec.json.decode(manifest_json).get("lineage")
        named = _artifact_named(lineage)
        if named != artifact_sha:
            raise IntegrityError(f"the manifest of {trained_id} names ONNX artifact {named}, not {artifact_sha}: "
                                 "record it with the artifact it was exported with")
        manifest_sha = self.put_artifact(manifest_json)
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO trained_models (id, model, sweep, rank, artifact_sha, manifest_sha, manifest, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (trained_id, model, sweep, rank, artifact_sha, manifest_sha, manifest_json, self._now()),
            )
            self.audit(actor, "model.train", trained_id,
                       {"sweep": sweep, "rank": rank, "manifest_sha": manifest_sha, "lineage": lineage})

    def load_trained(self, trained_id: str) -> tuple[TrainedRecord, bytes]:
        """A trained model's record and ONNX bytes, refused unless both are as they were sealed at training.

        Checked on every load: the row's manifest hashes to the SHA-256 sealed at training, the
        row's artifact is the one that manifest names, and the ONNX bytes hash to it.
        """
        row = self._db.execute(f"SELECT {_TRAINED_COLUMNS} WHERE t.id = ?", (trained_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no trained model {trained_id!r}; `sigma models trained` lists them")
        record = _trained_record(row)
        refused = f"trained model {trained_id} is refused"
        fix = f"train it again (`sigma train {record.sweep} --rows {record.rank}`) or discard it"
        if hashlib.sha256(_blob(row[_MANIFEST])).hexdigest() != record.manifest_sha:
            raise IntegrityError(f"{refused}: its manifest in {self.home / 'sigma.db'} was changed after training "
                                 f"({self._manifest_changes(record)}); {fix}")
        named = _artifact_named(record.manifest.get("lineage"))
        if record.artifact_sha is None or record.artifact_sha != named:
            raise IntegrityError(f"{refused}: its row names ONNX artifact {record.artifact_sha}, but its manifest was "
                                 f"trained with {named}; {fix}")
        path = self._artifact_path(record.artifact_sha)
        model = path.read_bytes() if path.exists() else None
        actual = hashlib.sha256(model).hexdigest() if model is not None else None
        if model is None or actual != record.artifact_sha:
            what = "are missing" if model is None else f"were changed on disk: they hash to {actual}"
            raise IntegrityError(f"{refused}: its ONNX bytes (artifact {record.artifact_sha}) {what}; {fix}")
        return record, model

    def _manifest_changes(self, record: TrainedRecord) -> str:
        """What differs between a row's manifest and the one sealed at training, as far as the sealed copy tells."""
        if record.manifest_sha is None:
            return "no manifest SHA-256 is recorded for it"
        try:
            sealed = msgspec.json.decode(self.read_artifact(record.manifest_sha))
        except (ConfigError, NotFoundError, IntegrityError):
            return f"the manifest sealed as artifact {record.manifest_sha} is gone or changed too"
        changes = _differences(sealed, record.manifest)
        if not changes:
            return "re-encoded, with no field changed"
        shown = "; ".join(changes[:_SHOWN_CHANGES])
        return shown + (f"; and {len(changes) - _SHOWN_CHANGES} more" if len(changes) > _SHOWN_CHANGES else "")

    def trained(self, trained_id: str) -> TrainedRecord:
        row = self._db.execute(f"SELECT {_TRAINED_COLUMNS} WHERE t.id = ?", (trained_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no trained model {trained_id!r}; `sigma models trained` lists them")
        return _trained_record(row)

    def trained_models(self, *, published: bool | None = None) -> list[TrainedRecord]:
        where = {None: "", True: " WHERE p.published_at IS NOT NULL", False: " WHERE p.published_at IS NULL"}[published]
        return [_trained_record(row) for row in self._db.execute(f"SELECT {_TRAINED_COLUMNS}{where} ORDER BY t.created_at, t.id")]

    def publish(self, trained_id: str, *, actor: str, forced: bool = False, paper: str = "", reason: str | None = None) -> int:
        """Switch a trained model on for alerting; returns the new registry version the live flow polls.

        ``sigma publish`` refuses a model whose `TrainedRecord.refusal` is set, or whose
        paper record does not pass (``paper``, from `replay.gate`); ``forced`` says the
        publisher overrode it (``--force``), and the audit entry keeps what was overridden
        and the publisher's ``reason``.
        """
        with self._transaction():  # the check and the change under one write lock: two publishers cannot both pass it
            record = self.trained(trained_id)
            if record.published_at is not None:
                raise ConfigError("publish", f"{trained_id} is already published (since {record.published_at})")
            details: dict[str, object] = {"lineage": record.manifest.get("lineage")}
            if forced:
                details |= {"forced": True, "not_publishable": record.refusal, "paper": paper, "reason": reason}
            self._db.execute("INSERT INTO publications (trained_model, published_at, published_by) VALUES (?, ?, ?)",
                             (trained_id, self._now(), actor))
            version = self._bump_registry()
            self.audit(actor, "model.publish", trained_id, {"registry_version": version, **details})
        return version

    def unpublish(self, trained_id: str, *, actor: str) -> int:
        """Switch a published model off; returns the new registry version."""
        with self._transaction():
            record = self.trained(trained_id)
            if record.published_at is None:
                raise ConfigError("unpublish", f"{trained_id} is not published", f"`sigma publish {trained_id}` publishes it")
            self._db.execute("DELETE FROM publications WHERE trained_model = ?", (trained_id,))
            version = self._bump_registry()
            self.audit(actor, "model.unpublish", trained_id, {"registry_version": version, "lineage": record.manifest.get("lineage")})
        return version

    def kill(self, trained_id: str, on: bool, *, actor: str) -> int:
        """Turn a published model's kill switch on (no new entries; exits still alert) or off; returns the registry version."""
        with self._transaction():
            record = self.trained(trained_id)
            if record.published_at is None:
                raise ConfigError("kill", f"{trained_id} is not published", "only a published model alerts")
            self._db.execute("UPDATE publications SET killed_at = ? WHERE trained_model = ?", (self._now() if on else None, trained_id))
            version = self._bump_registry()
            self.audit(actor, "model.kill" if on else "model.revive", trained_id, {"registry_version": version})
        return version

    def discard(self, trained_id: str, *, actor: str) -> int:
        """Delete an unpublished trained model and its artifact; returns the bytes freed."""
        record = self.trained(trained_id)
        if record.published_at is not None:
            raise ConfigError("discard", f"{trained_id} is published", f"unpublish it first: `sigma unpublish {trained_id}`")
        freed = 0
        with self._transaction():
            self._db.execute("DELETE FROM trained_models WHERE id = ?", (trained_id,))
            unshared = [sha for sha, column in ((record.artifact_sha, "artifact_sha"), (record.manifest_sha, "manifest_sha"))
                        if sha and not self._db.execute(f"SELECT COUNT(*) FROM trained_models WHERE {column} = ?", (sha,)).fetchone()[0]]
            self.audit(actor, "model.discard", trained_id, {"artifact_sha": record.artifact_sha, "lineage": record.manifest.get("lineage")})
        for sha in unshared:
            path = self._artifact_path(sha)
            if path.exists():
                freed += path.stat().st_size
                path.unlink()
        return freed

    def registry_version(self) -> int:
        """A number that changes whenever the published set does: the live flow polls it to pick changes up."""
        return self._db.execute("SELECT version FROM registry_version").fetchone()[0]

    def _bump_registry(self) -> int:
        self._db.execute("UPDATE registry_version SET version = version + 1")
        return self.registry_version()

    def put_artifact(self, content: bytes) -> str:
        """Store ``content`` under its SHA-256 and return the hash; storing it twice is harmless."""
        sha = hashlib.sha256(content).hexdigest()
        path = self._artifact_path(sha)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(".partial")
            partial.write_bytes(content)
            partial.replace(path)  # atomic: a crash never leaves a half-written artifact
        return sha

    def read_artifact(self, sha: str) -> bytes:
        """The artifact's bytes, after checking them against their SHA-256; refuses a tampered file."""
        path = self._artifact_path(sha)
        if not path.exists():
            raise NotFoundError(f"no artifact {sha} in {self.home / 'artifacts'}")
        content = path.read_bytes()
        actual = hashlib.sha256(content).hexdigest()
        if actual != sha:
            raise IntegrityError(
                f"artifact {sha} failed its SHA-256 check (the file now hashes to {actual}); "
                "it was changed on disk: discard it and export the model again"
            )
        return content

    def _artifact_path(self, sha: str) -> Path:
        if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
            raise ConfigError("artifact", f"{sha!r} is not a SHA-256 hex digest")
        return self.home / "artifacts" / sha[:2] / sha

    def _transaction(self):
        return _Transaction(self._db)


def _token_sha(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _trained_record(row: tuple) -> TrainedRecord:
    values = list(row)
    values[_MANIFEST] = msgspec.json.decode(values[_MANIFEST])
    return TrainedRecord(*values)


def _blob(value: bytes | str) -> bytes:
    # A manifest edited with SQLite's JSON functions comes back as TEXT, not the BLOB it was stored as.
    return value.encode() if isinstance(value, str) else value


def _artifact_named(lineage: object) -> str | None:
    """The ONNX artifact's SHA-256 that a manifest's lineage names."""
    named = lineage.get("artifact_sha") if isinstance(lineage, dict) else None
    return named if isinstance(named, str) else None


def _differences(sealed: object, stored: object, where: str = "") -> list[str]:
    """Each place where ``stored`` differs from ``sealed``, as a dotted path with both values."""
    if isinstance(sealed, dict) and isinstance(stored, dict):
        changes = []
        for key in [*sealed, *(key for key in stored if key not in sealed)]:
            path = f"{where}.{key}" if where else str(key)
            if key not in stored:
                changes.append(f"{path} removed")
            elif key not in sealed:
                changes.append(f"{path} added")
            else:
                changes.extend(_differences(sealed[key], stored[key], path))
        return changes
    if isinstance(sealed, list) and isinstance(stored, list) and len(sealed) == len(stored):
        return [change for index, (a, b) in enumerate(zip(sealed, stored)) for change in _differences(a, b, f"{where}[{index}]")]
    if sealed == stored:
        return []
    return [f"{where or 'the manifest'} was {_shown(sealed)}, now {_shown(stored)}"]


def _shown(value: object) -> str:
    text = _encode(value).decode()
    return text if len(text) <= 60 else text[:57] + "..."


def _sweep_record(row: tuple) -> SweepRecord:
    decoded = [msgspec.json.decode(value) if index in (7, 8, 9, 10) and value is not None else value for index, value in enumerate(row)]
    decoded[6] = bool(decoded[6])
    return SweepRecord(*decoded)


class _Transaction:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        # IMMEDIATE: the write lock now, waited for under the busy timeout. A deferred BEGIN that reads, then writes,
        # fails at once with "database is locked" when another writer got in between.
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *exc: object) -> None:
        self._db.execute("ROLLBACK" if kind else "COMMIT")
