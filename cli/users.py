"""``sigma users add|list|token|revoke`` and ``sigma serve``: the server's users, and the server."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from pathlib import Path

from cli._common import actor, print_json, workspace
from engine.errors import ConfigError, redacted
from engine.workspace import default_home


def register(commands: argparse._SubParsersAction) -> None:
    from api.accounts import TIERS

    parser = commands.add_parser("users", help="the users of `sigma serve` and their API tokens")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    add = verbs.add_parser("add", help="add a user and print their first API token (shown once)")
    add.add_argument("name", help="1 to 16 lower-case letters and digits; their models are named <name>_<model>")
    add.add_argument("--tier", default="free", choices=list(TIERS),
                     help="; ".join(f"{name}: {tier.description}" for name, tier in TIERS.items()) + " (default free)")  # fmt: skip
    add.set_defaults(handler=_add)

    listing = verbs.add_parser("list", help="the users, their tiers and live tokens")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(handler=_list)

    token = verbs.add_parser("token", help="issue another API token for a user (shown once; only its hash is kept)")
    token.add_argument("name")
    token.set_defaults(handler=_token)

    revoke = verbs.add_parser("revoke", help="revoke every API token of a user")
    revoke.add_argument("name")
    revoke.set_defaults(handler=_revoke)

    serve = commands.add_parser(
        "serve",
        help="the HTTP API (OpenAPI docs at /docs) on this workspace",
        description="Serves the workspace to its users over HTTP: every route but /healthz needs a token from `sigma users`. "
        "Listens on 127.0.0.1 unless --host says otherwise; for TLS give --ssl-certfile and --ssl-keyfile, or put it "
        "behind a reverse proxy that terminates TLS.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                       help="a browser origin allowed to call the API (CORS is off unless given)")  # fmt: skip
    serve.add_argument("--ssl-certfile", help="TLS certificate (PEM), served by uvicorn itself")
    serve.add_argument("--ssl-keyfile", help="TLS private key (PEM)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes for the sweeps users start (default 1)")
    serve.add_argument("--jobs-redis", metavar="URL", help="keep the job queue on this Redis (default: jobs.db in the workspace)")
    serve.add_argument("--redis-url", default=os.environ.get("REDIS_URL"),
                       help="the live flow's Redis (default REDIS_URL): its alerts are kept in the workspace's history and "
                            "streamed to users; without it the server has no alerts")  # fmt: skip
    serve.set_defaults(handler=_serve)


def _add(args: argparse.Namespace) -> None:
    with workspace() as space:
        space.add_user(args.name, args.tier, actor=actor())
        token = space.issue_token(args.name, actor=actor())
    print(f"added {args.name} ({args.tier}); their API token, shown this once:", file=sys.stderr)
    print(token)


def _list(args: argparse.Namespace) -> None:
    with workspace() as space:
        users = space.users()
    if args.json:
        return print_json(users)
    if not users:
        print("no users yet: add one with `sigma users add NAME --tier pro`")
    for user in users:
        print(f"{user.name:<17} {user.tier:<8} {user.tokens} live token{'s' if user.tokens != 1 else ''}  since {user.created_at[:10]}")


def _token(args: argparse.Namespace) -> None:
    with workspace() as space:
        token = space.issue_token(args.name, actor=actor())
    print(f"a new API token for {args.name}, shown this once:", file=sys.stderr)
    print(token)


def _revoke(args: argparse.Namespace) -> None:
    with workspace() as space:
        revoked = space.revoke_tokens(args.name, actor=actor())
    print(f"revoked {revoked} token{'s' if revoked != 1 else ''} of {args.name}")


def _serve(args: argparse.Namespace) -> None:
    if args.workers < 1:
        raise ConfigError("--workers", f"{args.workers} is not a number of processes", "give 1 or more")
    serve(default_home(), host=args.host, port=args.port, cors_origins=tuple(args.cors_origin), ssl_certfile=args.ssl_certfile,
          ssl_keyfile=args.ssl_keyfile, workers=args.workers, jobs_redis=args.jobs_redis, redis_url=args.redis_url)  # fmt: skip


def serve(home: Path, *, host: str, port: int, cors_origins: tuple[str, ...] = (), ssl_certfile: str | None = None,
          ssl_keyfile: str | None = None, workers: int = 1, jobs_redis: str | None = None, redis_url: str | None = None) -> None:
    """The API and dashboard of ``home`` until stopped, with its job workers and, given ``redis_url``, its alert archive."""
    import multiprocessing

    import uvicorn

    from api.app import create_app
    from api.jobs import Jobs, work

    jobs = Jobs(home, redis_url=jobs_redis)  # makes (or migrates) the workspace before the first request
    workers_process = multiprocessing.get_context("spawn").Process(target=work, args=(home,), name="sigma-jobs",
                                                                   kwargs={"redis_url": jobs_redis, "workers": workers})  # fmt: skip
    workers_process.start()
    stop = threading.Event()
    if redis_url:
        from flows.archive import Archive

        threading.Thread(target=Archive(home, redis_url).run, args=(stop,), name="sigma-alert-archive", daemon=True).start()
    print(f"sigma: serving {home} on http{'s' if ssl_certfile else ''}://{host}:{port} (API docs at /docs), {workers} job "
          f"worker{'s' if workers > 1 else ''}, " + (f"alerts from {redacted(redis_url)}" if redis_url else "no alerts (no --redis-url)"),
          file=sys.stderr)  # fmt: skip
    try:
        uvicorn.run(create_app(home, cors_origins=cors_origins, jobs=jobs, redis_url=redis_url), host=host, port=port,
                    ssl_certfile=ssl_certfile, ssl_keyfile=ssl_keyfile, log_level="warning", access_log=False)  # fmt: skip
    finally:  # a job the workers were running is resumed by the next start (`api.jobs.Jobs.recover`)
        stop.set()
        workers_process.terminate()
        workers_process.join()
