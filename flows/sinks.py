"""Where alerts and refused messages go: Redis streams, written once per alert id.

Keys share the ``{sigma}`` hash tag, so one Lua script may touch several of them on
a Redis Cluster too:

- ``{sigma}:alerts`` every alert, and ``{sigma}:alerts:<model>`` each model's, trimmed
  to about ``maxlen`` entries; an entry's ``alert`` field is the alert's JSON and
  ``alert_id`` its id.
- ``{sigma}:alert-ids:<id>``: a marker set with the first write. Bytewax delivers
  at least once around a resume, so the script adds an alert only when it can set
  the marker (``SET NX``): a replay or a resumed run never writes a second copy.
- ``{sigma}:health`` each ticker's latest `Status` (JSON), and ``{sigma}:health:heartbeat``
  the wall clock of the flow's latest write: what ``sigma health`` reads.
- ``{sigma}:deadletter`` refused messages (reason, ticker, the first KiB of the raw payload
  with its size and SHA-256, detail) and
  ``{sigma}:deadletter:counts`` a count per ``ticker:reason``.

When Redis is unreachable a writer keeps its items in a bounded buffer and retries
with exponential backoff (50 ms doubling to 2 s) while the flow keeps running; when
the buffer is full it raises, stopping the flow loudly, rather than drop an alert.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from pathlib import Path

import msgspec
import redis
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from engine.schemas import Alert, encode_json
from flows.steps import DeadLetter, Status

__all__ = ["AlertSink", "DeadLetterSink", "HealthSink", "AlertFileSink", "DeadLetterFileSink", "LineFileSink", "ALERTS", "DEADLETTER", "HEALTH", "model_stream", "SinkOverflow"]

PREFIX = "{sigma}"
ALERTS = f"{PREFIX}:alerts"
DEADLETTER = f"{PREFIX}:deadletter"
DEADLETTER_COUNTS = f"{PREFIX}:deadletter:counts"
HEALTH = f"{PREFIX}:health"
HEARTBEAT = f"{PREFIX}:health:heartbeat"
MAXLEN = 100_000
"""About how many entries each alert and dead-letter stream keeps (MAXLEN ~)."""


def model_stream(model: str) -> str:
    """The stream of one model's alerts."""
    return f"{ALERTS}:{model}"


class SinkOverflow(RuntimeError):
    """Redis stayed unreachable until the bounded buffer filled: the flow stops rather than lose alerts."""


_ADD_ONCE = """
-- KEYS: the combined stream, then (id marker, model stream) per alert; ARGV: maxlen, ttl, then (id, alert JSON) per alert
local added = 0
for i = 2, #KEYS, 2 do
    local id, alert = ARGV[i + 1], ARGV[i + 2]
    if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[2]) then
        redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 'alert_id', id, 'alert', alert)
        redis.call('XADD', KEYS[i + 1], 'MAXLEN', '~', ARGV[1], '*', 'alert_id', id, 'alert', alert)
        added = added + 1
    end
end
return added
"""
_SCRIPT_ALERTS = 200  # alerts per script call: bounds how long one call holds Redis


class _Writer(StatelessSinkPartition):
    """Buffered, retried writes of a batch of items to Redis in one pipeline."""

    def __init__(self, url: str, buffer: int) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.capacity = buffer
        self.pending: deque = deque()
        self.retry_at = 0.0
        self.backoff = 0.0

    def write_batch(self, items: list) -> None:
        self.pending.extend(items)
        if self.pending and time.monotonic() >= self.retry_at:
            self.flush()
        if len(self.pending) > self.capacity:
            raise SinkOverflow(f"Redis unreachable and {len(self.pending):,} items buffered (bound {self.capacity:,}); "
                               "stopping the flow rather than dropping them. Restart it once Redis is back: "
                               "with recovery on, it resumes and writes them")  # fmt: skip

    def flush(self) -> None:
        try:
            pipe = self.client.pipeline(transaction=False)
            self._queue(pipe, list(self.pending))
            pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.backoff = min(max(self.backoff * 2, 0.05), 2.0)
            self.retry_at = time.monotonic() + self.backoff
            print(f"sigma: Redis unreachable ({error}); {len(self.pending):,} items buffered, retrying in {self.backoff:.2f} s",
                  file=sys.stderr)  # fmt: skip
            return
        self.pending.clear()
        self.backoff = 0.0


    def close(self) -> None:
        deadline = time.monotonic() + 30
        while self.pending and time.monotonic() < deadline:
            self.flush()
            if self.pending:
                time.sleep(self.backoff)
        if self.pending:
            raise SinkOverflow(f"{len(self.pending):,} items could not be written to Redis before shutdown")
        self.client.close()


class _AlertWriter(_Writer):
    def __init__(self, url: str, buffer: int, maxlen: int, ttl: int) -> None:
        super().__init__(url, buffer)
        self.script = self.client.register_script(_ADD_ONCE)
        self.maxlen, self.ttl = maxlen, ttl

    def _queue(self, pipe, alerts: list[Alert]) -> None:
        for first in range(0, len(alerts), _SCRIPT_ALERTS):
            keys, args = [ALERTS], [self.maxlen, self.ttl]
            for alert in alerts[first : first + _SCRIPT_ALERTS]:
                keys += (f"{PREFIX}:alert-ids:{alert.alert_id}", model_stream(alert.model_id))
                args += (alert.alert_id, encode_json(alert))
            self.script(keys=keys, args=args, client=pipe)


class _DeadLetterWriter(_Writer):
    def __init__(self, url: str, buffer: int, maxlen: int) -> None:
        super().__init__(url, buffer)
        self.maxlen = maxlen

    def _queue(self, pipe, letters: list[DeadLetter]) -> None:
        for letter in letters:
            fields = {"reason": letter.reason, "ticker": letter.ticker, "payload": letter.payload, "detail": letter.detail,
                      "received_at": letter.received_at, "size": letter.size, "sha256": letter.sha256}  # fmt: skip
            pipe.xadd(DEADLETTER, fields, maxlen=self.maxlen, approximate=True)
            pipe.hincrby(DEADLETTER_COUNTS, f"{letter.ticker}:{letter.reason}", 1)


class _HealthWriter(_Writer):
    def _queue(self, pipe, statuses: list[Status]) -> None:
        latest = {status.ticker: encode_json(status) for status in statuses}  # only each ticker's newest matters
        pipe.hset(HEALTH, mapping=latest)
        pipe.set(HEARTBEAT, time.time_ns())


class AlertSink(DynamicSink):
    """Alerts to the combined and per-model streams, each alert id once."""

    def __init__(self, url: str, *, maxlen: int = MAXLEN, ttl_days: int = 7, buffer: int = 10_000) -> None:
        self.url, self.maxlen, self.ttl, self.buffer = url, maxlen, ttl_days * 86_400, buffer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertWriter:
        return _AlertWriter(self.url, self.buffer, self.maxlen, self.ttl)


class DeadLetterSink(DynamicSink):
    """Refused messages to the dead-letter stream, with a count per ticker and reason."""

    def __init__(self, url: str, *, maxlen: int = MAXLEN, buffer: int = 100_000) -> None:
        self.url, self.maxlen, self.buffer = url, maxlen, buffer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _DeadLetterWriter:
        return _DeadLetterWriter(self.url, self.buffer, self.maxlen)


class HealthSink(DynamicSink):
    """Each ticker's latest status, and the flow's heartbeat."""

    def __init__(self, url: str) -> None:
        self.url = url

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _HealthWriter:
        return _HealthWriter(self.url, 100_000)


class _LineWriter(StatelessSinkPartition):
    def __init__(self, path: Path, unique: bool) -> None:
        self.path = path
        self.seen = set()
        if unique and path.exists():
            self.seen = {msgspec.json.decode(line)["alert_id"] for line in path.read_bytes().splitlines() if line.strip()}
        self.unique = unique
        self.file = path.open("ab")

    def write_batch(self, items: list) -> None:
        lines = []
        for item in items:
            if self.unique:
                if item.alert_id in self.seen:
                    continue
                self.seen.add(item.alert_id)
            lines.append(encode_json(item) + b"\n")
        self.file.write(b"".join(lines))  # one append per batch: lines of several workers never interleave
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class LineFileSink(DynamicSink):
    """Items as JSON lines in a local file (refused messages, a replay's scores), written at least once."""

    unique = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LineWriter:
        return _LineWriter(self.path, unique=self.unique)


class AlertFileSink(LineFileSink):
    """Alerts as JSON lines in a local file, each alert id once: where alerts go when no Redis is at hand."""

    unique = True


DeadLetterFileSink = LineFileSink
