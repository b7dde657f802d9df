"""Command start-up: `sigma --help`, `sigma packs list` and `import cli`, beside a bare `python -c pass` in the same run.

Each command is a fresh process, as a user's shell starts it; the figure is the median
of ``--repeats`` runs, and the ratio to the bare interpreter is what to compare between
machines. Also listed: the heavy libraries `import cli` loads (none of XGBoost,
scikit-learn, ONNX Runtime or Bytewax should be among them: the commands that need
them import them).

    python -m benchmarks.startup
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks._timing import median_seconds

REPOSITORY = Path(__file__).resolve().parent.parent
HEAVY = ("xgboost", "sklearn", "onnxruntime", "onnxmltools", "skl2onnx", "bytewax", "matplotlib", "pandas", "scipy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    arguments = parser.parse_args()
    home = tempfile.mkdtemp(prefix="sigma-bench-startup-")
    env = {**os.environ, "SIGMA_HOME": home}

    def timed(*command: str) -> float:
        return median_seconds(lambda: subprocess.run([sys.executable, *command], cwd=REPOSITORY, env=env, check=True,
                                                     stdout=subprocess.DEVNULL), arguments.repeats)  # fmt: skip

    bare = timed("-c", "pass")
    print(f"start-up, medians of {arguments.repeats} fresh processes:")
    print(f"  python -c pass (anchor)   {bare * 1e3:7.0f} ms")
    for label, command in (("import cli", ("-c", "import cli")), ("sigma --help", ("-m", "cli", "--help")),
                           ("sigma packs list", ("-m", "cli", "packs", "list"))):  # fmt: skip
        seconds = timed(*command)
        print(f"  {label:<24}  {seconds * 1e3:7.0f} ms  ({seconds / bare:4.1f}x the bare interpreter; aim: well under 1 s)")
    loaded = subprocess.run([sys.executable, "-c", f"import sys, cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"],
                            cwd=REPOSITORY, env=env, capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    print(f"  heavy libraries `import cli` loads: {loaded or 'none'}")


if __name__ == "__main__":
    main()
