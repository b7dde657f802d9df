"""A private redis-server on a free loopback port: `sigma demo` on a machine without Redis, the tests, the benchmarks.

It keeps nothing on disk (no RDB snapshots) unless asked for an append-only file,
so a restart on the same folder shows what a Redis without persistence loses.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    """A loopback TCP port nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RedisServer:
    """A redis-server of our own in ``folder``, on a free loopback port; ``appendonly`` keeps an AOF there.

    ``password`` makes it require one (the URL carries it); ``tls`` is (certificate, key, CA
    certificate) files: it then speaks TLS only, and the URL is ``rediss://`` trusting that CA.
    """

    def __init__(self, folder: Path, *, appendonly: bool = False, password: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None) -> None:  # fmt: skip
        self.folder = folder
        self.port = free_port()
        credentials = f":{password}@" if password else ""
        self.url = f"redis://{credentials}127.0.0.1:{self.port}/0"
        if tls is not None:
            self.url = f"rediss://{credentials}127.0.0.1:{self.port}/0?ssl_ca_certs={tls[2]}"
        self.appendonly, self.password, self.tls = appendonly, password, tls
        self.process: subprocess.Popen | None = None

    @staticmethod
    def installed() -> bool:
        """True when a ``redis-server`` binary is on the PATH."""
        return shutil.which("redis-server") is not None

    def start(self) -> RedisServer:
        """Start it and wait until it answers (about a second at most)."""
        binary = shutil.which("redis-server")
        if binary is None:
            raise FileNotFoundError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.folder.mkdir(parents=True, exist_ok=True)
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.folder), "--save", "",
                   "--appendonly", "yes" if self.appendonly else "no", "--daemonize", "no", "--loglevel", "warning"]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        if self.tls is not None:
            certificate, key, authority = self.tls
            command[1:3] = ["--port", "0", "--tls-port", str(self.port)]
            command += ["--tls-cert-file", str(certificate), "--tls-key-file", str(key), "--tls-ca-cert-file", str(authority),
                        "--tls-auth-clients", "no"]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url)
        for _ in range(250):
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"redis-server did not start on port {self.port}")

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def stop(self) -> None:
        """Kill it at once, as a crash would: only an append-only file keeps what was written."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)
