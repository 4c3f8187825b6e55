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
    outputs: list | None = None


def run_like_tensorrt(model_path: Path, input_sets: list[dict], *, timeout: float = 900.0) -> list[dict]:
    """ONNX Runtime in a child process with QDQ fusion off: the arithmetic TensorRT emulates."""
    from trt_converters.onnx_runner import run_onnx_model

    return run_onnx_model(model_path, input_sets, qdq_fusion=False, timeout=timeout)


def check_candidate(candidate: Path, input_sets: list[dict], references: list[dict], budget) -> Verdict:
    """`budget`: a Tolerance, or the name of a precision whose default budget applies."""
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets, failure_message

    try:
        outputs = run_like_tensorrt(candidate, input_sets)
    except StageError as exc:
        return Verdict(False, False, float("nan"), str(exc))
    tolerance = DEFAULT_TOLERANCES[budget] if isinstance(budget, str) else budget
    comparisons = compare_output_sets(references, outputs, tolerance)
    cosine = min(c.cosine for c in comparisons)
    if all(c.passed for c in comparisons):
        return Verdict(True, True, cosine, outputs=outputs)
    return Verdict(True, False, -1.0 if math.isnan(cosine) else cosine,
                   failure_message(f"{candidate.name} on ONNX Runtime", comparisons, tolerance), outputs=outputs)


# A tensor's error is "out of line" when it is this many times the largest error of the tensors it is computed
# from, by cosine distance and by relative error together; errors below the floors count as the floors.
JUMP_COSINE, JUMP_REL = 10.0, 3.0
FLOOR_COSINE, FLOOR_REL = 1e-6, 1e-3
# ... and the jump must matter: at least this fraction of the worst cosine distance in the graph.
SIGNIFICANT = 0.05


@dataclass
class Divergence:
    tensor: str
    node_name: str | None
    node_type: str | None
    position: int
    compared: int
    cosine: float
    max_rel_error: float
    inherited_cosine: float
    inherited_rel_error: float
    non_finite: bool
    action: str

    def describe(self) -> str:
        where = f"{self.node_type} node {self.node_name!r}" if self.node_type else "a graph input"
        finite = "non-finite values, " if self.non_finite else ""
        return (f"first divergence at tensor {self.tensor!r} (output of {where}, {self.position} of {self.compared} "
                f"compared tensors): {finite}cosine {self.cosine:.6f}, max rel error {self.max_rel_error:.3g}, where "
                f"its inputs had cosine {self.inherited_cosine:.6f}, max rel error {self.inherited_rel_error:.3g}; "
                f"next: {self.action}")


def worst_input_set(references: list[dict], candidates: list[dict]) -> int:
    """The index of the input set on which the candidate is furthest from the reference (lowest cosine, then the
    largest relative error): the set to diagnose, since the others may not diverge at all."""
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_arrays

    def badness(index: int) -> tuple[float, float]:
        results = [compare_arrays(name, ref, candidates[index][name], DEFAULT_TOLERANCES["fp32"])
                   for name, ref in references[index].items() if name in candidates[index]]
        cosine = min((-1.0 if r.cosine != r.cosine else r.cosine for r in results), default=1.0)
        return (-cosine, max((r.max_rel_error for r in results), default=0.0))

    return max(range(len(references)), key=badness)


def first_divergence(fp32_onnx: Path, lowered_onnx: Path, inputs: dict, *, tolerance=None) -> str | None:
    """One line naming the tensor where the lowered graph's error jumps, and what to do; None when nothing jumps."""
    found = diagnose_divergence(fp32_onnx, lowered_onnx, inputs, tolerance=tolerance)
    return found.describe() if found else None


def diagnose_divergence(fp32_onnx: Path, lowered_onnx: Path, inputs: dict, *, tolerance=None) -> Divergence | None:
    """The first tensor whose error is out of line with the tensors it is computed from.

    Every float tensor that both graphs compute under the same name becomes an extra output; both graphs run once
    on `inputs` (in one child process). Walking the FP32 graph in order, each tensor's cosine distance and relative
    error are compared with the worst of its node's inputs: the first tensor where both jump (JUMP_COSINE,
    JUMP_REL) by a significant amount is where the error is made, not merely where it crosses the budget.
    Without such a jump, where some tensor is outside the budget (`tolerance`, else the precision's default), the
    tensor that adds the most cosine distance to that of its inputs.
    """
    import numpy as np
    import onnx

    from trt_converters.onnx_runner import run_onnx_models
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_arrays

    reference_model = onnx.load(str(fp32_onnx))
    lowered_model = onnx.load(str(lowered_onnx))
    quantized = any(n.op_type == "QuantizeLinear" for n in lowered_model.graph.node)
    if tolerance is None:
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
        reference, lowered = (runs[0] for runs in run_onnx_models(paths, [inputs], qdq_fusion=False))
    producers = {out: node for node in reference_model.graph.node for out in node.output}
    errors: dict[str, tuple[float, float, bool, object]] = {}
    for name in shared:
        ref, low = reference.get(name), lowered.get(name)
        if ref is None or low is None or np.shape(ref) != np.shape(low):
            continue
        if np.asarray(low).dtype == np.float16:
            # float32's lowest value (attention masks) is -inf in FP16 and harmless there: compare in FP16's range.
            ref, low = np.clip(ref, -65504, 65504), np.clip(low.astype(np.float32), -65504, 65504)
        result = compare_arrays(name, ref, low, tolerance, matching_non_finite_ok=True)
        non_finite = not np.isfinite(np.asarray(low, dtype=np.float64)).all()
        cosine = -1.0 if result.cosine != result.cosine else result.cosine
        errors[name] = (cosine, min(result.max_rel_error, 1e30), non_finite, result)
    if not errors:
        return None
    worst_distance = max(1.0 - e[0] for e in errors.values())
    compared = [name for name in shared if name in errors]

    def inherited(name: str) -> tuple[float, float]:
        node = producers.get(name)
        sources = [errors[i] for i in (node.input if node is not None else []) if i in errors]
        return (min((e[0] for e in sources), default=1.0), max((e[1] for e in sources), default=0.0))

    chosen = None
    for name in compared:
        cosine, rel, non_finite, _ = errors[name]
        in_cosine, in_rel = inherited(name)
        distance = 1.0 - cosine
        jumps = (distance >= JUMP_COSINE * max(1.0 - in_cosine, FLOOR_COSINE)
                 and rel >= JUMP_REL * max(in_rel, FLOOR_REL) and distance >= SIGNIFICANT * worst_distance)
        if jumps or (non_finite and not np.isfinite(in_rel)):
            chosen = name
            break
    if chosen is None and any(not errors[name][3].passed for name in compared):
        # The error grows gradually, no single jump: the tensor that adds the most cosine distance to its inputs'.
        chosen = max(compared, key=lambda name: (1.0 - errors[name][0]) - (1.0 - inherited(name)[0]))
    if chosen is None:
        return None
    cosine, rel, non_finite, _ = errors[chosen]
    in_cosine, in_rel = inherited(chosen)
    node = producers.get(chosen)
    action = _next_action(node, chosen, lowered_model, reference, quantized, non_finite)
    return Divergence(chosen, node.name if node is not None else None, node.op_type if node is not None else None,
                      compared.index(chosen) + 1, len(compared), cosine, rel, in_cosine, in_rel, non_finite, action)


def _next_action(node, tensor: str, lowered_model, reference: dict, quantized: bool, non_finite: bool) -> str:
    """What to try about the node that makes the error: from how the lowered graph computes it."""
    import numpy as np
    from onnx import numpy_helper

    if node is None:
        return "the graph input itself differs: check the inputs given to both graphs"
    lowered_node = next((n for n in lowered_model.graph.node if tensor in n.output), None)
    producers = {out: n for n in lowered_model.graph.node for out in n.output}
    initializers = {i.name: i for i in lowered_model.graph.initializer}
    dequantized = [producers[i] for i in (lowered_node.input if lowered_node is not None else [])
                   if i in producers and producers[i].op_type == "DequantizeLinear"]
    if quantized and dequantized:
        for dq in dequantized:
            q = producers.get(dq.input[0])
            if q is None or q.op_type != "QuantizeLinear" or q.input[0] not in reference or q.input[1] not in initializers:
                continue
            values = np.abs(np.asarray(reference[q.input[0]], dtype=np.float32))
            scale = float(np.max(numpy_helper.to_array(initializers[q.input[1]])))
            limit = 127.0 * scale
            clipped = float((values > limit * 1.01).mean())
            if clipped > 0:
                return (f"{clipped:.2%} of {q.input[0]!r} lies beyond its calibrated INT8 range (|x| <= {limit:.3g}, "
                        f"seen {values.max():.3g}): calibrate on more data like these inputs (--calib-data), or "
                        f"keep {node.name!r} out of INT8 (--int8-search)")
            tail = float(np.percentile(values, 99.9)) if values.size else 0.0
            if tail > 0 and values.max() > 20 * tail:
                return (f"{q.input[0]!r} has outliers ({values.max():.3g} against a 99.9th percentile of {tail:.3g}) "
                        f"that stretch its INT8 step: try --calib-method percentile or entropy, or keep "
                        f"{node.name!r} out of INT8 (--int8-search)")
        return f"keep {node.op_type} node {node.name!r} out of INT8 (--int8-search finds such nodes)"
    if non_finite:
        return f"FP16 overflows in {node.op_type} node {node.name!r}: keep {node.op_type} in FP32"
    low_type = None
    if lowered_node is not None:
        low_type = "FP16" if any("fp16" in o.lower() or "cast" in o.lower() for o in lowered_node.output) else None
    if quantized:
        return (f"{node.op_type} node {node.name!r} is not quantized; its error comes from FP16 or from changed "
                "inputs: try --use-int8 without --use-fp16, or more calibration data")
    return f"{node.op_type} node {node.name!r} loses precision in {low_type or 'FP16'}: keep {node.op_type} in FP32"


def _float_tensors(model) -> dict:
    """Node outputs with a float type after shape inference, in graph order: name -> elem_type."""
    import onnx

    from trt_converters.precision.graph_shapes import infer_shapes

    inferred = infer_shapes(model)
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

