"""The ``sigma`` command: packs, indicators, models, market data and sweeps from the shell.

Every command's module is imported to build the parser, so a module imports
`research` inside the handlers that use it: ``sigma run`` then starts without the
training stack (XGBoost, scikit-learn, the ONNX converters), as a test holds.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cli import data, demo, indicators, live, models, packs, sim, sweep, train
from engine.errors import SigmaError

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args) or 0
    except SigmaError as error:
        print(f"sigma: error: {error}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `sigma ... | head` closed the pipe: not an error
        return 0
