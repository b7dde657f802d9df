"""SigmaSim paper runs: stored history through the live dataflow, its alerts through the paper broker.

A run lives in ``SIGMA_HOME/sim/<run id>/``: ``run.json`` (the request, its lineage
and status), the feed the flow reads, the flow's recovery store, a private
redis-server's append-only file, ``alerts.jsonl`` (every alert the broker took, once)
``scores.jsonl`` (every scored bar close of the flow) and ``account.msgpack`` (the broker's account at the end). It runs in three phases:

1. **The flow.** `flows.live.flow` over the feed (the file source, the data clock)
   in a child process with a recovery store, the named trained models served as they
   would be live (``paper=True``), alerts to a private redis-server of the run
   (``--redis-url`` names another, the live one only when asked) or, where there is
   no redis-server, to the run's alert file.
2. **The alerts**, read as a consumer would: through the consumer group
   ``sigma-sim``, each written to ``alerts.jsonl`` before it is acknowledged, so an
   alert is taken once however often this phase starts.
3. **The broker** walks the window's bars in event time, each alert delivered before
   the first bar that starts at or after it (`replay.broker`), and marks the equity at
   every bar end.

Ctrl-C or `cancel` stops the flow (it snapshots every second); `execute` on a
cancelled or failed run resumes it: the flow from its last snapshot (its alerts are
written once per id, so nothing doubles), the alerts from the group's position.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import msgspec

from engine import names
from engine.alerts import nanoseconds
from engine.calendar import ExchangeClock, calendar
from engine.errors import ConfigError, NotFoundError, SigmaError, redacted
from engine.policy import Policy
from engine.schemas import Alert, decode_json, encode_json
from engine.store import dataset, histories
from engine.workspace import Workspace, process_alive
from replay import feed as feeds
from replay.broker import FUTURE_MULTIPLIERS, Account, Broker, FillSettings, Roll, rolls_of

__all__ = ["SimRequest", "SimRun", "start", "execute", "cancel", "load", "runs", "account", "alerts", "record_verdict", "summary", "walk", "GROUP"]

GROUP = "sigma-sim"
"""The consumer group the paper broker reads the alert stream through."""
Status = Literal["queued", "running", "cancelled", "failed", "done"]


class SimRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What a paper run replays: which trained models, over which dates and tickers, filled how."""

    models: list[str]
    start: date | None = None
    end: date | None = None
    tickers: list[str] = []
    """Default: every ticker of the models' universes."""
    source: Literal["bars", "ticks"] = "bars"
    speed: str = "max"
    fill: FillSettings = FillSettings()
    redis_url: str | None = None
    """Unset: a private redis-server of the run (the live alert streams are never touched unless named here)."""


class SimRun(msgspec.Struct, kw_only=True):
    """A paper run as stored: its request, lineage and where it got to."""

    run_id: str
    request: SimRequest
    created_at: str
    cadence: str
    """Of the bars the feed replays: the models' own, or the intervals they decide at inside them."""
    calendar: str
    tickers: list[str]
    lineage: dict[str, dict[str, str | None]]
    """Per model: its artifact and the hashes of its lineage; ``data`` per ticker: the stored bars' hash."""
    transport: Literal["private-redis", "redis", "file"]
    adjustment: str = "raw"
    """What the feed's prices are: those of the stored bars it is made of."""
    status: Status = "queued"
    """Queued until a process executes it."""
    phase: Literal["flow", "alerts", "broker", "done"] = "flow"
    error: str | None = None
    summary: dict[str, float] = {}
    verdict: dict | None = None
    """The trust gate's verdict (`replay.gate.Verdict`), once judged."""
    pid: int | None = None
    """The process running it, while it runs."""

    @property
    def shown_status(self) -> str:
        """The status as a user should read it: a "running" run whose process is gone was killed (`sigma sim resume`)."""
        if self.status == "running" and not (self.pid and process_alive(self.pid)):
            return "killed"
        return self.status


def _folder(home: Path, run_id: str) -> Path:
    return Path(home) / "sim" / names.name(run_id, "run")


def load(home: Path, run_id: str) -> SimRun:
    """The stored run; `NotFoundError` lists what there is."""
    path = _folder(home, run_id) / "run.json"
    if not path.exists():
        known = ", ".join(r.run_id for r in runs(home)[-5:]) or "none yet"
        raise NotFoundError(f"no paper run {run_id!r} (recent: {known}); start one with `sigma sim run TRAINED_ID`")
    return msgspec.json.decode(path.read_bytes(), type=SimRun)


def runs(home: Path) -> list[SimRun]:
    """Every paper run of the workspace, oldest first."""
    root = Path(home) / "sim"
    found = [msgspec.json.decode(p.read_bytes(), type=SimRun) for p in root.glob("*/run.json")] if root.is_dir() else []
    return sorted(found, key=lambda run: (run.created_at, run.run_id))


def _save(home: Path, run: SimRun) -> None:
    path = _folder(home, run.run_id) / "run.json"
    partial = path.with_suffix(".partial")
    partial.write_bytes(msgspec.json.format(msgspec.json.encode(run)) + b"\n")
    partial.replace(path)


def start(space: Workspace, request: SimRequest, *, actor: str) -> SimRun:
    """Check ``request`` against the workspace, write the run's feed and record; nothing is written when it is refused."""
    pace(request.speed)  # ConfigError names --speed
    if not request.models:
        raise ConfigError("models", "no trained model named", "pass one or more trained ids (`sigma models trained` lists them)")
    cadences, universe, lineage, calendars = set(), [], {}, set()
    for trained_id in request.models:
        record = space.trained(trained_id)  # NotFoundError names the model
        manifest = record.manifest
        cadences.add((manifest["cadence"], manifest.get("evaluation")))
        model_universe = space.sweep_request(manifest["sweep"]).universe or [space.model(record.model).instrument.symbol]
        universe += [t for t in model_universe if t not in universe]
        lineage[trained_id] = {**{k: v for k, v in manifest["lineage"].items() if v is not None}, "artifact_sha": record.artifact_sha}
        settings = space.model(record.model).instrument
        root = getattr(settings, "contract", None)
        if root is not None and request.fill.multiplier is None and root not in FUTURE_MULTIPLIERS:
            raise ConfigError("--fill multiplier", f"no multiplier known for futures root {root}", "pass --fill multiplier=DOLLARS_PER_POINT")
    if len(cadences) > 1:
        shown = ", ".join(sorted(bars if points is None else f"{bars} every {points}" for bars, points in cadences))
        raise ConfigError("models", f"the models trade on different cadences ({shown})",
                          "replay models of one cadence (and evaluation) together, one run per cadence")  # fmt: skip
    # The feed: the bars of the models' cadence, or the intervals they decide at, which the flow builds their bars of.
    [(bars_cadence, evaluation)] = cadences
    cadence = evaluation or bars_cadence
    tickers = list(request.tickers) or universe
    foreign = [t for t in tickers if t not in universe]
    if foreign:
        raise ConfigError("--tickers", f"{', '.join(foreign)}: not traded by {', '.join(request.models)} (universe: {', '.join(universe)})",
                          "name tickers of the models' universes, or leave --tickers out")  # fmt: skip
    window = feeds.window(space.home, tickers, cadence, request.start, request.end, with_ticks=request.source == "ticks")
    data, adjustments = {}, {}
    for ticker in tickers:
        info = dataset(space.home, ticker, cadence)
        data[ticker] = info.data_sha
        calendars.add(info.calendar)
        adjustments[ticker] = info.adjustment
    if len(set(adjustments.values())) > 1:  # one feed, one kind of prices (case 15)
        shown = ", ".join(f"{ticker} {prices}" for ticker, prices in adjustments.items())
        raise ConfigError("--tickers", f"the tickers' prices are normalised differently ({shown})",
                          "replay tickers imported with one --adjustment together")
    feed = next(iter(adjustments.values()))
    for trained_id in request.models:  # refused here, before anything is written, as the flow would refuse it
        manifest = space.trained(trained_id).manifest
        histories(space.home, trained_id, bars_cadence, tickers, manifest.get("adjustment"), feed)
    transport = "redis" if request.redis_url else "private-redis" if _redis_installed() else "file"
    created = datetime.now(UTC)
    run = SimRun(run_id=f"sim-{created:%Y%m%d-%H%M%S}-{os.urandom(2).hex()}", request=request, created_at=created.isoformat(),
                 cadence=cadence, calendar=sorted(calendars)[0], tickers=tickers, lineage={**lineage, "data": data},
                 transport=transport, adjustment=feed)  # fmt: skip
    folder = _folder(space.home, run.run_id)
    folder.mkdir(parents=True)
    if request.source == "ticks":
        feeds.write_ticks(window, folder / "feed.parquet")
    else:
        feeds.write_bars(window.bars, folder / "feed.parquet")
    _save(space.home, run)
    space.audit(actor, "sim.start", run.run_id, {"models": request.models, "fill": msgspec.to_builtins(request.fill)})
    return run


def pace(speed: str) -> float | None:
    """Event seconds per wall second of ``--speed`` (``max``: None, as fast as the flow goes; ``10x``: 10.0)."""
    if speed == "max":
        return None
    try:
        value = float(speed.removesuffix("x"))
    except ValueError:
        value = math.nan
    if not (speed.endswith("x") and value > 0 and math.isfinite(value)):
        raise ConfigError("--speed", f"{speed!r} is not a speed", "use max, or a multiple of real time such as 1x, 10x or 0.5x")
    return value


def _redis_installed() -> bool:
    from flows.redis_server import RedisServer

    return RedisServer.installed()


def record_verdict(home: Path, run_id: str, verdict: dict) -> None:
    """Store the trust gate's verdict with the run."""
    run = load(home, run_id)
    run.verdict = verdict
    _save(home, run)


def cancel(home: Path, run_id: str) -> SimRun:
    """Ask a running paper run to stop (it stops within a second); a queued one never starts; a stopped one is left be."""
    run = load(home, run_id)
    if run.shown_status == "running":
        (_folder(home, run_id) / "cancel").touch()
    elif run.status == "queued":
        run.status = "cancelled"
        _save(home, run)
    return run


def execute(home: Path, run_id: str, *, announce: Callable[[str], None] = print) -> SimRun:
    """Run (or resume) a paper run to its end; returns it with its status: done, or cancelled by Ctrl-C or `cancel`."""
    home = Path(home)
    run = load(home, run_id)
    folder = _folder(home, run_id)
    (folder / "cancel").unlink(missing_ok=True)
    if run.status == "done":
        return run
    _reap(folder)
    run.status, run.error, run.pid = "running", None, os.getpid()
    _save(home, run)
    server = None
    try:
        url = run.request.redis_url
        if run.transport == "private-redis":
            from flows.redis_server import RedisServer

            server = RedisServer(folder / "redis", appendonly=True).start()
            _own(folder, "redis", server.pid)
            server.client().config_set("appendfsync", "always")  # an alert the flow wrote survives a kill of the run
            url = server.url
        if run.phase == "flow":
            announce(f"{run.run_id}: replaying {', '.join(run.tickers)} ({run.cadence}) through the live flow; alerts to "
                     + {"private-redis": "a private redis-server of the run", "redis": redacted(url or ""),
                        "file": f"{folder / 'alerts.flow.jsonl'} (no redis-server installed)"}[run.transport])  # fmt: skip
            if not _flow(home, run, url, folder, announce):
                run.status = "cancelled"
                _save(home, run)
                announce(f"{run.run_id}: cancelled; `sigma sim resume {run.run_id}` continues where it stopped")
                return run
            run.phase = "alerts"
            _save(home, run)
        if run.phase == "alerts":
            taken = _take_alerts(folder, run, url)
            announce(f"{run.run_id}: {taken:,} alerts taken through consumer group {GROUP}")
            run.phase = "broker"
            _save(home, run)
        account = _trade(home, run, folder)
        run.summary = summary(account)
        run.phase, run.status = "done", "done"
        _save(home, run)
        return run
    except KeyboardInterrupt:
        run.status = "cancelled"
        _save(home, run)
        announce(f"{run.run_id}: cancelled; `sigma sim resume {run.run_id}` continues where it stopped")
        return run
    except SigmaError:
        run.status = "failed"
        _save(home, run)
        raise
    except Exception as error:
        run.status, run.error = "failed", f"{type(error).__name__}: {error}"
        _save(home, run)
        raise
    finally:
        if server is not None:
            server.stop()


def _flow(home: Path, run: SimRun, url: str | None, folder: Path, announce: Callable[[str], None]) -> bool:
    """The flow phase in a child process; False when it was cancelled."""
    command = [sys.executable, "-c", "import sys; from replay.sim import _flow_main; _flow_main(sys.argv[1], sys.argv[2], sys.argv[3])",
               str(home), run.run_id, url or ""]  # fmt: skip
    log = (folder / "flow.log").open("ab")
    child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    _own(folder, "flow", child.pid)
    shown = time.monotonic()
    try:
        while child.poll() is None:
            time.sleep(0.2)
            if (folder / "cancel").exists():
                _stop(child)
                return False
            if time.monotonic() - shown >= 5.0:
                shown = time.monotonic()
                announce(f"{run.run_id}: {_progress(run, url, folder)}")
    except KeyboardInterrupt:
        _stop(child)
        raise
    finally:
        log.close()
    if child.returncode != 0:
        tail = (folder / "flow.log").read_text(errors="replace").strip().splitlines()[-3:]
        raise SigmaError(f"the replay's flow stopped with status {child.returncode}: {' | '.join(tail)} (whole log: {folder / 'flow.log'})")
    return True


def _own(folder: Path, role: str, pid: int | None) -> None:
    """Record a child process of the run, so that a run resumed after a crash of this one can stop it first."""
    path = folder / "processes.json"
    owned = json.loads(path.read_text()) if path.exists() else {}
    owned[role] = pid
    path.write_text(json.dumps(owned))


def _reap(folder: Path) -> None:
    """Stop the children a crashed run left behind (a flow still replaying, a redis-server holding the run's files)."""
    path = folder / "processes.json"
    if not path.exists():
        return
    for pid in json.loads(path.read_text()).values():
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            where = Path(f"/proc/{pid}/cwd").resolve()
        except OSError:
            continue  # gone
        # Ours, not a process that reused the id: the flow names the run, redis-server (which retitles itself) works in it.
        if folder.name.encode() in command or where.is_relative_to(folder.resolve()):
            os.kill(pid, signal.SIGKILL)
            while Path(f"/proc/{pid}").exists() and b"zombie" not in _state(pid):
                time.sleep(0.01)
    path.unlink()


def _state(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/status").read_bytes().lower()
    except OSError:
        return b"zombie"


def _stop(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGINT)
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _progress(run: SimRun, url: str | None, folder: Path) -> str:
    """How far the flow is, from the latest bar end each ticker reported to the health stream."""
    if url is None:
        lines = (folder / "alerts.flow.jsonl").read_bytes().count(b"\n") if (folder / "alerts.flow.jsonl").exists() else 0
        return f"{lines:,} alerts so far"
    import redis

    from flows.sinks import ALERTS, HEALTH

    client = redis.Redis.from_url(url)
    try:
        statuses = [json.loads(value) for value in client.hvals(HEALTH)]
        alerts = client.xlen(ALERTS)
    except redis.RedisError:
        return "waiting for the flow"
    reached = min((s["last_bar_end"] for s in statuses if s["ticker"] in run.tickers), default=None)
    if reached is None:
        return "warming the models from stored history"
    return f"bars through {datetime.fromtimestamp(reached / 1e9, UTC):%Y-%m-%d %H:%M}, {alerts:,} alerts"


def _flow_main(home: str, run_id: str, url: str) -> None:
    """The child process of the flow phase: the live flow over the run's feed, with a recovery store in the run's folder."""
    from bytewax.recovery import RecoveryConfig
    from bytewax.run import cli_main

    from flows.live import flow
    from flows.recovery import prepare

    run = load(Path(home), run_id)
    folder = _folder(Path(home), run_id)
    dataflow = flow(Path(home), url or None, source="files", files=[folder / "feed.parquet"], kind=run.request.source,
                    models=run.request.models, paper=True, adjustment=run.adjustment, recovery=True, speed=pace(run.request.speed), scores_file=folder / "scores.jsonl",
                    features_file=folder / "features.jsonl",
                    alert_file=folder / "alerts.flow.jsonl" if run.transport == "file" else None)  # fmt: skip
    prepare(folder / "recovery", 1)
    try:
        cli_main(dataflow, workers_per_process=1, epoch_interval=timedelta(seconds=1),
                 recovery_config=RecoveryConfig(str(folder / "recovery"), backup_interval=timedelta(0)))  # fmt: skip
    except KeyboardInterrupt:
        sys.exit(130)


def _take_alerts(folder: Path, run: SimRun, url: str | None) -> int:
    """Move the flow's alerts of the run's models into ``alerts.jsonl``, once each; returns how many are there."""
    path = folder / "alerts.jsonl"
    taken = {alert.alert_id for alert in alerts(folder)}
    with path.open("ab") as out:
        if run.transport == "file":
            for line in (folder / "alerts.flow.jsonl").read_bytes().splitlines():
                alert = _decoded(line)
                if alert is not None and alert.alert_id not in taken and alert.model_id in run.request.models:
                    taken.add(alert.alert_id)
                    out.write(encode_json(alert) + b"\n")
            out.flush()
            os.fsync(out.fileno())
            return len(taken)
        import redis

        from flows.sinks import model_stream

        client = redis.Redis.from_url(url)
        for model in run.request.models:
            stream = model_stream(model)
            try:
                client.xgroup_create(stream, GROUP, id="0", mkstream=True)
            except redis.ResponseError as error:
                if "BUSYGROUP" not in str(error):
                    raise
            position = "0"  # first what this consumer took and did not acknowledge, then new entries
            while True:
                reply = client.xreadgroup(GROUP, "broker", {stream: position}, count=1000)
                entries = reply[0][1] if reply else []
                if not entries:
                    if position == "0":
                        position = ">"
                        continue
                    break
                for _, fields in entries:
                    alert = _decoded(fields.get(b"alert", b""))
                    if alert is not None and alert.alert_id not in taken:
                        taken.add(alert.alert_id)
                        out.write(encode_json(alert) + b"\n")
                out.flush()
                os.fsync(out.fileno())  # written before it is acknowledged: a crash here loses nothing
                client.xack(stream, GROUP, *[entry_id for entry_id, _ in entries])
    return len(taken)


def _decoded(raw: bytes) -> Alert | None:
    try:
        return decode_json(raw, Alert)
    except (ValueError, msgspec.ValidationError):
        return None  # a line cut short by a kill of the flow: its alert is written again whole


def alerts(folder: Path) -> list[Alert]:
    """The alerts a run's broker took, in the order it took them."""
    path = folder / "alerts.jsonl"
    if not path.exists():
        return []
    return [alert for alert in map(_decoded, path.read_bytes().splitlines()) if alert is not None]


def policies(space: Workspace, models: list[str]) -> dict[str, Policy]:
    return {m: Policy.from_parameters(space.trained(m).manifest["policy"]["parameters"], where=f"{m}: policy.parameters") for m in models}


def rolls(space: Workspace, models: list[str]) -> dict[str, Roll]:
    """How each futures model's contracts roll, from its model's instrument settings."""
    return rolls_of({m: space.model(space.trained(m).model).instrument for m in models})


def _trade(home: Path, run: SimRun, folder: Path) -> Account:
    """The broker over the window's bars with the taken alerts; writes and returns the account."""
    with Workspace(home, clock=lambda: datetime.now(UTC)) as space:
        rules, rolled = policies(space, run.request.models), rolls(space, run.request.models)
    window = feeds.window(home, run.tickers, run.cadence, run.request.start, run.request.end, with_ticks=run.request.source == "ticks")
    broker = Broker.open(rules, ExchangeClock(calendar(run.calendar)), run.request.fill, rolled)
    account = walk(broker, window, alerts(folder))
    partial = folder / "account.partial"
    partial.write_bytes(msgspec.msgpack.encode(account))  # msgpack: NaN (a level that is off) survives
    partial.replace(folder / "account.msgpack")
    return account


def walk(broker: Broker, window: feeds.Window, taken: list[Alert]) -> Account:
    """The broker over ``window``'s bars in event time: each alert before the first bar starting at or after it."""
    queue = sorted(taken, key=lambda alert: alert.timestamp)  # stable: one bar close's alerts keep their stream order
    next_alert = 0
    bars = window.bars
    i = 0
    while i < len(bars):
        end = bars[i].end
        j = i
        while j < len(bars) and bars[j].end == end:
            j += 1
        for bar in bars[i:j]:
            while next_alert < len(queue) and nanoseconds(queue[next_alert].timestamp) <= bar.start:
                broker.on_alert(queue[next_alert])
                next_alert += 1
            ticks = feeds.ticks_within(window.ticks[bar.ticker], bar) if window.ticks else None
            broker.on_bar(bar, ticks)
        broker.mark(end)
        i = j
    for alert in queue[next_alert:]:  # decided at the window's last close: nothing follows to fill them
        broker.on_alert(alert)
    return broker.account


def account(home: Path, run_id: str) -> Account:
    """The broker's account at the end of a finished run."""
    path = _folder(home, run_id) / "account.msgpack"
    if not path.exists():
        raise NotFoundError(f"paper run {run_id} has not finished (`sigma sim resume {run_id}`)")
    return msgspec.msgpack.decode(path.read_bytes(), type=Account)


def summary(account: Account) -> dict[str, float]:
    """The run's figures: equity, return, trades, win rate, maximum drawdown, fees, fills."""
    start = account.settings.cash
    curve = [equity for _, equity, _ in account.equity] or [start]
    peak, drawdown = start, 0.0
    for equity in curve:
        peak = max(peak, equity)
        drawdown = max(drawdown, 1.0 - equity / peak if peak > 0 else 0.0)
    trades = account.trades
    return {
        "equity": curve[-1],
        "total_return": curve[-1] / start - 1.0,
        "trades": float(len(trades)),
        "win_rate": sum(t.pnl > 0 for t in trades) / len(trades) if trades else 0.0,
        "max_drawdown": drawdown,
        "fees": sum(t.fees for t in trades),
        "fills": float(len(account.fills)),
        "open_positions": float(len(account.positions)),
        "alerts_not_acted_on": float(len(account.notes)),
    }
