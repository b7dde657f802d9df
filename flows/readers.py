"""Reading the alert streams as a consumer group member: `sigma alerts tail --group` and the server's alert archive.

At least once: an alert is acknowledged after the reader's caller has acted on it, so
a reader killed in between is handed it again, and acts idempotently on ``alert_id``.
"""

from __future__ import annotations

import sys

import redis

from engine.schemas import Alert, decode_json
from flows.sinks import ALERTS

__all__ = ["AlertReader"]


class AlertReader:
    """A member of a consumer group of an alert stream: its own unacknowledged alerts first, then those idle ``min_idle_ms``
    at a member that died (XAUTOCLAIM), then new ones; an entry that will not decode is set aside after
    ``max_deliveries``, and one trimmed away while pending is acknowledged and said lost."""

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str, *, follow: bool = True, min_idle_ms: int = 60_000,
                 max_deliveries: int = 3) -> None:  # fmt: skip
        self.client, self.stream, self.group, self.consumer = client, stream, group, consumer
        self.follow, self.min_idle, self.max_deliveries = follow, min_idle_ms, max_deliveries
        self.phase = "own"  # own pending entries, then claimed ones, then new ones
        self.cursor = "0-0"  # where XAUTOCLAIM goes on
        self._create()

    def _create(self) -> None:
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    def next(self, count: int) -> list[tuple[bytes, Alert]] | None:
        try:
            entries = self._entries(count)
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            print(f"sigma: group {self.group} is gone (Redis restarted?); recreated it: alerts may have been lost", file=sys.stderr)
            self._create()
            return []
        if entries is None:
            return None
        alerts, trimmed = [], []
        for entry_id, fields in entries:
            if not fields:  # trimmed away (MAXLEN) while pending: Redis answers the id with no fields (or nil)
                trimmed.append(entry_id)
                continue
            try:
                alerts.append((entry_id, decode_json(fields[b"alert"], Alert)))
            except (KeyError, ValueError) as error:
                self._poison(entry_id, fields, error)
        if trimmed:  # gone for good: acknowledged so that they stop coming back, and said, so that the loss is known
            self.client.xack(self.stream, self.group, *trimmed)
            print(f"sigma: {len(trimmed)} alert(s) pending in group {self.group} were trimmed from {self.stream} before they were "
                  f"read: lost ({trimmed[0].decode()} .. {trimmed[-1].decode()})", file=sys.stderr)  # fmt: skip
        return alerts

    def acknowledge(self, *entry_ids: bytes) -> None:
        self.client.xack(self.stream, self.group, *entry_ids)

    def _entries(self, count: int) -> list | None:
        if self.phase == "own":
            reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: "0"}, count=count)
            entries = reply[0][1] if reply else []
            if entries:
                return entries
            self.phase = "claim"
        while self.phase == "claim":
            self.cursor, entries, *deleted = self.client.xautoclaim(self.stream, self.group, self.consumer, self.min_idle,
                                                                    self.cursor, count=count)  # fmt: skip
            if self.cursor in (b"0-0", "0-0"):
                self.phase = "new"
            claimed = entries + [(entry_id, None) for entry_id in (deleted[0] if deleted else [])]  # deleted: trimmed while pending
            if claimed:
                return claimed
        reply = self.client.xreadgroup(self.group, self.consumer, {self.stream: ">"}, count=count, block=1000 if self.follow else None)
        if not reply or not reply[0][1]:
            return [] if self.follow else None
        return reply[0][1]

    def _poison(self, entry_id: bytes, fields: dict, error: Exception) -> None:
        pending = self.client.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        deliveries = pending[0]["times_delivered"] if pending else self.max_deliveries
        if deliveries < self.max_deliveries:
            return  # left pending: it is delivered again when claimed
        self.client.xadd(f"{ALERTS}:poison", {**fields, b"error": str(error), b"source_id": entry_id})
        self.client.xack(self.stream, self.group, entry_id)
        print(f"sigma: entry {entry_id.decode()} undecodable after {deliveries} deliveries; moved to {ALERTS}:poison",
              file=sys.stderr)  # fmt: skip
