"""FP32 ONNX -> explicit INT8 Q/DQ ONNX with ModelOpt, calibrated on ONNX Runtime CPU.

`int8` keeps the non-quantized layers in FP32; `int8_fp16` puts them in FP16 (ModelOpt's
high_precision_dtype) with the sensitive ops of fp16.py still in FP32. The activation scales are saved
as a TensorRT-style calibration cache (first line a header, then `tensor: <big-endian float32 hex>`);
with a cache made from the same FP32 graph and method (for percentile, the same percentile), ModelOpt takes
the scales from it and the calibration data is not read.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from trt_converters.errors import StageError, UserError
from trt_converters.precision.calibration_cache import (CacheHeader, cache_serves, copy_cache, file_sha256,
                                                        read_cache_header, read_cache_scales, write_cache)
from trt_converters.precision.methods import AUTO_CANDIDATES, DEFAULT_PERCENTILE
from trt_converters.precision.outlier_channels import (channel_ranges, choose_outliers, masked_scales,
                                                       token_mask_input, weight_matmul_inputs)

if TYPE_CHECKING:
    from trt_converters.precision.options import PrecisionOptions
    from trt_converters.precision import LoweringCheck

HISTOGRAM_BINS = 4096


def activation_scales(model) -> dict[str, float]:
    """Tensor name -> scale of every activation QuantizeLinear (weights are re-quantized from the graph)."""
    import numpy as np
    from onnx import numpy_helper

    import re

    initializers = {i.name: i for i in model.graph.initializer}
    constants = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    scales = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in initializers or node.input[0] in constants:
            continue
        # ModelOpt names it <tensor>_scale; its FP16 pass renames the copies <tensor>_scale_1, _scale_2.
        match = re.fullmatch(r"(.+)_scale(?:_\d+)?", node.input[1])
        if match is None or node.input[1] not in initializers:
            continue
        value = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        if value.size == 1:
            scales[match.group(1)] = float(value.reshape(()))
    return scales


def percentile_scales(model, max_scales: dict[str, float], data: dict, batch: int,
                      percentile: float = DEFAULT_PERCENTILE, mask_input: str | None = None) -> dict[str, float]:
    """Scales that clip each activation at the given percentile of |x| over the calibration data (over the
    positions `mask_input` keeps, for tensors laid out [batch, sequence, ...]).

    `max_scales` (from a max calibration) names the activations and sets each histogram's range; the
    percentile's magnitude is turned into a scale with the same ratio ONNX Runtime's max calibrator used.
    """
    import numpy as np

    from trt_converters.precision.outlier_channels import activation_batches

    histograms = {name: np.zeros(HISTOGRAM_BINS, dtype=np.int64) for name in max_scales}
    observed = dict.fromkeys(max_scales, 0.0)
    # ONNX Runtime's scale is about amax / 127.5; twice that range holds every value the max pass saw.
    ranges = {name: max(scale, 1e-12) * 255.0 for name, scale in max_scales.items()}
    for values, kept_positions in activation_batches(model, list(max_scales), data, batch, mask_input):
        for name, magnitude in values.items():
            if kept_positions is not None and magnitude.shape[:2] == kept_positions.shape:
                magnitude = magnitude[kept_positions]
            observed[name] = max(observed[name], float(magnitude.max(initial=0.0)))
            histograms[name] += np.histogram(magnitude, bins=HISTOGRAM_BINS, range=(0.0, ranges[name]))[0]
    scales = {}
    for name, counts in histograms.items():
        total = counts.sum()
        if total == 0 or observed[name] == 0.0:
            scales[name] = max_scales[name]
            continue
        index = int(np.searchsorted(np.cumsum(counts), percentile / 100.0 * total))
        clipped = min(observed[name], (index + 1) * ranges[name] / HISTOGRAM_BINS)
        scales[name] = max_scales[name] * clipped / observed[name]
    return scales


def calibration_shapes(arrays: dict, batch: int) -> str:
    """ModelOpt's per-step shape spec: each input's sample shape with `batch` samples a step."""
    return ",".join(f"{name}:" + "x".join(str(d) for d in (batch, *value.shape[1:])) for name, value in arrays.items())


def parse_shapes(spec: str) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for item in spec.split(","):
        name, _, dims = item.rpartition(":")
        shapes[name] = tuple(int(d) for d in dims.split("x"))
    return shapes


@dataclass
class Int8Outcome:
    notes: list[str]
    details: dict
    check_outputs: list | None = None


@dataclass(frozen=True)
class CalibrationSource:
    """Where quantize_int8 gets its data: `load()` the calibration arrays (called only without a usable cache),
    `synthetic_for_shapes(shapes)` inputs of given shapes (a cache's pass), `opt_batch` the batch of a step."""

    load: Callable[[], dict]
    synthetic_for_shapes: Callable[[dict], dict]
    opt_batch: int


def quantize_int8(fp32_onnx: Path, out_path: Path, options: "PrecisionOptions", *, source: CalibrationSource,
                  work_dir: Path, check: "LoweringCheck", log: Callable[[str], None] = lambda m: None) -> Int8Outcome:
    """Writes the Q/DQ graph (`options.mode` int8 or int8_fp16) to `out_path`.

    The graph is measured against the FP32 graph on up to CHECK_SAMPLES calibration samples under the check's
    tolerance (the INT8 budget): calibration method 'auto' keeps the method with the smallest error;
    `int8_search` None searches exclusions when the budget is missed, True always, False never. With the check's
    input sets (and their reference outputs: the caller's verification data) graphs are measured on those
    instead, and the kept graph's outputs on them are returned, so the caller need not run it again to verify
    it. With `int8_outlier_channels` the MatMul inputs' outlier channels are computed apart (outlier_channels.py).
    """
    import onnx

    from trt_converters.precision.fp16 import fold_constants, save_model
    from trt_converters.precision.int8_search import CHECK_SAMPLES, CandidateEvaluator, compute_flops, \
        int8_flop_fraction, quantized_nodes, search_exclusions
    from trt_converters.verify import DEFAULT_TOLERANCES

    tolerance = check.tolerance or DEFAULT_TOLERANCES["int8"]
    high_precision = "fp16" if options.mode == "int8_fp16" else "fp32"
    method, search, outlier_channels = options.calib_method, options.int8_search, options.int8_outlier_channels
    percentile = options.calib_percentile or DEFAULT_PERCENTILE
    cache = Path(options.calibration_cache) if options.calibration_cache else None
    model_hash = file_sha256(fp32_onnx)
    folded = _at_modelopt_opset(fold_constants(onnx.load(str(fp32_onnx))))
    graph_inputs = [i.name for i in folded.graph.input]
    folded_path = work_dir / "model.onnx"
    notes: list[str] = []
    details: dict = {}

    mask_input = token_mask_input(folded)
    header = read_cache_header(cache) if cache is not None and cache.is_file() else None
    reuse = cache_serves(header, model_hash, method, percentile) and (outlier_channels or not header.outliers)
    candidates: dict[str, Path] = {}
    if reuse:
        shapes = header.shapes
        method = header.method
        outliers = header.outliers
        folded = _split(folded, outliers, folded_path, notes)
        kept_out = _kept_out_nodes(folded)
        # ModelOpt still runs its ONNX Runtime pass once; the activation scales are then replaced by the cache's.
        data = source.synthetic_for_shapes(parse_shapes(shapes))
        notes.append(f"activation scales from calibration cache {cache} ({len(read_cache_scales(cache))} tensors, "
                     f"method {header.describe()}); calibration data not read")
        candidates[method] = work_dir / f"model.{method}.onnx"
        _run_modelopt(folded_path, candidates[method], data=data, method=_modelopt_method(method), shapes=shapes,
                      high_precision=high_precision, cache=cache, exclude_nodes=kept_out)
    else:
        if cache is not None and cache.is_file():
            if header is None or header.model_sha256 != model_hash:
                why = "another FP32 graph"
            elif header.outliers and not outlier_channels:
                why = "outlier channels computed apart (--int8-outlier-channels)"
            else:
                why = f"method {header.describe()}"
            notes.append(f"calibration cache {cache} was made for {why}: recalibrated and rewrote it")
        data = source.load()
        missing = [name for name in graph_inputs if name not in data]
        if missing:
            raise UserError(f"calibration data has no array for graph input(s) {', '.join(missing)}")
        data = {name: data[name] for name in graph_inputs}
        samples = next(iter(data.values())).shape[0]
        batch = max(1, min(source.opt_batch, samples))
        shapes = calibration_shapes(data, batch)
        ranges = channel_ranges(folded, list(weight_matmul_inputs(folded)), data, batch, mask_input)
        outliers = choose_outliers(ranges) if outlier_channels else {}
        folded = _split(folded, outliers, folded_path, notes)
        kept_out = _kept_out_nodes(folded)
        if mask_input:
            notes.append(f"outlier channels and max/percentile scales from the positions {mask_input} keeps "
                         "(padding left out; entropy is ModelOpt's own and counts it)")
        methods = list(AUTO_CANDIDATES) if method == "auto" else [method]
        described = {m: f"percentile {percentile:g}" if m == "percentile" else m for m in methods}
        notes.append(f"INT8 calibration: {', '.join(described.values())} over {samples} samples on ONNX Runtime CPU")
        max_path = None
        started = time.perf_counter()
        for index, name in enumerate(methods):
            candidates[name] = work_dir / f"model.{name}.onnx"
            left = "" if index == 0 else \
                f", about {(time.perf_counter() - started) / index * (len(methods) - index):.0f} s left for calibration"
            log(f"INT8 calibration {index + 1}/{len(methods)} ({described[name]}) with ModelOpt{left}")
            if name == "percentile":
                # A max pass places the Q/DQ nodes; its scales become percentile ones through a cache.
                if max_path is None or high_precision != "fp32":
                    max_path = work_dir / "model.max-fp32.onnx"
                    _run_modelopt(folded_path, max_path, data=data, method="max", shapes=shapes, high_precision="fp32",
                                  cache=None, exclude_nodes=kept_out)
                max_graph = onnx.load(str(max_path))
                scales = percentile_scales(folded, activation_scales(max_graph), data, batch, percentile,
                                           mask_input=mask_input)
                scales_file = work_dir / "percentile.calib"
                write_cache(scales_file, CacheHeader(name, model_hash, shapes, percentile, outliers), scales)
                if high_precision == "fp32" and _rescaled_with_cache(max_graph, scales_file):
                    save_model(max_graph, candidates[name])
                else:
                    # Every activation scale comes from that cache: one batch serves ModelOpt's calibration pass.
                    _run_modelopt(folded_path, candidates[name], data=_first_batch(data, batch), method="max",
                                  shapes=shapes, high_precision=high_precision, cache=scales_file,
                                  exclude_nodes=kept_out)
            else:
                _run_modelopt(folded_path, candidates[name], data=data, method=_modelopt_method(name), shapes=shapes,
                              high_precision=high_precision, cache=None, exclude_nodes=kept_out)
                if name == "max" and high_precision == "fp32":
                    max_path = candidates[name]

    from trt_converters.onnx_runner import run_onnx_models
    from trt_converters.precision.int8_search import budget_ratio

    loaded = {}
    for name, path in candidates.items():
        original = onnx.load(str(path))
        loaded[name] = _unquantized_kept_out_ops(original)
        changed = loaded[name] is not original
        if name == "max" and not reuse and mask_input:  # ModelOpt's maxima include the padded positions
            _replace_activation_scales(loaded[name], masked_scales(activation_scales(loaded[name]), ranges, outliers))
            changed = True
        if changed:
            save_model(loaded[name], path)  # the file is what the check runs
    if check.input_sets is not None:
        check_sets, references = check.input_sets, check.references
        outputs = run_onnx_models(list(candidates.values()), check_sets, qdq_fusion=False)
    else:  # no reference given: the FP32 graph on the first calibration samples is the reference
        check_sets = [{name: value[:CHECK_SAMPLES] for name, value in data.items()}]
        references, *outputs = run_onnx_models([folded_path, *candidates.values()], check_sets, qdq_fusion=False)
    evaluator = CandidateEvaluator(work_dir, check_sets, references, tolerance)
    ratios = {name: budget_ratio(references, result, tolerance) for name, result in zip(candidates, outputs)}
    chosen = min(ratios, key=lambda name: ratios[name])
    if len(ratios) > 1:
        notes.append("calibration auto: error/budget " + ", ".join(f"{k} {v:.3g}" for k, v in ratios.items())
                     + f" -> {chosen}")
    details["calib_method"] = chosen
    details["outlier_channels"] = {name: len(channels) for name, channels in outliers.items()}
    details["padding_left_out_of_ranges"] = bool(mask_input) and not reuse and chosen in ("max", "percentile")
    details["calib_method_errors"] = {k: round(v, 4) for k, v in ratios.items()}
    quantized = loaded[chosen]
    ratio = ratios[chosen]
    kept_outputs = outputs[list(candidates).index(chosen)]
    details["error_over_budget"] = round(ratio, 4)
    check_shapes = {name: value.shape for name, value in check_sets[-1].items()}
    flops = compute_flops(folded, check_shapes)
    in_int8 = set(quantized_nodes(quantized))
    details["int8_flop_fraction"] = round(int8_flop_fraction(flops, in_int8), 4)
    if in_int8 and (search or (search is None and ratio > 1.0)):
        why = "asked for (--int8-search)" if search else f"the INT8 graph misses its budget ({ratio:.3g}x the budget)"
        log(f"INT8 search: {why}")
        # Asked for although the budget is met: aim at half the error (headroom for inputs unlike the samples).
        target = 1.0 if ratio > 1.0 else ratio / 2
        outcome = search_exclusions(quantized, ratio, evaluator, flops, log=log, target=target)
        quantized = outcome.model
        if outcome.outputs is not None:
            kept_outputs = outcome.outputs
        details.update({"search": why, "search_target_error_over_budget": round(target, 4), "excluded_nodes": outcome.excluded, "search_met_budget": outcome.met,
                        "error_over_budget_after_search": round(outcome.ratio_after, 4),
                        "int8_flop_fraction": round(outcome.int8_flop_fraction, 4),
                        "sensitivity": [{"nodes": k, "error_over_budget_without_it": round(r, 4)}
                                        for k, r in outcome.sensitivity[:10]]})
        notes += outcome.notes
        if outcome.excluded:
            notes.append(f"INT8 search kept {len(outcome.excluded)} node(s) out of INT8 ({', '.join(outcome.excluded[:8])}"
                         f"{', ...' if len(outcome.excluded) > 8 else ''}): error {ratio:.3g}x -> "
                         f"{outcome.ratio_after:.3g}x the budget (target {target:.3g}x {'met' if outcome.met else 'missed'})")
        ratio = outcome.ratio_after
    details["met_budget_on_calibration_samples"] = ratio <= 1.0
    pairs = sum(n.op_type == "QuantizeLinear" for n in quantized.graph.node)
    if pairs == 0:
        notes.append("ModelOpt quantized no layer (no quantizable op with a usable shape): the graph stays "
                     f"{'FP16' if high_precision == 'fp16' else 'FP32'}")
    else:
        notes.append(f"{pairs} QuantizeLinear nodes; non-quantized layers in {high_precision.upper()}; "
                     f"{details['int8_flop_fraction']:.0%} of MatMul/Gemm/Conv FLOPs in INT8")
    if cache is not None and not reuse:
        if chosen == "percentile":
            copy_cache(work_dir / "percentile.calib", cache)
        else:
            write_cache(cache, CacheHeader(chosen, model_hash, shapes, outliers=outliers), activation_scales(loaded[chosen]))
        notes.append(f"calibration cache written to {cache}")
    kept = candidates[chosen]
    if quantized is loaded[chosen] and not _has_side_files(kept):
        kept.replace(out_path)  # the file the check ran holds this graph already
    else:
        save_model(quantized, out_path)
    return Int8Outcome(notes, details, kept_outputs if check.input_sets is not None else None)


def _unquantized_kept_out_ops(model):
    """ModelOpt shares one Q/DQ pair among a tensor's readers, so an Add it was told to leave out of INT8 still
    reads the quantized residual when a MatMul reads the same tensor; here such Adds read the tensor itself
    (all-MiniLM-L6-v2: minimum cosine to sentence-transformers 0.873 -> 0.904 over 32 sentences)."""
    from trt_converters.precision.int8_search import bypass_quantization, quantized_nodes

    kinds = {n.name: n.op_type for n in model.graph.node}
    readers = {name for name in quantized_nodes(model) if kinds[name] in OP_TYPES_KEPT_OUT_OF_INT8}
    return bypass_quantization(model, readers) if readers else model


def _at_modelopt_opset(model):
    """The folded graph at the opset ModelOpt's INT8 quantizer requires (19), converted here without the weights:
    ModelOpt would otherwise convert the whole graph and save a copy of it (on RoBERTa-base about 6 s)."""
    from trt_converters.precision.graph_shapes import convert_opset

    try:
        from modelopt.onnx.utils import QDQ_PRECISION_MIN_OPSET
    except ImportError:  # another ModelOpt layout: it converts the graph itself
        return model
    required = QDQ_PRECISION_MIN_OPSET.get("int8")
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if required is None or current is None or current >= required:
        return model
    return convert_opset(model, required)


def _rescaled_with_cache(max_graph, cache: Path) -> bool:
    """Gives the FP32 max graph the cache's activation scales, as ModelOpt does with a cache (its own
    import_scales_from_calib_cache and replace_scale_values), when the cache has a scale for every activation
    QuantizeLinear: ModelOpt, run again on the same graph with that cache, would place the same Q/DQ nodes and
    quantize the same weights, so the run (about 30 s of loads, saves and weight quantization on RoBERTa-base) is
    left out. False (graph untouched) where the cache misses one: ModelOpt then runs."""
    from modelopt.onnx.quantization.calib_utils import import_scales_from_calib_cache
    from modelopt.onnx.quantization.qdq_utils import replace_scale_values

    cached = import_scales_from_calib_cache(str(cache))
    graph = max_graph.graph
    weights = {i.name for i in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    activations = [n.input[1] for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] not in weights]
    if not activations or any(scale not in cached for scale in activations):
        return False
    replace_scale_values(graph, cached)
    return True


def _first_batch(data: dict, batch: int) -> dict:
    return {name: value[:batch] for name, value in data.items()}


def _has_side_files(path: Path) -> bool:
    """Whether the graph's tensors may live beside it (ModelOpt's `<name>_data`, save_model's `<name>.data`)."""
    return any(p != path for p in path.parent.glob(path.name + "?data"))


def _split(folded, outliers: dict[str, list[int]], path: Path, notes: list[str]):
    """The graph with its outlier channels computed apart (outlier_channels.py), saved at `path`."""
    from trt_converters.precision.fp16 import save_model
    from trt_converters.precision.outlier_channels import split_outlier_channels

    if outliers:
        folded = split_outlier_channels(folded, outliers)
        count = sum(len(c) for c in outliers.values())
        notes.append(f"{count} outlier channel(s) of {len(outliers)} MatMul input(s) computed apart, out of INT8 "
                     f"(largest: {_largest_outliers(outliers)})")
    save_model(folded, path)
    return folded


def _largest_outliers(outliers: dict[str, list[int]]) -> str:
    name, channels = max(outliers.items(), key=lambda item: len(item[1]))
    return f"{len(channels)} of {name}"


def _kept_out_nodes(model) -> list[str]:
    """Nodes ModelOpt is told to leave out of INT8: the outlier-channel MatMuls, and the MatMuls of two
    activations (attention scores, attention x values), whose softmax input quantized at 1/127 of its range
    loses the small attention weights of long sequences (all-MiniLM-L6-v2, 256 tokens: cosine 0.976 with
    them in INT8, 0.998 without)."""
    from trt_converters.precision.outlier_channels import activation_matmuls, side_matmul_names

    return side_matmul_names(model) + activation_matmuls(model)


def _replace_activation_scales(model, scales: dict[str, float]) -> None:
    """Sets, in place, the scale initializer of each activation QuantizeLinear named in `scales`."""
    import numpy as np
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    quantized = {node.output[0]: node.input[0] for node in model.graph.node
                 if node.op_type == "QuantizeLinear" and node.input[0] in scales}
    for node in model.graph.node:  # the Quantize and its Dequantize (they may hold copies of the scale)
        tensor = node.input[0] if node.op_type == "QuantizeLinear" else quantized.get(node.input[0])
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and tensor in scales \
                and node.input[1] in initializers:
            old = initializers[node.input[1]]
            scale = np.asarray(scales[tensor], dtype=numpy_helper.to_array(old).dtype).reshape(tuple(old.dims))
            old.CopyFrom(numpy_helper.from_array(scale, node.input[1]))


def _modelopt_method(method: str) -> str:
    return "entropy" if method == "entropy" else "max"


class _NoGpuCountError:
    def filter(self, record) -> bool:
        return "Failed to get GPU count" not in record.getMessage()


_NO_GPU_COUNT_ERROR = _NoGpuCountError()


# Kept out of INT8: residual Adds carry the widest activation ranges in a transformer; quantizing them
# (ModelOpt does by default, for TensorRT's fusions) cost the real all-MiniLM-L6-v2 most of its accuracy:
# minimum cosine to sentence-transformers 0.82 with them quantized, 0.97 without (MatMuls stay INT8).
OP_TYPES_KEPT_OUT_OF_INT8 = ["Add"]


def _run_modelopt(source: Path, target: Path, *, data: dict, method: str, shapes: str, high_precision: str,
                  cache: Path | None, exclude_nodes: list[str]) -> None:
    import logging
    import re

    from modelopt.onnx.quantization import quantize

    from trt_converters.precision.fp16 import SENSITIVE_OP_TYPES
    from trt_converters.progress import calibration_seconds, graph_megabytes, heartbeat

    logging.getLogger("modelopt").setLevel(logging.WARNING)
    # ModelOpt logs a missing NVML as an ERROR on every CPU-only run; calibration here is CPU by design.
    logging.getLogger("modelopt.onnx").addFilter(_NO_GPU_COUNT_ERROR)
    expected = calibration_seconds(graph_megabytes(source), next(iter(data.values())).shape[0],
                                   fp16=high_precision == "fp16")
    try:
        with heartbeat("ModelOpt INT8 quantization", expected):
            quantize(str(source), quantize_mode="int8", calibration_data=data, calibration_method=method,
                     calibration_shapes=shapes, calibration_eps=["cpu"], high_precision_dtype=high_precision,
                     op_types_to_exclude=list(OP_TYPES_KEPT_OUT_OF_INT8),
                     nodes_to_exclude=[re.escape(name) + "$" for name in exclude_nodes] or None,
                     op_types_to_exclude_fp16=list(SENSITIVE_OP_TYPES) if high_precision != "fp32" else None,
                     calibration_cache_path=str(cache) if cache else None, output_path=str(target),
                     log_level="WARNING")
    except UserError:
        raise
    except Exception as exc:  # ModelOpt and ONNX Runtime raise many types
        text = str(exc).strip()
        raise StageError(f"ModelOpt INT8 quantization failed: {type(exc).__name__}: "
                         f"{text.splitlines()[0][:300] if text else ''}") from exc
    if not target.is_file():
        raise StageError("ModelOpt INT8 quantization wrote no graph")
