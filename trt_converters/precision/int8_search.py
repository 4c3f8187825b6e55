"""Sensitivity-driven INT8: which quantized nodes to keep in higher precision so the graph meets its budget.

One ModelOpt pass places the Q/DQ nodes; every candidate after that is the same graph with the Q/DQ pairs in
front of some nodes bypassed (the node reads the FP32 tensor or weight the Quantize read), so candidates cost
an ONNX Runtime session each, not a quantizer run. First each node (or, on large graphs, each layer's nodes)
is taken out of INT8 alone to measure how much of the output error it causes; then the most harmful ones are
excluded together, the fewest that meet the budget (binary search over their count), while at least
MIN_INT8_FLOP_FRACTION of the MatMul/Gemm/Conv FLOPs that ModelOpt put in INT8 stay there (beyond that the
graph is no INT8 graph: FP16 serves better).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

COMPUTE_OP_TYPES = ("MatMul", "Gemm", "Conv", "ConvTranspose")
MAX_NODE_CANDIDATES = 64  # more quantized nodes than this: one candidate per layer instead of per node
MIN_INT8_FLOP_FRACTION = 0.5  # of the INT8 FLOPs of the plain INT8 graph
CHECK_SAMPLES = 8
# Readers of a dequantized tensor whose result does not depend on its values.
NOT_COMPUTED = ("QuantizeLinear", "DequantizeLinear", "Shape", "Size")


def budget_ratio(references: list[dict], outputs: list[dict], tolerance) -> float:
    """The worst output's error as a multiple of its budget (<= 1 meets it): abs error over atol + rtol*max|ref|,
    and 1 - cosine over 1 - min_cosine, whichever is larger; infinite for non-finite outputs."""
    from trt_converters.verify import compare_arrays

    worst = 0.0
    for reference, candidate in zip(references, outputs):
        for name, ref in reference.items():
            result = compare_arrays(name, ref, candidate[name], tolerance)
            if result.max_abs_error == float("inf") or result.cosine != result.cosine:
                return float("inf")
            scale = result.max_abs_error / max(result.max_rel_error, 1e-30) if result.max_rel_error else 0.0
            allowed = tolerance.atol + tolerance.rtol * scale
            by_error = result.max_abs_error / allowed if allowed > 0 else (0.0 if result.max_abs_error == 0 else float("inf"))
            by_cosine = (1.0 - result.cosine) / max(1.0 - tolerance.min_cosine, 1e-12)
            worst = max(worst, by_error, by_cosine)
    return worst


def quantized_nodes(model) -> list[str]:
    """Names of the nodes that read a DequantizeLinear output (the nodes computed in INT8), in graph order."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [n.name for n in model.graph.node
            if n.op_type not in NOT_COMPUTED and any(i in dequantized for i in n.input)]


def bypass_quantization(model, node_names: set[str]):
    """A copy of the Q/DQ graph where `node_names` read the tensors their Q/DQ pairs quantized; unused Q/DQ dropped."""
    import onnx
    from onnx import numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    producers = {out: node for node in graph.node for out in node.output}
    initializers = {i.name: i for i in graph.initializer}
    for node in graph.node:
        if node.name not in node_names:
            continue
        for index, name in enumerate(node.input):
            dq = producers.get(name)
            if dq is None or dq.op_type != "DequantizeLinear":
                continue
            q = producers.get(dq.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[index] = q.input[0]
            elif dq.input[0] in initializers:  # weights stored quantized: dequantize them once, here
                node.input[index] = _dequantized_initializer(graph, dq, initializers, numpy_helper)
    _drop_unused(graph)
    return copy


def _dequantized_initializer(graph, dq, initializers, numpy_helper) -> str:
    import numpy as np

    values = numpy_helper.to_array(initializers[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(initializers[dq.input[1]])
    zero = numpy_helper.to_array(initializers[dq.input[2]]).astype(np.float32) if len(dq.input) > 2 and dq.input[2] else 0
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if np.ndim(scale) == 1 and values.ndim > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), np.reshape(zero, shape) if np.ndim(zero) else zero
    name = dq.output[0] + "_float"
    if name not in initializers:
        tensor = numpy_helper.from_array(((values - zero) * scale).astype(scale.dtype), name)
        graph.initializer.append(tensor)
        initializers[name] = tensor
    return name


def _drop_unused(graph) -> None:
    wanted = {o.name for o in graph.output}
    kept = []
    for node in reversed(graph.node):
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not any(o in wanted for o in node.output):
            continue
        kept.append(node)
        wanted.update(node.input)
    if len(kept) != len(graph.node):
        del graph.node[:]
        graph.node.extend(reversed(kept))
        used = [i for i in graph.initializer if i.name in wanted]
        del graph.initializer[:]
        graph.initializer.extend(used)


def layer_key(name: str) -> str:
    """'/bert/encoder/layer.3/attention/self/query/MatMul' -> '/bert/encoder/layer.3': the first numbered part."""
    parts = name.split("/")
    for index, part in enumerate(parts):
        if re.search(r"(^|[._])\d+($|[._])", part):
            return "/".join(parts[:index + 1])
    return name


def compute_flops(model, input_shapes: dict[str, tuple]) -> dict[str, float]:
    """MatMul/Gemm/Conv node name -> FLOPs at `input_shapes` (shape inference with value propagation)."""
    import numpy as np
    import onnx

    from trt_converters.precision.graph_shapes import infer_shapes

    probe = onnx.ModelProto()  # the structure only: inputs get fixed shapes, weights need not be copied
    probe.ir_version = model.ir_version
    probe.opset_import.extend(model.opset_import)
    probe.graph.node.extend(model.graph.node)
    probe.graph.input.extend(model.graph.input)
    probe.graph.output.extend(model.graph.output)
    for initializer in model.graph.initializer:
        if len(initializer.dims) == 0 or int(np.prod(initializer.dims)) <= 1024:
            probe.graph.initializer.append(initializer)
        else:
            probe.graph.input.append(onnx.helper.make_tensor_value_info(initializer.name, initializer.data_type,
                                                                        list(initializer.dims)))
    for graph_input in probe.graph.input:
        if graph_input.name in input_shapes:
            dims = graph_input.type.tensor_type.shape.dim
            for dim, value in zip(dims, input_shapes[graph_input.name]):
                dim.Clear()
                dim.dim_value = int(value)
    try:
        inferred = infer_shapes(probe, data_prop=True)
    except Exception:  # inference fails on some exotic graphs; fall back to weight sizes below
        inferred = probe
    shapes = {}
    for value in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in model.graph.initializer:
        shapes[init.name] = tuple(init.dims)
    flops = {}
    for node in inferred.graph.node:
        if node.op_type not in COMPUTE_OP_TYPES:
            continue
        out = shapes.get(node.output[0])
        a, b = shapes.get(node.input[0]), shapes.get(node.input[1])
        if node.op_type in ("MatMul", "Gemm") and out and a:
            transposed = node.op_type == "Gemm" and any(x.name == "transA" and x.i for x in node.attribute)
            inner = a[0] if transposed else a[-1]
            flops[node.name] = 2.0 * float(np.prod(out)) * inner
        elif node.op_type.startswith("Conv") and out and b:
            flops[node.name] = 2.0 * float(np.prod(out)) * float(np.prod(b[1:]))
        elif b:  # unknown activation shapes: proportional to the weight size
            flops[node.name] = 2.0 * float(np.prod(b))
        else:
            flops[node.name] = 0.0
    return flops


@dataclass
class SearchOutcome:
    model: object
    ratio_before: float
    ratio_after: float
    excluded: list[str]
    int8_flop_fraction: float
    sensitivity: list[tuple[str, float]] = field(default_factory=list)  # (candidate, ratio with it out of INT8)
    met: bool = False
    notes: list[str] = field(default_factory=list)
    outputs: list | None = None  # the kept graph's outputs on the check inputs, when it differs from the input graph


class CandidateEvaluator:
    """Saves candidate graphs and measures them against the FP32 reference on the check inputs, one child per batch."""

    def __init__(self, work_dir: Path, check_inputs: list[dict], references: list[dict], tolerance):
        self.work_dir, self.check_inputs, self.references, self.tolerance = work_dir, check_inputs, references, tolerance
        self.count = 0
        self.last_outputs: list = []

    def ratios(self, models: list) -> list[float]:
        from trt_converters.onnx_runner import run_onnx_models
        from trt_converters.onnx_files import save_model

        paths = []
        for model in models:
            path = self.work_dir / f"search-{self.count}.onnx"
            self.count += 1
            save_model(model, path)
            paths.append(path)
        results = run_onnx_models(paths, self.check_inputs, qdq_fusion=False)
        for path in paths:
            path.unlink(missing_ok=True)
        self.last_outputs = results
        return [budget_ratio(self.references, outputs, self.tolerance) for outputs in results]


def int8_flop_fraction(flops: dict[str, float], quantized: set[str]) -> float:
    total = sum(flops.values())
    return sum(v for k, v in flops.items() if k in quantized) / total if total else 0.0


def search_exclusions(quantized_model, ratio_before: float, evaluator: CandidateEvaluator,
                      flops: dict[str, float], log=lambda message: None, target: float = 1.0) -> SearchOutcome:
    """The fewest, most harmful quantized nodes to keep out of INT8 so the budget ratio drops to <= `target`."""
    nodes = quantized_nodes(quantized_model)
    in_int8 = set(nodes)
    fraction = int8_flop_fraction(flops, in_int8)
    if not nodes:
        return SearchOutcome(quantized_model, ratio_before, ratio_before, [], fraction, met=ratio_before <= target)
    if len(nodes) <= MAX_NODE_CANDIDATES:
        groups = {name: [name] for name in nodes}
    else:
        groups = {}
        for name in nodes:
            groups.setdefault(layer_key(name), []).append(name)
    log(f"INT8 search: measuring {len(groups)} {'nodes' if len(nodes) <= MAX_NODE_CANDIDATES else 'layer groups'} "
        f"one at a time out of INT8")
    keys = list(groups)
    single: list[float] = []
    chunk = max(4, -(-len(keys) // 4))  # a few children, so progress can be told with a time estimate
    started = time.perf_counter()
    for first in range(0, len(keys), chunk):
        part = keys[first:first + chunk]
        single += evaluator.ratios([bypass_quantization(quantized_model, set(groups[k])) for k in part])
        if len(single) < len(keys):
            spent = time.perf_counter() - started
            log(f"INT8 search: {len(single)}/{len(keys)} measured, about "
                f"{spent / len(single) * (len(keys) - len(single)):.0f} s left")
    ranked = sorted(zip(keys, single), key=lambda item: item[1])
    sensitivity = [(k, r) for k, r in ranked]
    harmful = [k for k, r in ranked if r < ratio_before]  # only what helps when taken out
    allowed, out = 0, set()
    for key in harmful:  # the most that may be kept out while MIN_INT8_FLOP_FRACTION of the FLOPs stay INT8
        out |= set(groups[key])
        if int8_flop_fraction(flops, in_int8 - out) < MIN_INT8_FLOP_FRACTION * fraction:
            break
        allowed += 1

    def candidate(count: int):
        out = {n for k in harmful[:count] for n in groups[k]}
        return out, bypass_quantization(quantized_model, out)

    tried: dict[int, tuple[float, object, set]] = {}

    def measure(count: int) -> float:
        if count not in tried:
            out, model = candidate(count)
            tried[count] = (evaluator.ratios([model])[0], model, out, evaluator.last_outputs[0])
        return tried[count][0]

    if allowed == 0:
        why = ("no node lowers the error when kept out of INT8" if not harmful else
               f"keeping {harmful[0]} out of INT8 would leave less than {MIN_INT8_FLOP_FRACTION:.0%} of the INT8 FLOPs")
        return SearchOutcome(quantized_model, ratio_before, ratio_before, [], fraction, sensitivity, met=False,
                             notes=[f"INT8 search: {why}"])
    if measure(allowed) > target:
        ratio, model, out, outputs = tried[allowed]
        met = False
        chosen = allowed
    else:
        low, high = 0, allowed  # invariant: `high` meets the budget, `low` does not (0 is the plain graph)
        while high - low > 1:
            middle = (low + high) // 2
            if measure(middle) <= target:
                high = middle
            else:
                low = middle
        chosen = high
        ratio, model, out, outputs = tried[chosen]
        met = True
    ordered = [n for n in nodes if n in out]
    return SearchOutcome(model, ratio_before, ratio, ordered, int8_flop_fraction(flops, in_int8 - out),
                         sensitivity, met=met, outputs=outputs)
