"""Bytewax recovery stores, stamped with the layout of the state they hold.

Each step snapshots its state as `engine.snapshot` bytes, which carry the state's
layout version; Bytewax pickles only those bytes. A store made here carries
``sigma-layout.json``: the layout (every state class with its fields in order, the
Bytewax version). ``prepare`` resumes a store of this code's layout, whatever else
changed in the code, so a deploy keeps the live state (bars, indicators, positions,
cooldowns, daily counts). A store of another layout is refused before the flow
starts, with what changed and the way out: delete the folder (or point --recovery
at a new one) and the flow replays from the source's start.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
from bytewax.recovery import init_db_dir

import flows.steps  # noqa: F401  (registers the steps' state classes: the layout covers them only once imported)
from engine.errors import ConfigError
from engine.snapshot import Layout, layout

__all__ = ["prepare", "STAMP"]

STAMP = "sigma-layout.json"
_CODE_STAMP = "sigma-code.json"  # what stores written before layout stamps carry: a hash of the code
_FIX = "delete the folder to start fresh (the flow then replays from the source's start), or point --recovery at a new one"


def prepare(folder: Path, partitions: int) -> None:
    """Create a stamped store of ``partitions`` partitions in ``folder``, or check the layout of the one there."""
    folder = Path(folder)
    stamp = folder / STAMP
    current = layout()
    if any(folder.glob("part-*.sqlite3")):
        if not stamp.exists():
            if (folder / _CODE_STAMP).exists():
                raise ConfigError("recovery", f"the recovery store in {folder} predates layout stamps (it is stamped with a "
                                  "hash of the code that wrote it), so its state cannot be read", _FIX)  # fmt: skip
            raise ConfigError("recovery", f"{folder} holds a recovery store without a Sigma layout stamp", _FIX)
        written = msgspec.convert(json.loads(stamp.read_text())["layout"], Layout)
        if written.version != current.version:
            raise ConfigError("recovery", f"the recovery store in {folder} holds state of another layout ({written.version}; "
                              f"this code's is {current.version}): {'; '.join(current.changes(written))}", _FIX)  # fmt: skip
        return
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)  # live state: the owner's alone
    init_db_dir(folder, partitions)
    for part in folder.glob("part-*.sqlite3"):
        part.chmod(0o600)
    stamp.write_text(json.dumps({"layout": msgspec.to_builtins(current), "partitions": partitions}, indent=1) + "\n")
