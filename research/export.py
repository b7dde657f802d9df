"""ONNX export: the trees and the calibrator as one graph, checked against the native model.

onnxmltools converts the XGBoost classifier to a ``TreeEnsembleClassifier``; the
calibrator is appended as arithmetic nodes on its positive-class column, so the graph
maps ``features`` (rows x F, float32) to ``probability`` (rows x 1): one file, one
load, nothing to keep in step. Isotonic calibration is written as a sum of clipped
segments, ``y0 + sum(slope_k * (clip(p, x_k, x_k+1) - x_k))``, which is `numpy.interp`
inside the fitted range and flat outside it, as the native calibrator is.

`verify` runs the exported graph in ONNX Runtime against the native probabilities
and raises with the largest difference when it exceeds the tolerance.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxmltools
from onnx import TensorProto, helper, numpy_helper
from onnxmltools.convert.common.data_types import FloatTensorType

from engine.errors import SigmaError
from engine.scoring import INPUT, OUTPUT, Calibration, Manifest, Scorer
from research.calibration import EPSILON

__all__ = ["to_onnx", "verify", "TOLERANCE", "ExportError"]

TOLERANCE = 1e-5
_OPSET = 15  # the highest onnxmltools' XGBoost converter supports


class ExportError(SigmaError):
    """An exported graph that does not reproduce its native model."""


def to_onnx(classifier, width: int, calibration: Calibration) -> bytes:
    """The ONNX bytes of an XGBoost classifier followed by its calibrator."""
    model = onnxmltools.convert_xgboost(classifier, initial_types=[(INPUT, FloatTensorType([None, width]))], target_opset=_OPSET)
    graph = model.graph
    graph.name = "sigma"  # the converter names it with a random uuid: the same model must give the same bytes
    probabilities = next(output.name for output in graph.output if output.name != "label")
    constants: list[onnx.TensorProto] = []

    def constant(name: str, value, dtype=np.float64) -> str:
        constants.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    # The calibrator computes in float64: a steep isotonic step would magnify float32 rounding past the tolerance.
    nodes = [
        helper.make_node("Slice", [probabilities, constant("one", [1], np.int64), constant("two", [2], np.int64),
                                   constant("axis", [1], np.int64)], ["positive"]),
        helper.make_node("Cast", ["positive"], ["raw"], to=TensorProto.DOUBLE),
    ]  # fmt: skip
    if calibration.method == "isotonic":
        x, y = np.asarray(calibration.x), np.asarray(calibration.y)
        keep = np.diff(x) > 0  # a zero-width step has no slope
        low, high = x[:-1][keep], x[1:][keep]
        slope = (y[1:] - y[:-1])[keep] / (high - low)
        if not len(low):  # a constant calibrator
            low, high, slope = np.array([0.0]), np.array([1.0]), np.array([0.0])
        nodes += [
            helper.make_node("Min", ["raw", constant("high", high)], ["capped"]),
            helper.make_node("Max", ["capped", constant("low", low)], ["clipped"]),
            helper.make_node("Sub", ["clipped", "low"], ["covered"]),
            helper.make_node("Mul", ["covered", constant("slope", slope)], ["rises"]),
            helper.make_node("ReduceSum", ["rises", constant("columns", [1], np.int64)], ["rise"], keepdims=1),
            helper.make_node("Add", ["rise", constant("start", [y[0] if len(y) else 0.0])], ["calibrated"]),
        ]
    else:
        nodes += [
            helper.make_node("Clip", ["raw", constant("epsilon", EPSILON), constant("ceiling", 1.0 - EPSILON)], ["bounded"]),
            helper.make_node("Sub", [constant("unit", 1.0), "bounded"], ["complement"]),
            helper.make_node("Div", ["bounded", "complement"], ["odds"]),
            helper.make_node("Log", ["odds"], ["logit"]),
            helper.make_node("Mul", ["logit", constant("a", calibration.a)], ["scaled"]),
            helper.make_node("Add", ["scaled", constant("b", calibration.b)], ["shifted"]),
            helper.make_node("Neg", ["shifted"], ["negated"]),
            helper.make_node("Sigmoid", ["negated"], ["calibrated"]),
        ]
    nodes.append(helper.make_node("Cast", ["calibrated"], [OUTPUT], to=TensorProto.FLOAT))
    graph.node.extend(nodes)
    graph.initializer.extend(constants)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, 1]))
    if not any(opset.domain in ("", "ai.onnx") for opset in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", _OPSET))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def verify(model: bytes, manifest: Manifest, rows: np.ndarray, native: np.ndarray) -> float:
    """The largest |ONNX - native| probability over ``rows``; `ExportError` above `TOLERANCE`."""
    scored = Scorer(model, manifest).score(np.ascontiguousarray(rows, dtype=np.float32))
    gap = float(np.max(np.abs(scored - native))) if len(rows) else 0.0
    if not gap <= TOLERANCE:
        raise ExportError(f"the ONNX graph of {manifest.trained_id} differs from the native model by {gap:.2e} "
                          f"(tolerance {TOLERANCE:.0e}) on {len(rows):,} validation rows; the export is not trusted")
    return gap
