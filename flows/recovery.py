"""Bytewax recovery stores, stamped with the code that wrote them.

Bytewax pickles step state into its recovery partitions, so a store written by other
code (a changed state class, another Bytewax) may fail mid-run with a pickle
traceback, or silently resume wrong. A store made here carries ``sigma-code.json``,
a hash of the source files whose objects live in the state and of the Bytewax
version; ``prepare`` refuses a store whose stamp differs, with the way out.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

from bytewax.recovery import init_db_dir

from engine.errors import ConfigError

__all__ = ["code_version", "prepare", "STAMP"]

STAMP = "sigma-code.json"
_ROOT = Path(__file__).resolve().parent.parent
_STATE_SOURCES = ("engine", "flows")  # where the classes of pickled step state are defined


def code_version() -> str:
    """A hash of the engine and flow sources and the Bytewax version: what a recovery store depends on."""
    digest = hashlib.sha256(f"bytewax {version('bytewax')}\n".encode())
    for folder in _STATE_SOURCES:
        for path in sorted((_ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def prepare(folder: Path, partitions: int) -> None:
    """Create a stamped store of ``partitions`` partitions in ``folder``, or check the stamp of the one there."""
    folder = Path(folder)
    stamp = folder / STAMP
    current = code_version()
    if any(folder.glob("part-*.sqlite3")):
        if not stamp.exists():
            raise ConfigError("recovery", f"{folder} holds a recovery store without a Sigma code stamp",
                              "delete the folder to start from scratch, or point --recovery at a new one")  # fmt: skip
        written = json.loads(stamp.read_text())["code"]
        if written != current:
            raise ConfigError("recovery", f"the recovery store in {folder} was written by another version of Sigma "
                              f"(code {written[:12]}, this is {current[:12]}); its state cannot be trusted",
                              "delete the folder to start from scratch (the flow then replays from the source's start), "
                              "or run the version that wrote it")  # fmt: skip
        return
    folder.mkdir(parents=True, exist_ok=True)
    init_db_dir(folder, partitions)
    stamp.write_text(json.dumps({"code": current, "partitions": partitions}) + "\n")
