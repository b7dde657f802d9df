"""``sigma demo``: the whole pipeline on the embedded synthetic market, from a fresh install to alerts in Redis."""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import date
from pathlib import Path

import redis

from api.accounts import users_model
from cli._common import actor, catalog, workspace
from engine.calendar import CALENDARS
from engine.models import SweepRequest, create_model
from engine.store import store_bars
from engine.workspace import LOCAL
from flows.redis_server import RedisServer

TICKERS = ["SPY", "QQQ", "IWM"]
HISTORY_SESSIONS = 2000
LIVE_SESSIONS = 60
PAPER_SESSIONS = 250  # the last year of the history, paper-traded before the model goes live


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo",
        help="run the whole pipeline on a synthetic market: pack, model, sweep, train, publish, live flow, alerts",
        description=f"Generates {HISTORY_SESSIONS + LIVE_SESSIONS:,} sessions of daily bars for {', '.join(TICKERS)}, keeps "
        f"{HISTORY_SESSIONS:,} as history, creates a swingsigma stock model over them, sweeps it, trains the best "
        f"leaderboard row, paper-trades it over the history's last {PAPER_SESSIONS} sessions (`sigma sim`) and prints the "
        f"trust gate's verdict, publishes it, and replays the last {LIVE_SESSIONS} bars through a Redis stream into the live "
        "dataflow. Redis: --redis-url or $REDIS_URL, else a private redis-server when one is installed (left running), "
        "else alerts go to a local file.",
    )
    demo.add_argument("--redis-url", default=None)
    demo.add_argument("--seed", type=int, default=11)
    demo.add_argument("--serve", type=int, nargs="?", const=8000, metavar="PORT",
                      help="then serve the dashboard on 127.0.0.1:PORT (default 8000) to user `demo`, who owns the demo's model")  # fmt: skip
    demo.set_defaults(handler=_demo)


def _step(text: str) -> None:
    print(f"==> {text}", flush=True)


def _demo(args: argparse.Namespace) -> int:
    from research import sweep, training
    from research.leaderboard import load
    from research.synthetic import generate
    from replay.gate import publish

    started = time.perf_counter()
    cal = CALENDARS["us_equities"]
    with workspace() as space:
        home = space.home
        _step(f"synthetic market: {HISTORY_SESSIONS + LIVE_SESSIONS:,} sessions of daily bars for {', '.join(TICKERS)} in {home}")
        market = generate(TICKERS, "1d", HISTORY_SESSIONS + LIVE_SESSIONS, cal, seed=args.seed, start=date(2019, 1, 2))
        live = {}
        for ticker, (bars, _) in market.items():
            store_bars(home, bars.select(slice(0, HISTORY_SESSIONS)), cal, source=f"synthetic seed {args.seed}")
            live[ticker] = bars.select(slice(HISTORY_SESSIONS, None))
        pack = catalog().get("swingsigma")
        owner = LOCAL
        if args.serve is not None and "demo" not in {user.name for user in space.users()}:
            space.add_user("demo", "pro", actor=actor())
        if args.serve is not None:  # the dashboard's user owns it, named as the server names its users' models
            owner = "demo"
        wanted = {"strategy": "momentum_swing", "instrument": "stocks", "settings": {"ticker": "SPY"}, "variant": "demo",
                  "evaluation": "1d"}  # its synthetic market is daily
        spec = create_model(pack, taken=space.model_names(), **wanted) if owner == LOCAL else \
            users_model(pack, owner, space.model_names(), **wanted)
        space.add_model(spec, actor=actor(), owner=owner)
        _step(f"model {spec.name} (pack {pack.ref}, stocks, universe {', '.join(TICKERS)}); sweeping")
        sweep_id = sweep.start(space, pack, spec, SweepRequest(model=spec.name, universe=TICKERS), actor=actor(),
                               announce=lambda line: print(f"    {line}"))  # fmt: skip
        table, _ = load(space, sweep_id)
        rows = [row for row in table.to_pylist() if row["gate"] != "FAIL"] or table.to_pylist()[:1]
        best = rows[0]
        _step(f"training leaderboard row {best['rank']} ({best['gate']}) as a calibrated ONNX model")
        [trained_id] = training.train(space, pack, spec, sweep_id, [best["rank"]], actor=actor()) if best["gate"] != "FAIL" else \
            _train_anyway(space, pack, spec, sweep_id, best["rank"])
        _paper(space, trained_id, market)
        _, overridden = publish(space, trained_id, actor=actor(), force=True, reason="sigma demo")
        if overridden:
            print(f"    {trained_id} may not go live; published all the same ({'; '.join(overridden)}) to show the flow, "
                  "audited as forced")  # fmt: skip
        _step(f"published {trained_id}")

    url, server = _redis(args.redis_url, home)
    count = _replay(home, url, live)
    if server is not None:
        print(f"the private redis-server (pid {server.pid}) keeps running for a look; stop it with: kill {server.pid}")
    print(f"\n{count} alerts in {time.perf_counter() - started:,.0f} s")
    if args.serve is not None:
        from cli.users import serve

        with workspace() as space:
            token = space.issue_token("demo", actor=actor())
        print(f"\ndashboard: http://127.0.0.1:{args.serve}/  (sign in as demo with this token: {token}; Ctrl-C stops)", flush=True)
        serve(home, host="127.0.0.1", port=args.serve, redis_url=url)
    return 0


def _paper(space, trained_id: str, market: dict) -> None:
    """Paper-trade the model over the history's last sessions and print the trust gate."""
    from datetime import UTC, datetime

    from replay import gate, sim

    bars, _ = next(iter(market.values()))
    first = datetime.fromtimestamp(int(bars.start[HISTORY_SESSIONS - PAPER_SESSIONS]) / 1e9, UTC).date()
    _step(f"paper trading {trained_id} from {first} to the end of the history (`sigma sim run`), fills as a broker would")
    run = sim.start(space, sim.SimRequest(models=[trained_id], start=first), actor=actor())
    run = sim.execute(space.home, run.run_id, announce=lambda line: print(f"    {line}"))
    verdict = gate.judge(space.home, run.run_id)
    s = sim.load(space.home, run.run_id).summary
    print(f"    paper: return {s['total_return']:+.2%}, {s['trades']:.0f} trades, max drawdown {s['max_drawdown']:.2%}; "
          f"the backtest of the same bars: return {verdict.metrics['backtest_return']:+.2%}")  # fmt: skip
    print(f"    trust gate: {verdict.status}")
    for result in verdict.gates:
        print(f"      {result.status:<8} {result.reason}")
    print(f"    report: sigma sim report {run.run_id}")


def _train_anyway(space, pack, spec, sweep_id: str, rank: int) -> list[str]:
    from research import training

    # No row passed the gates on this small market: train the best one all the same, and say so.
    print("    no row passed its gates; training the best row to show the flow, not to trade it")
    grid = training.GRID | (dict(pack.training.grid) if pack.training else {})
    request = training.TrainRequest(sweep=sweep_id, rank=rank, grid=grid)
    return [training._register(space, spec, request, training.fit_configuration(space.home, pack, spec, request), actor())]


def _redis(given: str | None, home: Path) -> tuple[str | None, RedisServer | None]:
    url = given or os.environ.get("REDIS_URL")
    if url:
        return url, None
    if not RedisServer.installed():
        return None, None
    try:
        server = RedisServer(home / "redis").start()
    except RuntimeError:
        return None, None
    return server.url, server


def _bars_in_time_order(live: dict) -> list[dict]:
    rows = []
    for ticker, bars in live.items():
        for t in range(len(bars)):
            rows.append({"ticker": ticker, "start": int(bars.start[t]), "end": int(bars.end[t]), "open": float(bars.open[t]),
                         "high": float(bars.high[t]), "low": float(bars.low[t]), "close": float(bars.close[t]),
                         "volume": float(bars.volume[t])})  # fmt: skip
    return sorted(rows, key=lambda row: (row["end"], row["ticker"]))


def _replay(home: Path, url: str | None, live: dict) -> int:
    from bytewax.testing import run_main

    from flows.live import TICKS, flow
    from flows.sinks import ALERTS

    rows = _bars_in_time_order(live)
    if url is None:
        path = home / "demo-bars.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        alerts = home / "alerts.jsonl"
        _step(f"no Redis (no REDIS_URL, no redis-server on the PATH): replaying {len(rows):,} bars from {path}; "
              f"alerts go to the local stream file {alerts}")  # fmt: skip
        run_main(flow(home, None, source="files", files=[path], kind="bars", alert_file=alerts))
        count = sum(1 for _ in alerts.open()) if alerts.exists() else 0
        print(f"look: {alerts}")
        return count
    client = redis.Redis.from_url(url)
    _step(f"pushing {len(rows):,} bars of the last {LIVE_SESSIONS} sessions onto {TICKS} at {url}")
    client.delete(TICKS)
    pipe = client.pipeline(transaction=False)
    for row in rows:
        pipe.xadd(TICKS, {"bar": json.dumps(row)})
    pipe.xadd(TICKS, {"eof": 1})
    pipe.execute()
    _step("running the live dataflow over the stream")
    run_main(flow(home, url, group=f"demo-{int(time.time())}"))
    count = client.xlen(ALERTS)
    print(f"look: sigma alerts tail --redis-url {url}   (or redis-cli -u {url} XRANGE '{ALERTS}' - +)")
    print(f"      sigma health --redis-url {url}")
    for _, fields in client.xrange(ALERTS, count=3):
        print("    " + fields[b"alert"].decode()[:160] + " ...")
    return count
