"""The alert history: every alert of the alert stream kept in the workspace, once, beyond the stream's trimming.

`sigma serve` runs an `Archive` beside the API when it is given Redis: a member of
consumer group ``sigma-archive`` of ``{sigma}:alerts`` that writes each batch into the
workspace (`engine.workspace.Workspace.archive_alerts`, one row per ``alert_id``) and
acknowledges it after the write, so a server killed in between writes it again, and
the id keeps it once. The stream keeps about 100,000 alerts; the history keeps all.
"""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis

from engine.workspace import Workspace
from flows.readers import AlertReader
from flows.sinks import ALERTS

__all__ = ["Archive", "GROUP"]

GROUP = "sigma-archive"


class Archive:
    """Keeps ``url``'s alerts in the workspace ``home`` until ``stop`` is set; `run` in a thread of its own."""

    def __init__(self, home: Path, url: str, *, batch: int = 500) -> None:
        self.home, self.url, self.batch = Path(home), url, batch
        self.kept = 0

    def run(self, stop: threading.Event) -> None:
        reader = None
        while not stop.is_set():
            try:
                reader = reader or AlertReader(redis.Redis.from_url(self.url), ALERTS, GROUP, "archive", min_idle_ms=10_000)
                self.take(reader)
            except redis.ConnectionError as error:  # Redis away: the alerts wait in the stream for its return
                print(f"sigma: the alert archive waits for Redis ({error})", file=sys.stderr)
                reader = None
                stop.wait(5.0)

    def take(self, reader: AlertReader) -> int:
        """Keep one batch of the stream (waiting about a second for one); how many alerts were new."""
        batch = reader.next(self.batch) or []
        if not batch:
            return 0
        rows = [(alert.alert_id, alert.model_id, alert.ticker, alert.timestamp.astimezone(UTC).isoformat(), msgspec.json.encode(alert))
                for _, alert in batch]  # fmt: skip
        with Workspace(self.home, clock=lambda: datetime.now(UTC)) as space:
            new = space.archive_alerts(rows)
        reader.acknowledge(*(entry_id for entry_id, _ in batch))  # after the write: a kill in between writes it again, once
        self.kept += new
        return new
