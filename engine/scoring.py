"""Scoring: a trained model's ONNX graph and the manifest that is its serving contract.

A trained model is exported as one ONNX graph that maps the feature vector (float32,
in the manifest's order) to the calibrated probability that the strategy's trade
pays: the XGBoost trees, then the calibrator as a few arithmetic nodes. The manifest
beside it says what the graph expects (feature names and order, dtype, the bars an
indicator needs before it is warm) and what produced it (lineage, data range,
library versions, metrics). A `Scorer` is bound to its manifest: it refuses a feature
layout that does not match, with an error that says which part, and then scores
vectors with no further checks on the hot path.

Trained models are loaded only through the workspace (`Workspace.load_trained`),
which checks the manifest and the ONNX bytes against the hashes sealed at training
first; nothing here reads a pickle.
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
import numpy as np
import onnxruntime

from engine.errors import SigmaError
from engine.gates import PolicyCheck
from engine.schemas import Lineage

__all__ = ["Manifest", "Calibration", "Scorer", "ContractError", "INPUT", "OUTPUT"]

INPUT = "features"
OUTPUT = "probability"


class ContractError(SigmaError, ValueError):
    """A feature vector that does not match the manifest of the model asked to score it."""


class Calibration(msgspec.Struct, frozen=True, kw_only=True):
    """How raw tree probabilities become honest ones: the method and its fitted numbers."""

    method: str
    """``isotonic`` (piecewise linear through ``x`` -> ``y``) or ``sigmoid`` (``1 / (1 + exp(a * logit + b))``)."""
    x: list[float] = []
    y: list[float] = []
    a: float = 0.0
    b: float = 0.0


class Manifest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A trained model's serving contract and its provenance."""

    trained_id: str
    model: str
    features: list[str]
    """Feature names in the order of the graph's input columns."""
    dtype: str = "float32"
    warmup_bars: int
    """Bars the slowest indicator needs before every feature is defined."""
    indicators: dict[str, dict[str, float]]
    cadence: str
    evaluation: str | None = None
    """The cadence of the intervals it decides at inside its bars; None: at each bar's close."""
    adjustment: str | None = None
    """What the prices it was trained on were (`engine.store.ADJUSTMENTS`); None for a model trained before this was
    recorded (its stored history says)."""
    strategy: str
    instrument: dict[str, Any]
    policy: dict[str, Any]
    """The chosen sweep row: its axis values, and ``parameters``, the backtest's policy row by name."""
    hyperparameters: dict[str, float]
    calibration: Calibration
    metrics: dict[str, Any]
    data_range: tuple[str, str]
    versions: dict[str, str]
    lineage: Lineage
    sweep: str
    rank: Annotated[int, msgspec.Meta(ge=1)]
    check: PolicyCheck | None = None
    """The row's policy re-run on this model's calibrated probabilities; None for a model trained before training checked it."""


class Scorer:
    """An ONNX Runtime session bound to one manifest: checks the feature layout once, then scores."""

    __slots__ = ("manifest", "_session", "_width")

    def __init__(self, model: bytes, manifest: Manifest) -> None:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # one scorer per ticker worker: threads would only contend
        self._session = onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.manifest = manifest
        self._width = len(manifest.features)

    def check(self, features: list[str], dtype: np.dtype | str, warmup_bars: int) -> None:
        """Refuse a feature layout that differs from the manifest's, naming what differs."""
        expected = self.manifest.features
        if list(features) != expected:
            missing = [name for name in expected if name not in features]
            extra = [name for name in features if name not in expected]
            if missing or extra:
                raise ContractError(f"feature names differ from the manifest of {self.manifest.trained_id}: "
                                    f"missing {missing}, unexpected {extra}")
            moved = next(i for i, (a, b) in enumerate(zip(features, expected)) if a != b)
            raise ContractError(f"feature order differs from the manifest of {self.manifest.trained_id}: "
                                f"column {moved} is {features[moved]!r}, the model expects {expected[moved]!r}")
        if np.dtype(dtype) != np.dtype(self.manifest.dtype):
            raise ContractError(f"feature dtype {np.dtype(dtype)} differs from the manifest's {self.manifest.dtype}; "
                                f"cast the vector to {self.manifest.dtype}")
        if warmup_bars != self.manifest.warmup_bars:
            raise ContractError(f"features warm up after {warmup_bars} bars but {self.manifest.trained_id} was trained on "
                                f"features that warm up after {self.manifest.warmup_bars}: the indicator parameters differ")

    def score(self, rows: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of a (rows x features) float32 block."""
        if rows.dtype != np.float32 or rows.ndim != 2 or rows.shape[1] != self._width:
            raise ContractError(f"expected a (rows x {self._width}) float32 block, got {rows.shape} {rows.dtype}")
        return self._session.run([OUTPUT], {INPUT: rows})[0][:, 0]
