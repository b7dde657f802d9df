"""Where market data comes in: a Redis stream, Parquet/CSV/JSON-lines files, or stdin.

Every source yields the same items, ``(kind, payload, received_at)``:

- ``("tick", Tick, ns)`` and ``("bar", Bar, ns)``, decoded with msgspec;
- ``("dead", DeadLetter, ns)`` for a message that does not decode (the flow never raises on one);
- ``("clock", event_time, ns)``: the source's event-time watermark, so that a bar of
  a ticker that has gone quiet still closes. With ``clock="data"`` (replays, and
  streams of recorded data) it is the latest event time the source has seen; with
  ``clock="wall"`` (live feeds) it is the wall clock. On either clock, a tick stamped
  more than ``max_ahead`` past the source's time (the data clock: the latest event
  time it has seen) is dead-lettered as ``future``, and the clock does not move: one
  tick stamped 2096 would otherwise make every later tick late.
  Bars end on whole minutes, so the clock speaks once a minute, ``lateness`` after
  the minute: every ticker hears it, and a clock that spoke more often would cost
  each of them a visit for nothing.

  The clock runs ``idle`` behind the source's time. A ticker that trades closes its
  bar with its own first tick past the end plus the lateness; the clock closes only
  the bars of tickers that stayed silent ``idle`` longer. A clock level with the
  source would close every ticker's bar the moment the first ticker crossed the
  minute: one burst of every bar close, in which each ticker's alert waits for all
  the others' features.

``received_at`` is the wall clock when the message arrived: alerts carry it, and the
latency benchmark measures from it.

Resumable sources (Redis streams, files) snapshot their position (the stream id, or
the row, after the last item emitted) with their clock's state; Bytewax hands both
back on resume, so a resumed source emits the items the uninterrupted one would have,
clock items included, at the same places. The Redis
source reads through a consumer group, so each engine deployment keeps its own
place in a shared feed; a stream entry carries a ``tick`` or ``bar`` field (JSON),
and an ``eof`` field ends a replayed stream.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import redis
from bytewax.inputs import (
    DynamicSource,
    FixedPartitionedSource,
    StatefulSourcePartition,
    StatelessSourcePartition,
)

from engine.calendar import NS_PER_MINUTE
from engine.errors import ConfigError, DecodeError
from engine.schemas import Bar, Tick, decode_json
from flows.steps import dead_letter

__all__ = ["Reader", "ClockState", "Resume", "RedisStreamSource", "FileSource", "StdinSource", "Kind", "ClockMode"]

Kind = Literal["ticks", "bars"]
ClockMode = Literal["data", "wall"]
_TYPES = {"tick": Tick, "bar": Bar}
_FIELDS = {name.encode(): name for name in _TYPES}  # a stream entry's field -> the kind of its payload
_SECOND = 1_000_000_000
MAX_AHEAD = {"wall": 5 * _SECOND, "data": 10 * 86_400 * _SECOND}
"""How far past the source's time a tick may be stamped, by clock: a feed's clock skew (wall), and on the data clock
longer than any market closure since 1933 (the longest, after 11 September 2001, kept the NYSE shut for 6 days)."""


class Reader:
    """Decodes raw messages into flow items and keeps one source partition's clock."""

    def __init__(self, clock: ClockMode = "data", *, lateness: int = _SECOND, idle: int = 0, max_ahead: int | None = None) -> None:
        self.mode = clock
        self.lateness = lateness
        self.idle = idle
        self.max_ahead = MAX_AHEAD[clock] if max_ahead is None else max_ahead
        self.latest = -1
        self._next_clock = 0

    def decode(self, kind: str, payload: bytes, received: int) -> tuple:
        try:
            item = decode_json(payload, _TYPES[kind])
        except DecodeError as error:
            return "dead", dead_letter("malformed", _ticker_of(payload), payload, str(error), received), received
        return self.accept(kind, item, received, payload)

    def accept(self, kind: str, item: Tick | Bar, received: int, payload: bytes | None = None) -> tuple:
        ts = item.ts if kind == "tick" else item.end - 1
        # The data clock holds a tick against the stream's own time only: a replay may be of data stamped after
        # today (synthetic markets), and its first tick has nothing before it to be held against.
        reference, against = (received, "the wall clock") if self.mode == "wall" else (self.latest, "the stream's event time")
        if reference >= 0 and ts > reference + self.max_ahead:
            raw = payload if payload is not None else msgspec.json.encode(item)
            detail = f"stamped {_duration(ts - reference)} ahead of {against}, more than the {_duration(self.max_ahead)} allowed"
            return "dead", dead_letter("future", item.ticker, raw, detail, received), received
        if ts > self.latest:
            self.latest = ts
        return kind, item, received

    def clock(self, received: int) -> tuple | None:
        """A clock item when the watermark (``idle`` behind the source) has passed a minute's end plus the lateness since the last one."""
        now = (received if self.mode == "wall" else self.latest) - self.idle
        if now < self._next_clock or now < 0:
            return None
        minute = now - self.lateness
        self._next_clock = minute - minute % NS_PER_MINUTE + NS_PER_MINUTE + self.lateness
        return "clock", now, received

    def snapshot(self) -> ClockState:
        """The clock's state, kept in its partition's resume state.

        A clock started afresh on resume speaks at once, at the source's time after the
        resume position, where the uninterrupted clock may have been silent; that can
        close the bar of a ticker which has not yet heard a clock, and make late a
        tick the uninterrupted run accepts.
        """
        return ClockState(self.latest, self._next_clock)

    def restore(self, state: ClockState) -> None:
        """Take up the clock's state from a snapshot."""
        self.latest, self._next_clock = state.latest, state.next_clock


class ClockState(msgspec.Struct, frozen=True):
    """A source clock's state: the latest event time seen, and the time at which it speaks next."""

    latest: int
    next_clock: int


class Resume(msgspec.Struct, frozen=True):
    """A resumable partition's snapshot: where it goes on, and its clock."""

    position: str | int | None
    """A Redis stream's id of the last entry emitted (None before the first), or a file's count of rows emitted."""
    clock: ClockState


def _duration(nanoseconds: int) -> str:
    seconds = nanoseconds / _SECOND
    return f"{seconds / 86_400:,.1f} days" if seconds >= 86_400 else f"{seconds:,.1f} s"


def _ticker_of(payload: bytes) -> str:
    try:
        value = msgspec.json.decode(payload)
        return str(value.get("ticker", "")) if isinstance(value, dict) else ""
    except msgspec.DecodeError:
        return ""


# -- Redis stream ------------------------------------------------------------------


class _StreamPartition(StatefulSourcePartition):
    def __init__(self, url: str, key: str, group: str, consumer: str, start: str, resume: Resume | None, batch: int,
                 reader: Reader, poll: float, recovery: bool) -> None:  # fmt: skip
        self.client = redis.Redis.from_url(url)
        # Entries as Redis sends them (id, [field, value, ...]): building a dict per tick costs more than decoding it.
        # No acknowledgements either (NOACK): a resume rewinds the group to the snapshot's position, not to a pending list.
        self.client.set_response_callback("XREADGROUP", lambda response, **options: response)
        self.key, self.group, self.consumer, self.start = key, group, consumer, start
        self.batch, self.reader, self.poll, self.recovery = batch, reader, poll, recovery
        self.position = None
        if resume is not None:
            self.position = resume.position
            reader.restore(resume.clock)
        self.done = False
        self.awake: datetime | None = None
        self.backoff = 0.0
        self._join(self.position)

    def _join(self, resume: str | None) -> None:
        try:
            self.client.xgroup_create(self.key, self.group, id=self.start, mkstream=True)
        except redis.ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise
        else:
            if self.start == "$":  # remember where "new data" began, for a restart that has no snapshot to go back to
                begun = next(g["last-delivered-id"] for g in self.client.xinfo_groups(self.key) if g["name"].decode() == self.group)
                self.client.hset(_origins(self.key), self.group, begun)
        if resume is not None:  # a resumed run re-reads everything after the snapshot's position
            self.client.xgroup_setid(self.key, self.group, id=resume)
        elif self.recovery:
            # Killed before its first snapshot committed: the group has moved past what the dead run read, but none
            # of that reached a snapshot, so this run starts over where the group began.
            origin = self.client.hget(_origins(self.key), self.group) if self.start == "$" else self.start
            if origin is not None:
                self.client.xgroup_setid(self.key, self.group, id=origin)

    def next_batch(self) -> list:
        if self.done:
            raise StopIteration
        try:
            reply = self.client.xreadgroup(self.group, self.consumer, {self.key: ">"}, count=self.batch, noack=True)
        except redis.ConnectionError as error:
            self._wait(f"market-data Redis unreachable ({error})")
            return []
        except redis.ResponseError as error:
            if "NOGROUP" not in str(error):
                raise
            # Redis restarted without persistence: stream and group are gone; rejoin and go on with what comes. What was
            # written after the last entry read and before the restart is gone with it: the gap is said, from where.
            after = f"after entry {self.position}" if self.position else "before its first entry was read"
            print(f"sigma: {self.key}: consumer group {self.group} vanished {after} (Redis restarted without persistence?); "
                  f"recreated, reading the stream anew: entries written between then and the restart are lost to this flow",
                  file=sys.stderr, flush=True)  # fmt: skip
            self._join(None)
            return []
        self.backoff = 0.0
        received = time.time_ns()
        items: list = []
        if reply:
            entries = reply[self.key.encode()] if isinstance(reply, dict) else reply[0][1]  # RESP3 or RESP2
            decode = self.reader.decode
            last = None
            for entry_id, fields in entries:
                kind = _FIELDS.get(fields[0]) if len(fields) == 2 else None
                if kind is not None:
                    items.append(decode(kind, fields[1], received))
                else:
                    named = dict(zip(fields[::2], fields[1::2]))
                    if b"eof" in named:
                        self.done = True
                        break
                    found = [(kind, named[field]) for field, kind in _FIELDS.items() if field in named]
                    if found:
                        items.append(decode(*found[0], received))
                    else:
                        entry = msgspec.json.encode({k.decode(errors="replace"): v.decode(errors="replace") for k, v in named.items()})
                        items.append(("dead", dead_letter("malformed", "", entry, "a stream entry needs a `tick` or `bar` field", received),
                                      received))  # fmt: skip
                last = entry_id
            if last is not None:
                self.position = last.decode()
        self.awake = None if reply else datetime.now(UTC) + timedelta(seconds=self.poll)
        clock = self.reader.clock(received)
        if clock is not None:
            items.append(clock)
        return items

    def _wait(self, why: str) -> None:
        self.backoff = min(max(self.backoff * 2, 0.05), 2.0)
        print(f"sigma: {why}; retrying in {self.backoff:.2f} s", file=sys.stderr)
        self.awake = datetime.now(UTC) + timedelta(seconds=self.backoff)

    def next_awake(self) -> datetime | None:
        return self.awake

    def snapshot(self) -> Resume:
        return Resume(self.position, self.reader.snapshot())

    def close(self) -> None:
        self.client.close()


def _origins(key: str) -> str:
    """The hash of where each consumer group of stream ``key`` that started at ``$`` began."""
    return f"{key}:sigma-origins"


class RedisStreamSource(FixedPartitionedSource):
    """Ticks and bars from Redis streams (one partition per stream key), read through a consumer group.

    ``recovery`` says that the flow runs with a recovery store. A partition that Bytewax
    then builds without a resume position belongs to a run whose predecessor (if any)
    died before its first snapshot, so it reads from where the group began; without a
    store, the group's own place in the stream is the only memory there is.
    """

    def __init__(self, url: str, keys: list[str], *, group: str = "sigma", start: str = "0", batch: int = 500,
                 clock: ClockMode = "data", lateness: int = _SECOND, idle: int = 0, poll: float = 0.0005,
                 recovery: bool = False, max_ahead: int | None = None) -> None:  # fmt: skip
        self.url, self.keys, self.group, self.start, self.batch, self.poll = url, keys, group, start, batch, poll
        self.clock, self.lateness, self.idle, self.recovery, self.max_ahead = clock, lateness, idle, recovery, max_ahead

    def list_parts(self) -> list[str]:
        return list(self.keys)

    def build_part(self, step_id: str, for_part: str, resume_state: Resume | None) -> _StreamPartition:
        return _StreamPartition(self.url, for_part, self.group, f"{self.group}-{for_part}", self.start, resume_state, self.batch,
                                Reader(self.clock, lateness=self.lateness, idle=self.idle, max_ahead=self.max_ahead), self.poll, self.recovery)  # fmt: skip


# -- files -------------------------------------------------------------------------


class _FilePartition(StatefulSourcePartition):
    def __init__(self, path: Path, kind: Kind, resume: Resume | None, batch: int, reader: Reader, speed: float | None = None,
                 wall=time.monotonic) -> None:  # fmt: skip
        self.kind = "tick" if kind == "ticks" else "bar"
        self.rows = _read_rows(path, _TYPES[self.kind])
        self.position = 0
        if resume is not None:
            self.position = resume.position
            reader.restore(resume.clock)
        self.batch = batch
        self.reader = reader
        self.speed, self.wall = speed, wall
        self._pace = None if speed is None else _event_times(self.rows, "ts" if self.kind == "tick" else "end")
        self._origin: tuple[float, int] | None = None  # (wall, event time) the paced replay counts from

    def _due(self) -> int:
        """How many rows a paced replay may have emitted by now: event time runs ``speed`` times the wall clock."""
        times = self._pace
        if self.position >= len(times):
            return len(times)
        now = self.wall()
        if self._origin is None:
            self._origin = (now, int(times[self.position]))
        started, first = self._origin
        return int(np.searchsorted(times, first + (now - started) * self.speed * 1e9, side="right"))

    def next_awake(self) -> datetime | None:
        if self._pace is None or self.position >= len(self._pace) or self._due() > self.position:
            return None
        return datetime.now(UTC) + timedelta(milliseconds=10)  # nothing due yet: look again shortly, without spinning

    def next_batch(self) -> list:
        if self.position >= len(self.rows):
            raise StopIteration
        received = time.time_ns()
        end = self.position + self.batch if self._pace is None else min(self.position + self.batch, self._due())
        rows = self.rows[self.position : end]
        self.position += len(rows)
        items = []
        for row in rows:
            if isinstance(row, bytes):
                items.append(self.reader.decode(self.kind, row, received))
                continue
            try:
                item = msgspec.convert(row, _TYPES[self.kind])
            except (msgspec.ValidationError, ValueError) as error:
                raw = msgspec.json.encode(row)
                items.append(("dead", dead_letter("malformed", str(row.get("ticker", "")), raw, str(error), received), received))
                continue
            items.append(self.reader.accept(self.kind, item, received))
        clock = self.reader.clock(received)
        if clock is not None:
            items.append(clock)
        return items

    def snapshot(self) -> Resume:
        return Resume(self.position, self.reader.snapshot())


def _event_times(rows: list, field: str) -> np.ndarray:
    """Each row's event time, for pacing: JSON lines are decoded once, here."""
    values = [(msgspec.json.decode(row) if isinstance(row, bytes) else row).get(field, 0) for row in rows]
    times = np.asarray([v if isinstance(v, int) else 0 for v in values], dtype=np.int64)
    return np.maximum.accumulate(times) if len(times) else times  # a row out of order waits for none behind it


SUFFIXES = (".parquet", ".csv", ".jsonl", ".ndjson", ".json")
"""The file types a file source reads: Parquet and CSV columns of the schema's fields, or JSON lines."""


def _read_rows(path: Path, kind: type) -> list:
    """A file's rows: dicts of the schema's fields (Parquet, CSV), or raw lines (JSON lines)."""
    if not path.exists():
        raise ConfigError("input", f"{path} does not exist")
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        return [line.rstrip(b"\r") for line in path.read_bytes().split(b"\n") if line.strip()]  # JSON lines end at \n only
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    elif path.suffix == ".csv":
        table = pa_csv.read_csv(path)
    else:
        raise ConfigError("input", f"{path.name}: unknown file type", "use .parquet, .csv or .jsonl")
    fields = set(kind.__struct_fields__)
    table = table.select([name for name in table.column_names if name in fields])
    for name in ("ts", "start", "end"):
        if name in table.column_names and pa.types.is_timestamp(table.schema.field(name).type):
            table = table.set_column(table.column_names.index(name), name, table.column(name).cast(pa.timestamp("ns")).cast(pa.int64()))
    return [{key: value for key, value in row.items() if value is not None} for row in table.to_pylist()]


class FileSource(FixedPartitionedSource):
    """Ticks or bars from files, one partition per file: the same flow replays history."""

    def __init__(self, paths: list[Path], kind: Kind = "ticks", *, batch: int = 1000, lateness: int = _SECOND, idle: int = 0,
                 speed: float | None = None, max_ahead: int | None = None) -> None:  # fmt: skip
        self.paths, self.kind, self.batch, self.lateness, self.idle = [Path(p) for p in paths], kind, batch, lateness, idle
        self.max_ahead = max_ahead
        self.speed = speed
        """Event seconds per wall second (a paced replay); None: as fast as the flow reads."""

    def list_parts(self) -> list[str]:
        return [str(path) for path in self.paths]

    def build_part(self, step_id: str, for_part: str, resume_state: Resume | None) -> _FilePartition:
        return _FilePartition(Path(for_part), self.kind, resume_state, self.batch, Reader("data", lateness=self.lateness, idle=self.idle, max_ahead=self.max_ahead),
                              self.speed)  # fmt: skip


# -- stdin -------------------------------------------------------------------------


class _StdinPartition(StatelessSourcePartition):
    def __init__(self, kind: Kind, reader: Reader) -> None:
        self.kind = "tick" if kind == "ticks" else "bar"
        self.reader = reader

    def next_batch(self) -> list:
        line = sys.stdin.buffer.readline()
        if not line:
            raise StopIteration
        received = time.time_ns()
        if not line.strip():
            return []
        items = [self.reader.decode(self.kind, line, received)]
        clock = self.reader.clock(received)
        return items + [clock] if clock is not None else items


class StdinSource(DynamicSource):
    """JSON lines of ticks or bars on standard input (read by the first worker; it cannot resume)."""

    def __init__(self, kind: Kind = "ticks", clock: ClockMode = "data", lateness: int = _SECOND, idle: int = 0,
                 max_ahead: int | None = None) -> None:  # fmt: skip
        self.kind, self.clock, self.lateness, self.idle, self.max_ahead = kind, clock, lateness, idle, max_ahead

    def build(self, step_id: str, worker_index: int, worker_count: int) -> StatelessSourcePartition:
        return _StdinPartition(self.kind, Reader(self.clock, lateness=self.lateness, idle=self.idle, max_ahead=self.max_ahead)) if worker_index == 0 else _Nothing()


class _Nothing(StatelessSourcePartition):
    def next_batch(self) -> list:
        raise StopIteration
