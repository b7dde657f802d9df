"""Paper trading on the live stream: the paper broker on the live flow's alerts and the tick stream the flow reads.

A paper account (``SIGMA_HOME/sim/live-<account>/``) reads each model's alert
stream and the tick stream through its own consumer group (``sigma-sim-<account>``),
so it shares the feed with the flow and with other consumers. An alert waits until
the tick stream's event time reaches it, then becomes an order; every tick is one
price for the broker (`replay.broker.Broker.on_bar` on a one-tick bar, with the tick
itself as the quote), so an order fills on the first tick that follows its alert,
and stops and targets act on the ticks after the fill. The equity is marked at every
minute's end.

Exactly once across a crash: after each batch the account, the alerts still
waiting and how far the tick stream has moved it are written in one file
(atomically), and only then are the entries acknowledged. A restart reads its
unacknowledged entries first. What was acted on is known by content, never by
stream id: an alert by its ``alert_id``, a tick by its event time (one older than
its ticker's latest taken is not a price any more; a feed delivers each ticker in
time order) and, at that latest time, by itself. So no alert is acted on twice and
no tick moves the account twice, after a crash or after Redis came back from an
older snapshot and hands out ids it gave before (RELIABILITY.md case 30), and none
is lost. One process holds an account at a time (a lock file); a second is refused.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import redis

from engine import names
from engine.alerts import nanoseconds
from engine.calendar import NS_PER_MINUTE, ExchangeClock, calendar
from engine.errors import ConfigError, NotFoundError
from engine.schemas import Alert, Bar, Tick, decode_json
from engine.store import dataset
from engine.workspace import Workspace
from replay.broker import Account, Broker, FillSettings
from replay.sim import policies, rolls

__all__ = ["LiveState", "attach", "load", "folder"]

class LiveState(msgspec.Struct, kw_only=True):
    """A live paper account as written after each batch."""

    account: Account
    models: list[str]
    pending: list[Alert] = []
    """Alerts taken, waiting for the tick stream to reach their time."""
    taken: dict[str, str] = {}
    """The last entry id taken from each stream (shown; nothing is skipped by it)."""
    last_tick: dict[str, int] = {}
    """Per ticker, the event time of its latest tick that moved the account."""
    ticks_then: dict[str, list[str]] = {}
    """Per ticker, its ticks at ``last_tick`` that moved it, as their stream entries' JSON."""
    marked_until: int = -1
    """The last minute end the equity was marked at."""
    at_end: bool = False
    """The latest tick-stream entry taken was its ``eof``: a replayed feed has ended."""


def folder(home: Path, account: str) -> Path:
    return Path(home) / "sim" / f"live-{names.name(account, 'account')}"


def load(home: Path, account: str) -> LiveState:
    """A live paper account's state; `NotFoundError` when it was never attached."""
    path = folder(home, account) / "state.msgpack"
    if not path.exists():
        raise NotFoundError(f"no live paper account {account!r}; attach one with `sigma sim live TRAINED_ID --account {account}`")
    return msgspec.msgpack.decode(path.read_bytes(), type=LiveState)


def _save(path: Path, state: LiveState) -> None:
    partial = path.with_suffix(".partial")
    with partial.open("wb") as out:
        out.write(msgspec.msgpack.encode(state))
        out.flush()
        os.fsync(out.fileno())
    partial.replace(path)


def _lock(where: Path):
    where.mkdir(parents=True, exist_ok=True)
    handle = (where / "lock").open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ConfigError("--account", f"{where.name.removeprefix('live-')} is already attached (pid {holder})",
                          "stop that `sigma sim live` first, or use another --account")  # fmt: skip
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def attach(
    home: Path,
    account: str,
    models: list[str],
    url: str,
    *,
    ticks: str,
    fill: FillSettings | None = None,
    stop: Callable[[], bool] = lambda: False,
    announce: Callable[[str], None] = print,
    until_end: bool = False,
) -> LiveState:
    """Paper-trade ``models``' alerts on ``url`` against the tick stream ``ticks`` until ``stop()`` (or, with ``until_end``,
    the stream's ``eof`` entry); returns the account's state. A restart continues the same account."""
    home = Path(home)
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        rules = policies(space, models)  # NotFoundError names an unknown model, before anything is written
        rolled = rolls(space, models)
        symbol = space.model(space.trained(models[0]).model).instrument.symbol
        cadence = space.trained(models[0]).manifest["cadence"]
    where = folder(home, account)
    lock = _lock(where)
    try:
        path = where / "state.msgpack"
        if path.exists():
            state = msgspec.msgpack.decode(path.read_bytes(), type=LiveState)
            if sorted(state.models) != sorted(models):
                raise ConfigError("models", f"account {account} trades {', '.join(state.models)}",
                                  "attach it with the same models, or use another --account")  # fmt: skip
            if fill is not None and fill != state.account.settings:
                raise ConfigError("--fill", f"account {account} was opened with other fill settings", "leave them out to continue it")
        else:
            state = LiveState(account=Account(cash=(fill or FillSettings()).cash, settings=fill or FillSettings()), models=list(models))
        try:
            clock = ExchangeClock(calendar(dataset(home, symbol, cadence).calendar))
        except NotFoundError:
            clock = ExchangeClock(calendar("us_equities"))
        broker = Broker(rules, clock, state.account, rolled)
        client = redis.Redis.from_url(url)
        group = f"sigma-sim-{account}"
        streams = [f"{{sigma}}:alerts:{model}" for model in models] + [ticks]
        for stream in streams:
            try:
                client.xgroup_create(stream, group, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
        positions = dict.fromkeys(streams, "0")  # unacknowledged entries first, then new ones
        while not stop():
            taken: dict[str, list[bytes]] = {}
            read_any = False
            caught_up = all(position == ">" for position in positions.values())  # this round reads new entries only
            for stream in streams:
                reply = client.xreadgroup(group, "paper", {stream: positions[stream]}, count=500,
                                          block=None if stream != ticks or positions[stream] == "0" else 200)  # fmt: skip
                entries = reply[0][1] if reply else []
                if not entries and positions[stream] == "0":
                    positions[stream] = ">"
                    continue
                read_any = read_any or bool(entries)
                for entry_id, fields in entries:
                    taken.setdefault(stream, []).append(entry_id)
                    state.taken[stream] = entry_id.decode()
                    if stream == ticks:
                        state.at_end = _tick(broker, state, fields)
                    else:
                        _alert(broker, state, fields)
            if taken:
                _save(path, state)
                for stream, ids in taken.items():
                    client.xack(stream, group, *ids)
            if caught_up and not read_any and until_end and state.at_end:
                break
        return state
    finally:
        lock.close()


def _alert(broker: Broker, state: LiveState, fields: dict) -> None:
    try:
        alert = decode_json(fields[b"alert"], Alert)
    except (KeyError, ValueError, msgspec.ValidationError):
        return  # the alert stream's own poison handling (`sigma alerts tail`) covers a bad entry
    if broker.knows(alert.alert_id) or any(p.alert_id == alert.alert_id for p in state.pending):
        return
    state.pending.append(alert)
    state.pending.sort(key=lambda a: a.timestamp)


def _tick(broker: Broker, state: LiveState, fields: dict) -> bool:
    """One tick-stream entry through the broker; True for the stream's end."""
    if b"eof" in fields:
        return True
    raw = fields.get(b"tick")
    if raw is None:
        return False
    try:
        tick = decode_json(raw, Tick)
    except (ValueError, msgspec.ValidationError):
        return False  # the flow dead-letters it; the broker takes no price from it
    price = tick.price if tick.price is not None else ((tick.bid + tick.ask) / 2 if tick.bid is not None and tick.ask is not None else None)
    latest = state.last_tick.get(tick.ticker, -1)
    if price is None or not price > 0 or tick.ts < latest:
        return False  # no price, or one of a time the account has moved past (taken before a crash, or handed out again)
    identity = raw.decode(errors="replace")
    if tick.ts == latest:
        if identity in state.ticks_then[tick.ticker]:
            return False
        state.ticks_then[tick.ticker].append(identity)
    else:
        state.last_tick[tick.ticker], state.ticks_then[tick.ticker] = tick.ts, [identity]
    while state.pending and nanoseconds(state.pending[0].timestamp) <= tick.ts:
        broker.on_alert(state.pending.pop(0))
    minute = tick.ts // NS_PER_MINUTE * NS_PER_MINUTE
    if state.marked_until >= 0 and minute > state.marked_until:
        broker.mark(minute)
    state.marked_until = max(state.marked_until, minute)
    broker.on_bar(Bar(ticker=tick.ticker, start=tick.ts, end=tick.ts + 1, open=price, high=price, low=price, close=price,
                      volume=tick.size or 0.0), [tick])  # fmt: skip
    return False
