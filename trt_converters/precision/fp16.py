"""FP32 ONNX -> mixed FP16 ONNX by ModelOpt AutoCast (for recurrent graphs, a second try keeps the recurrent
layers in FP32).

onnxconverter-common is not a fallback: on DeBERTa (onnxconverter-common 1.16) its graph did not load in
ONNX Runtime (a Cast left at float32 whose output it typed float16, and after fixing that, a Div binding
float16 and float32), so it could only ever add a rejected candidate.

Constants are folded first: a folded -3.4e38 attention-mask constant is then one initializer that
AutoCast's `init_max` check keeps in FP32, instead of a chain that overflows to -inf and then NaN in
FP16 (docs/design.md, Precision: DeBERTa-v2's attention mask). Each candidate graph is run in a child
ONNX Runtime process (a native crash there must not end the caller) and compared with the FP32 graph
before it is accepted.
"""

from __future__ import annotations

import collections
from pathlib import Path

from trt_converters.errors import StageError
from trt_converters.onnx_files import save_model
from trt_converters.precision.graph_shapes import infer_shapes
from trt_converters.progress import autocast_seconds, heartbeat

# Kept in FP32: reductions and normalizations accumulate over many elements, exp/log/pow overflow
# FP16's 65504 range first.
SENSITIVE_OP_TYPES = [
    "LayerNormalization", "GroupNormalization", "InstanceNormalization", "BatchNormalization",
    "RMSNormalization", "LpNormalization", "Softmax", "LogSoftmax",
    "ReduceMean", "ReduceSum", "ReduceSumSquare", "ReduceL2", "ReduceLogSumExp", "Pow", "Sqrt", "Exp", "Log",
]
# ONNX Runtime CPU crashed (SIGSEGV) on FP16 graphs of an LSTM line recognizer unless the recurrent
# layers and the data movement around them stayed FP32 (measured on CRNN: excluding LSTM alone still crashed).
RECURRENT_OP_TYPES = ["LSTM", "GRU", "RNN"]
RECURRENT_NEIGHBOUR_OP_TYPES = ["Slice", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat",
                                "ConstantOfShape", "Shape", "Gather"]


def fold_constants(model):
    """Constant-folded copy of an ONNX ModelProto with fresh shape inference (stale value_info cleared)."""
    import onnx
    import onnx_graphsurgeon as gs

    graph = gs.import_onnx(model)
    graph.fold_constants().cleanup().toposort()
    folded = gs.export_onnx(graph)
    folded.ir_version = model.ir_version
    return infer_shapes(folded)


def autocast_fp16(load_folded, work_dir: Path, reference_inputs: dict, extra_fp32_ops: tuple = ()):
    """ModelOpt AutoCast to FP16 with the graph's IO types kept and SENSITIVE_OP_TYPES in FP32, in bounded memory
    (autocast_bounded.py). `load_folded()` gives the constant-folded FP32 graph (each try consumes one).

    AutoCast runs the FP32 graph to keep nodes with large values in FP32 on `reference_inputs` (valid ids, masks
    with padding from the IO spec) instead of its default random inputs in [-1, 1].
    """
    import logging

    from trt_converters.precision.autocast_bounded import convert_fp16

    logging.getLogger("modelopt").setLevel(logging.WARNING)
    folded = [load_folded()]  # handed over whole: convert_fp16 drops the weights this frame would otherwise keep
    size = (len(folded[0].graph.node), folded[0].ByteSize() / 1e6)

    def convert(standalone_types: bool):
        return convert_fp16(lambda: folded.pop() if folded else load_folded(), reference_inputs, work_dir=work_dir, standalone_types=standalone_types,
                            op_types_to_exclude=list(SENSITIVE_OP_TYPES) + list(extra_fp32_ops))

    # AutoCast re-infers types several times; ONNX shape inference serializes the whole graph, weights included,
    # each time, while its standalone type inference walks only the nodes and gave the same nodes, casts and
    # initializers on RoBERTa-base. ONNX inference stays the fallback for graphs the walk cannot type.
    with heartbeat("FP16 by ModelOpt AutoCast", autocast_seconds(*size)):
        try:
            return convert(True)
        except Exception:  # noqa: BLE001 - any failure of the fast path is retried the way AutoCast does by default
            return convert(False)


def ops_kept_in_fp32(model) -> dict[str, int]:
    """Op type -> how many nodes compute in FP32 (a float32 output), Casts and shape plumbing aside."""
    import onnx

    inferred = infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)}
    plumbing = {"Cast", "Shape", "Constant", "Identity", "Reshape", "Unsqueeze", "Squeeze", "Gather", "Concat",
                "Transpose", "Slice", "Expand", "Flatten", "QuantizeLinear", "DequantizeLinear"}
    counts: collections.Counter = collections.Counter()
    for node in inferred.graph.node:
        if node.op_type not in plumbing and any(types.get(o) == onnx.TensorProto.FLOAT for o in node.output):
            counts[node.op_type] += 1
    return dict(sorted(counts.items()))


def describe_fp32_ops(counts: dict[str, int]) -> str:
    if not counts:
        return "no compute ops kept in FP32"
    return "kept in FP32: " + ", ".join(f"{op} x{n}" for op, n in counts.items())


def lower_fp16(fp32_onnx: Path, out_path: Path, *, check_inputs: dict, work_dir: Path,
               check: tuple | None = None) -> tuple[list[str], list[dict] | None]:
    """Writes the FP16 graph to `out_path`; returns notes (which converter, which ops stayed FP32) and, with
    `check` (input sets, their reference outputs, the budget), the kept graph's outputs on those input sets:
    candidates are then judged by the caller's verification data and need not be run again to verify them."""
    import shutil

    import onnx

    from trt_converters.onnx_runner import run_onnx_model
    from trt_converters.precision.diagnose import check_candidate

    def load_folded():
        return fold_constants(onnx.load(str(fp32_onnx)))

    if check is not None:
        input_sets, reference, budget = check
    else:
        input_sets, reference, budget = [check_inputs], run_onnx_model(Path(fp32_onnx), [check_inputs]), "fp16"
        _require_finite(reference[0])
    notes: list[str] = []
    attempts = []

    def converters():  # a generator: the second try is looked for only when the first is not kept
        yield "ModelOpt AutoCast", lambda: autocast_fp16(load_folded, work_dir, check_inputs)
        if _has_recurrent_layers(fp32_onnx):
            yield "ModelOpt AutoCast with recurrent layers in FP32", lambda: autocast_fp16(
                load_folded, work_dir, check_inputs, tuple(RECURRENT_OP_TYPES + RECURRENT_NEIGHBOUR_OP_TYPES))

    for name, convert in converters():
        try:
            candidate = convert()
        except Exception as exc:  # converters raise anything; the fallback decides
            notes.append(f"{name} failed ({type(exc).__name__}: {_first_line(exc)})")
            continue
        candidate_path = work_dir / f"candidate-{len(attempts)}.onnx"
        save_model(candidate, candidate_path)
        kept_in_fp32 = ops_kept_in_fp32(candidate)
        del candidate  # the check runs the saved file in a child process
        verdict = check_candidate(candidate_path, input_sets, reference, budget)
        attempts.append((name, kept_in_fp32, verdict, candidate_path))
        if verdict.passed:
            break
        notes.append(f"{name} graph rejected: {verdict.reason}")
    usable = [a for a in attempts if a[2].ran]
    if not usable:
        raise StageError("FP16 lowering failed with every converter: " + "; ".join(notes))
    name, kept_in_fp32, verdict, path = max(usable, key=lambda a: (a[2].passed, a[2].cosine))
    for produced in (path, path.with_name(path.name + ".data")):  # saved for the check already
        if produced.exists():
            shutil.move(str(produced), str(out_path.with_name(out_path.name + produced.name[len(path.name):])))
    notes.insert(0, f"FP16 by {name} (constants folded first)")
    notes.append(describe_fp32_ops(kept_in_fp32))
    return notes, (verdict.outputs if check is not None else None)


def _has_recurrent_layers(fp32_onnx: Path) -> bool:
    import onnx

    graph = onnx.load(str(fp32_onnx), load_external_data=False).graph
    return any(node.op_type in RECURRENT_OP_TYPES for node in graph.node)


def _require_finite(outputs: dict) -> None:
    """FP16 candidates are judged against the FP32 graph: a NaN/inf there leaves nothing to judge against."""
    import numpy as np

    from trt_converters.verify import non_finite_reference_message

    for name, array in outputs.items():
        bad = int((~np.isfinite(np.asarray(array, dtype=np.float64))).sum())
        if bad:
            raise StageError("FP16 lowering: " + non_finite_reference_message(name, bad, "the FP32 graph",
                                                                              where=" on the check inputs"))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else ""
