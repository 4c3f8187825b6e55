"""Checks and diagnoses a lowered graph against its FP32 source, both run in child ONNX Runtime processes.

Q/DQ graphs run with ONNX Runtime's QDQ fusion off (`session.disable_quant_qdq`): fused, ONNX Runtime
computes them with its own integer kernels, which on AVX2 CPUs without VNNI saturate the int8 x int8
products (measured: max rel error 0.14 on a tiny text model against 0.006 unfused), while TensorRT
accumulates exactly. Unfused, each DequantizeLinear feeds a float op: the arithmetic TensorRT emulates.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import StageError


@dataclass(frozen=True)
class Verdict:
    """How a candidate lowered graph did on the check inputs: did it run, is it within the budget."""

    ran: bool
    passed: bool
    cosine: float
    reason: str = ""


def run_like_tensorrt(model_path: Path, input_sets: list[dict], *, timeout: float = 900.0) -> list[dict]:
    """ONNX Runtime in a child process with QDQ fusion off: the arithmetic TensorRT emulates."""
    from trt_converters.onnx_runner import run_onnx_model

    return run_onnx_model(model_path, input_sets, qdq_fusion=False, timeout=timeout)


def check_candidate(candidate: Path, input_sets: list[dict], references: list[dict], precision: str) -> Verdict:
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets, failure_message

    try:
        outputs = run_like_tensorrt(candidate, input_sets)
    except StageError as exc:
        return Verdict(False, False, float("nan"), str(exc))
    tolerance = DEFAULT_TOLERANCES[precision]
    comparisons = compare_output_sets(references, outputs, tolerance)
    cosine = min(c.cosine for c in comparisons)
    if all(c.passed for c in comparisons):
        return Verdict(True, True, cosine)
    return Verdict(True, False, -1.0 if math.isnan(cosine) else cosine,
                   failure_message(f"{candidate.name} on ONNX Runtime", comparisons, tolerance))


def first_divergence(fp32_onnx: Path, lowered_onnx: Path, inputs: dict, *, tolerance=None) -> str | None:
    """Where the lowered graph's intermediate tensors first leave the budget, walking the FP32 graph in order.

    Every float tensor that both graphs compute under the same name becomes an extra output; both graphs run
    once on `inputs`. The budget is the lowered precision's default (INT8 when the graph holds Q/DQ nodes)
    unless `tolerance` is given. Returns one line, or None when no shared tensor leaves the budget.
    """
    import numpy as np
    import onnx

    from trt_converters.verify import DEFAULT_TOLERANCES, compare_arrays

    reference_model = onnx.load(str(fp32_onnx))
    lowered_model = onnx.load(str(lowered_onnx))
    if tolerance is None:
        quantized = any(n.op_type == "QuantizeLinear" for n in lowered_model.graph.node)
        tolerance = DEFAULT_TOLERANCES["int8" if quantized else "fp16"]
    reference_tensors = _float_tensors(reference_model)
    lowered_tensors = _float_tensors(lowered_model)
    shared = [name for name in reference_tensors if name in lowered_tensors]
    if not shared:
        return None
    with tempfile.TemporaryDirectory(prefix="trtc-diagnose-") as tmp:
        paths = []
        for label, model, tensors in (("reference", reference_model, reference_tensors),
                                      ("lowered", lowered_model, lowered_tensors)):
            path = Path(tmp) / f"{label}.onnx"
            _save_with_outputs(model, {name: tensors[name] for name in shared}, path)
            paths.append(path)
        reference = run_like_tensorrt(paths[0], [inputs])[0]
        lowered = run_like_tensorrt(paths[1], [inputs])[0]
    producers = {out: node for node in reference_model.graph.node for out in node.output}
    for position, name in enumerate(shared, start=1):
        ref, low = reference.get(name), lowered.get(name)
        if ref is None or low is None or np.shape(ref) != np.shape(low):
            continue
        if np.asarray(low).dtype == np.float16:
            # float32's lowest value (attention masks) is -inf in FP16 and harmless there: compare in FP16's range.
            ref, low = np.clip(ref, -65504, 65504), np.clip(low.astype(np.float32), -65504, 65504)
        result = compare_arrays(name, ref, low, tolerance, matching_non_finite_ok=True)
        if not result.passed:
            node = producers.get(name)
            where = f"{node.op_type} node {node.name!r}" if node is not None else "a graph input"
            finite = "non-finite values, " if not np.isfinite(np.asarray(low, dtype=np.float64)).all() else ""
            return (f"first divergence at tensor {name!r} (output of {where}, {position} of {len(shared)} compared "
                    f"tensors): {finite}max rel error {result.max_rel_error:.3g}, cosine {result.cosine:.6f}")
    return None


def _float_tensors(model) -> dict:
    """Node outputs with a float type after shape inference, in graph order: name -> elem_type."""
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    known = {v.name: v.type.tensor_type.elem_type for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
    floats = {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    tensors = {}
    for node in inferred.graph.node:
        for output in node.output:
            if output and known.get(output) in floats:
                tensors[output] = known[output]
    return tensors


def _save_with_outputs(model, tensors: dict, path: Path) -> None:
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    existing = {o.name for o in copy.graph.output}
    for name, elem_type in tensors.items():
        if name not in existing:
            copy.graph.output.append(onnx.helper.make_tensor_value_info(name, elem_type, None))
    onnx.save(copy, str(path))

