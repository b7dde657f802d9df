"""Fixtures for the live flow: a private redis-server, and a workspace serving a trained model.

The served workspace holds 12 synthetic sessions of one-minute bars for SPY and QQQ,
a zerosigma options model swept over both and trained on them, published; the two
sessions after them are kept out of the store as a tick file to replay.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from engine.calendar import CALENDARS
from engine.models import SweepRequest, create_model
from engine.packs import load_pack
from engine.store import store_bars
from engine.workspace import Workspace
from flows.redis_server import RedisServer
from packs import OFFICIAL
from research import sweep, training
from research.synthetic import generate
from research.training import TrainRequest, fit_configuration

US = CALENDARS["us_equities"]
REPOSITORY = Path(__file__).resolve().parent.parent.parent
TICKERS = ["SPY", "QQQ"]
STORED_SESSIONS = 12
REPLAYED_SESSIONS = 2
SMALL = {"n_estimators": [30], "max_depth": [3], "learning_rate": [0.1]}


def _clock() -> datetime:
    return datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture
def redis_server(tmp_path):
    """A fresh, empty redis-server for one test."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def secured_redis_servers(tmp_path):
    """(password-protected server, TLS server with the same password): each started fresh for one test."""
    secured = RedisServer(tmp_path / "secured", password="s3cret-pass").start()
    tls = RedisServer(tmp_path / "tls", password="s3cret-pass", tls=certificates(tmp_path / "certificates")).start()
    yield secured, tls
    secured.stop()
    tls.stop()


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A test certificate authority and a server certificate it signs for 127.0.0.1: (certificate, key, CA certificate)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    authority_key, server_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    authority_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sigma test CA")])
    authority = (x509.CertificateBuilder().subject_name(authority_name).issuer_name(authority_name)
                 .public_key(authority_key.public_key()).serial_number(x509.random_serial_number())
                 .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
                 .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                 .sign(authority_key, hashes.SHA256()))  # fmt: skip
    server = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
              .issuer_name(authority_name).public_key(server_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
              .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
                             critical=False)
              .sign(authority_key, hashes.SHA256()))  # fmt: skip
    paths = folder / "server.crt", folder / "server.key", folder / "ca.crt"
    paths[0].write_bytes(server.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(server_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))  # fmt: skip
    paths[2].write_bytes(authority.public_bytes(serialization.Encoding.PEM))
    return paths


def write_ticks(path: Path, ticker_ticks: dict[str, dict[str, np.ndarray]]) -> Path:
    """A Parquet tick file of several tickers in time order; NaN fields become nulls (absent)."""
    tables = []
    for ticker, ticks in ticker_ticks.items():
        columns = {"ticker": pa.array([ticker] * len(ticks["ts"])), "ts": pa.array(ticks["ts"], pa.int64())}
        for name in ("price", "size", "bid", "ask", "bid_size", "ask_size"):
            values = np.asarray(ticks[name], dtype=np.float64)
            columns[name] = pa.array(values, mask=np.isnan(values))
        tables.append(pa.table(columns))
    table = pa.concat_tables(tables)
    table = table.take(pa.compute.sort_indices(table, [("ts", "ascending")]))
    pq.write_table(table, path)
    return path


@pytest.fixture(scope="session")
def served(tmp_path_factory):
    """(home, replay tick file, trained id): a published zerosigma model over SPY and QQQ."""
    root = tmp_path_factory.mktemp("served")
    home = root / "home"
    market = generate(TICKERS, "1m", STORED_SESSIONS + REPLAYED_SESSIONS, US, seed=11, start=date(2024, 3, 1), ticks=True)
    replay = {}
    with Workspace(home, clock=_clock) as space:
        for ticker, (bars, ticks) in market.items():
            cut = bars.start[390 * STORED_SESSIONS]  # the synthetic sessions are regular: 390 one-minute bars
            store_bars(home, bars.select(bars.start < cut), US, source="synthetic")
            keep = ticks["ts"] >= cut
            replay[ticker] = {name: values[keep] for name, values in ticks.items()}
        pack = load_pack(OFFICIAL / "zerosigma")
        spec = create_model(pack, strategy="vwap_reversion", settings={"underlying": "SPY"})
        space.add_model(spec, actor="test")
        request = SweepRequest(model=spec.name, universe=TICKERS)
        sweep_id = sweep.start(space, pack, spec, request, actor="test", announce=lambda line: None)
        train = TrainRequest(sweep=sweep_id, rank=1, grid=SMALL)
        trained_id = training._register(space, spec, train, fit_configuration(home, pack, spec, train), "test")
        # A policy that trades often (any hour, a low threshold), so that a short replay alerts; a fixed size, since sizing
        # by confidence gives nothing to a probability under 0.5.
        eager = policy_copy(space, trained_id, "eager", threshold=0.36, hours_mask=float((1 << 24) - 1), top_pct=100.0,
                            max_positions=2.0, hold_bars=5.0, size_by_confidence=0.0)  # fmt: skip
        space.publish(eager, actor="test")
    return home, write_ticks(root / "replay.parquet", replay), eager


def policy_copy(space: Workspace, trained_id: str, suffix: str, **parameters: float) -> str:
    """A trained model registered again as ``<trained_id>-<suffix>``, the same artifact under changed policy parameters."""
    return training.with_policy(space, trained_id, suffix, actor="test", **parameters)


def state_digests(store: Path) -> dict[tuple[str, str], str]:
    """sha256 of each stateful step's latest snapshot per key (ticker, model) in a recovery store: case 36's state digests.

    The source's resume position is left out (a stream's entry ids differ between two pushes of the same ticks); the
    policy's last scored row per ticker loses its ``received_at`` (the wall clock, which two runs cannot share) and its
    dicts are taken in key order (several workers deliver a model's tickers in either order).
    """
    import hashlib
    import pickle
    import sqlite3

    import msgspec

    from engine.snapshot import decode_state, encode_state
    from flows.steps import PolicyState

    latest: dict[tuple[str, str], tuple[int, bytes | None]] = {}
    for part in sorted(Path(store).glob("part-*.sqlite3")):
        with sqlite3.connect(part) as connection:
            for step, key, epoch, change in connection.execute("SELECT step_id, state_key, snap_epoch, ser_change FROM snaps"):
                if not step.endswith(".market") and ((step, key) not in latest or epoch > latest[(step, key)][0]):
                    latest[(step, key)] = (epoch, change)  # None: the state was discarded then
    digests = {}
    for (step, key), (_, change) in latest.items():
        if change is None:
            continue
        state = pickle.loads(change)
        if step.endswith(".policy"):
            policy = decode_state(state, PolicyState)
            # Rows of several tickers reach one model in the order the workers deliver them: the dicts' content is the
            # state, not their insertion order.
            policy.signals.latest = {t: msgspec.structs.replace(row, received_at=0) for t, row in sorted(policy.signals.latest.items())}
            policy.progress = dict(sorted(policy.progress.items()))
            policy.pending = dict(sorted(policy.pending.items()))
            state = encode_state(policy)
        digests[(step, key)] = hashlib.sha256(state).hexdigest()
    return digests
