"""The live flow's import boundary: ``sigma run`` starts without research or the training stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_STACK = ("research", "xgboost", "sklearn", "onnxmltools", "skl2onnx")

# `sigma run` on an empty workspace gets through every import of the run path (the CLI, the dataflow
# factory, the registry, the recovery store) and is refused only when it finds no published model.
_RUN = f"""
import json, sys
from cli import main
code = main(["run", "--source", "files", "--file", "ticks.parquet"])
import flows.live
loaded = sorted(name for name in sys.modules if name.partition(".")[0] in {TRAINING_STACK!r})
print(json.dumps({{"code": code, "loaded": loaded}}))
"""


def test_sigma_run_imports_no_research_module_and_no_training_library(tmp_path):
    env = {**os.environ, "SIGMA_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _RUN], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert "no published model" in done.stderr, done.stderr
    result = json.loads(done.stdout.splitlines()[-1])
    assert result == {"code": 2, "loaded": []}
