"""FP32 ONNX -> explicit INT8 Q/DQ ONNX with ModelOpt, calibrated on ONNX Runtime CPU.

`int8` keeps the non-quantized layers in FP32; `int8_fp16` puts them in FP16 (ModelOpt's
high_precision_dtype) with the sensitive ops of fp16.py still in FP32. The activation scales are saved
as a TensorRT-style calibration cache (first line a header, then `tensor: <big-endian float32 hex>`);
with a cache made from the same FP32 graph and method (for percentile, the same percentile), ModelOpt takes
the scales from it and the calibration data is not read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from trt_converters.onnx_files import file_sha256
from trt_converters.precision.calibration_cache import (CacheHeader, cache_serves, copy_cache, read_cache_header,
                                                        write_cache)
from trt_converters.precision.methods import DEFAULT_PERCENTILE
from trt_converters.precision.modelopt_calibration import (OP_TYPES_KEPT_OUT_OF_INT8, CalibrationJob, CalibrationSource,
                                                           activation_scales, calibrate, from_cache)
from trt_converters.precision.outlier_channels import masked_scales, token_mask_input

if TYPE_CHECKING:
    from trt_converters.precision.options import PrecisionOptions
    from trt_converters.precision import LoweringCheck

@dataclass
class Int8Outcome:
    notes: list[str]
    details: dict
    check_outputs: list | None = None


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

    from trt_converters.onnx_files import save_model
    from trt_converters.precision.fp16 import fold_constants
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
    folded_path = work_dir / "model.onnx"
    notes: list[str] = []
    details: dict = {}

    mask_input = token_mask_input(folded)
    header = read_cache_header(cache) if cache is not None and cache.is_file() else None
    reuse = cache_serves(header, model_hash, method, percentile) and (outlier_channels or not header.outliers)
    job = CalibrationJob(options, source, work_dir, model_hash, high_precision, percentile, cache, mask_input, log)
    calibrated = from_cache(job, folded, header, notes) if reuse else calibrate(job, folded, header, notes)
    folded, candidates, data, outliers = calibrated.folded, calibrated.candidates, calibrated.data, calibrated.outliers
    shapes, ranges = calibrated.shapes, calibrated.ranges

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


def _has_side_files(path: Path) -> bool:
    """Whether the graph's tensors may live beside it (ModelOpt's `<name>_data`, save_model's `<name>.data`)."""
    return any(p != path for p in path.parent.glob(path.name + "?data"))


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
