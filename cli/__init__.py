"""The ``sigma`` command: packs, indicators, models, market data and sweeps from the shell.

Every command's module is imported to build the parser, so a module imports
`research` inside the handlers that use it: ``sigma run`` then starts without the
training stack (XGBoost, scikit-learn, the ONNX converters), as a test holds.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path

import redis

from cli import data, demo, indicators, live, models, packs, sim, sweep, train, users
from engine.errors import SigmaError, printable, redacted

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """argparse that reports a wrong argument in one line (and exits 2), not usage plus a line."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sigma", description="Sigma: streaming trading signals from packs, models and ONNX scoring.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    packs.register(commands)
    indicators.register(commands)
    model_verbs = models.register(commands)
    data.register(commands)
    sweep.register(commands)
    train.register(commands, model_verbs)
    live.register(commands)
    sim.register(commands)
    demo.register(commands)
    users.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``sigma`` command; every failure a user can cause is one line on stderr and a non-zero status."""
    os.umask(0o077)  # the workspace, recovery stores and artifacts are the owner's alone
    args = build_parser().parse_args(argv)
    if args.command in _COMPILING:
        from engine import _jit

        if _jit.cold():
            print(f"sigma: compiling the numba kernels this command uses, once after an install (cached in {_jit.cache_folder()})",
                  file=sys.stderr, flush=True)  # fmt: skip
    try:
        return args.handler(args) or 0
    except SigmaError as error:
        return _fail(str(error), 2)
    except BrokenPipeError:  # `sigma ... | head` closed the pipe: not an error
        return 0
    except redis.AuthenticationError as error:
        return _fail(f"Redis refused the credentials ({error}): check the user and password in --redis-url or REDIS_URL", 2)
    except redis.ConnectionError as error:
        return _fail(f"Redis is unreachable ({error}): start it, or point --redis-url or REDIS_URL at one", 2)
    except redis.RedisError as error:
        return _fail(f"Redis: {error}", 2)
    except OSError as error:  # a file that is missing, unreadable or on a full disk
        return _fail(str(error), 2)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as error:  # a defect: one line here, the whole traceback kept for the bug report
        log = Path(tempfile.gettempdir()) / f"sigma-crash-{os.getpid()}.txt"
        log.write_text(redacted(traceback.format_exc()))
        return _fail(f"internal error: {type(error).__name__}: {error} (traceback in {log}; please report it)", 1)


_COMPILING = frozenset({"sweep", "train", "backtest", "preview", "indicators", "run", "sim", "demo", "models"})
"""Commands that run compiled kernels: the first one after an install says it compiles them."""


def _fail(message: str, status: int) -> int:
    print(f"sigma: error: {printable(redacted(message))}", file=sys.stderr)
    return status
