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
- ``{sigma}:deadletter`` refused messages (reason, ticker, raw payload, detail) and
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

__all__ = ["AlertSink", "DeadLetterSink", "HealthSink", "AlertFileSink", "DeadLetterFileSink", "ALERTS", "DEADLETTER", "HEALTH", "model_stream", "SinkOverflow"]

PREFIX = "{sigma}"
ALERTS = f"{PREFIX}:alerts"
DEADLETTER = f"{PREFIX}:deadletter"
DEADLETTER_COUNTS = f"{PREFIX}:deadletter:counts"
HEALTH = f"{PREFIX}:health"
HEARTBEAT = f"{PREFIX}:health:heartbeat"


def model_stream(model: str) -> str:
    """The stream of one model's alerts."""
    return f"{ALERTS}:{model}"


class SinkOverflow(RuntimeError):
    """Redis stayed unreachable until the bounded buffer filled: the flow stops rather than lose alerts."""


_ADD_ONCE = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[3]) then
    redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[4], '*', 'alert_id', ARGV[1], 'alert', ARGV[2])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'alert_id', ARGV[1], 'alert', ARGV[2])
    return 1
end
return 0
"""


class _Writer(StatelessSinkPartition):
    """Buffered, retried writes of a batch of items to Redis in one pipeline."""

    def __init__(self, url: str, buffer: int) -> None:
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.capacity = buffer
        self.pending: deque = deque()
        self.retry_at = 0.0
        self.backoff = 0.0
        self.written = 0
        """Items that reached Redis (duplicates refused by the id marker not counted)."""

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
            for item in self.pending:
                self._queue(pipe, item)
            results = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as error:
            self.backoff = min(max(self.backoff * 2, 0.05), 2.0)
            self.retry_at = time.monotonic() + self.backoff
            print(f"sigma: Redis unreachable ({error}); {len(self.pending):,} items buffered, retrying in {self.backoff:.2f} s",
                  file=sys.stderr)  # fmt: skip
            return
        self.written += self._count(results)
        self.pending.clear()
        self.backoff = 0.0

    def _count(self, results: list) -> int:
        return len(results)

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

    def _queue(self, pipe, alert: Alert) -> None:
        keys = [f"{PREFIX}:alert-ids:{alert.alert_id}", ALERTS, model_stream(alert.model_id)]
        self.script(keys=keys, args=[alert.alert_id, encode_json(alert), self.ttl, self.maxlen], client=pipe)

    def _count(self, results: list) -> int:
        return sum(results)


class _DeadLetterWriter(_Writer):
    def __init__(self, url: str, buffer: int, maxlen: int) -> None:
        super().__init__(url, buffer)
        self.maxlen = maxlen

    def _queue(self, pipe, letter: DeadLetter) -> None:
        fields = {"reason": letter.reason, "ticker": letter.ticker, "payload": letter.payload, "detail": letter.detail,
                  "received_at": letter.received_at}  # fmt: skip
        pipe.xadd(DEADLETTER, fields, maxlen=self.maxlen, approximate=True)
        pipe.hincrby(DEADLETTER_COUNTS, f"{letter.ticker}:{letter.reason}", 1)

    def _count(self, results: list) -> int:
        return len(results) // 2


class _HealthWriter(_Writer):
    def _queue(self, pipe, status: Status) -> None:
        pipe.hset(HEALTH, status.ticker, encode_json(status))

    def flush(self) -> None:
        latest = {status.ticker: status for status in self.pending}  # only each ticker's newest matters
        self.pending = deque(latest.values())
        super().flush()
        if not self.pending:
            try:
                self.client.set(HEARTBEAT, time.time_ns())
            except (redis.ConnectionError, redis.TimeoutError):
                pass  # the next batch retries; health then shows the flow as quiet, which it is to Redis


class AlertSink(DynamicSink):
    """Alerts to the combined and per-model streams, each alert id once."""

    def __init__(self, url: str, *, maxlen: int = 100_000, ttl_days: int = 7, buffer: int = 10_000) -> None:
        self.url, self.maxlen, self.ttl, self.buffer = url, maxlen, ttl_days * 86_400, buffer

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _AlertWriter:
        return _AlertWriter(self.url, self.buffer, self.maxlen, self.ttl)


class DeadLetterSink(DynamicSink):
    """Refused messages to the dead-letter stream, with a count per ticker and reason."""

    def __init__(self, url: str, *, maxlen: int = 100_000, buffer: int = 100_000) -> None:
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


class AlertFileSink(DynamicSink):
    """Alerts as JSON lines in a local file, each alert id once: where alerts go when no Redis is at hand."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LineWriter:
        return _LineWriter(self.path, unique=True)


class DeadLetterFileSink(DynamicSink):
    """Refused messages as JSON lines in a local file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _LineWriter:
        return _LineWriter(self.path, unique=False)
