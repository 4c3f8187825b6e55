"""The calibration half of INT8 Q/DQ lowering (precision/int8.py): ModelOpt's quantizer run per calibration
method on the folded FP32 graph, with the outlier channels computed apart, percentile scales from activation
histograms, or the activation scales of a calibration cache."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from trt_converters.errors import StageError, UserError
from trt_converters.precision.calibration_cache import CacheHeader, read_cache_scales, write_cache
from trt_converters.precision.methods import AUTO_CANDIDATES, DEFAULT_PERCENTILE
from trt_converters.precision.outlier_channels import channel_ranges, choose_outliers, weight_matmul_inputs

if TYPE_CHECKING:
    from trt_converters.precision.options import PrecisionOptions

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



@dataclass(frozen=True)
class CalibrationSource:
    """Where quantize_int8 gets its data: `load()` the calibration arrays (called only without a usable cache),
    `synthetic_for_shapes(shapes)` inputs of given shapes (a cache's pass), `opt_batch` the batch of a step."""

    load: Callable[[], dict]
    synthetic_for_shapes: Callable[[dict], dict]
    opt_batch: int



@dataclass(frozen=True)
class CalibrationJob:
    """One quantize_int8 call's fixed inputs."""

    options: "PrecisionOptions"
    source: CalibrationSource
    work_dir: Path  # the folded FP32 graph is work_dir/model.onnx, the candidates beside it
    model_hash: str  # SHA-256 of the FP32 graph, recorded in the calibration cache
    high_precision: str  # fp32 or fp16: the non-quantized layers
    percentile: float
    cache: Path | None
    mask_input: str | None  # the token mask input whose kept positions ranges are taken over
    log: Callable[[str], None]

    @property
    def folded_path(self) -> Path:
        return self.work_dir / "model.onnx"


@dataclass(frozen=True)
class _Calibrated:
    """The candidate Q/DQ graphs (calibration method -> path) and what they were made from."""

    folded: object  # the folded FP32 graph with its outlier channels computed apart, saved at folded_path
    candidates: dict
    data: dict  # the calibration (or, from a cache, synthetic) arrays by graph input
    shapes: str  # ModelOpt's calibration shapes
    outliers: dict
    ranges: dict | None  # per-channel ranges over the calibration data (None: scales from a cache)


def from_cache(job: CalibrationJob, folded, header: CacheHeader, notes: list[str]) -> _Calibrated:
    """One candidate with the activation scales of a calibration cache made for this graph and method."""
    shapes, method, outliers = header.shapes, header.method, header.outliers
    folded = _split(folded, outliers, job.folded_path, notes)
    kept_out = _kept_out_nodes(folded)
    # ModelOpt still runs its ONNX Runtime pass once; the activation scales are then replaced by the cache's.
    data = job.source.synthetic_for_shapes(parse_shapes(shapes))
    notes.append(f"activation scales from calibration cache {job.cache} ({len(read_cache_scales(job.cache))} "
                 f"tensors, method {header.describe()}); calibration data not read")
    candidate = job.work_dir / f"model.{method}.onnx"
    _run_modelopt(job.folded_path, candidate, data=data, method=_modelopt_method(method), shapes=shapes,
                  high_precision=job.high_precision, cache=job.cache, exclude_nodes=kept_out)
    return _Calibrated(folded, {method: candidate}, data, shapes, outliers, None)


def calibrate(job: CalibrationJob, folded, header: CacheHeader | None, notes: list[str]) -> _Calibrated:
    """One candidate per calibration method (auto: AUTO_CANDIDATES) on the calibration data."""
    import onnx

    from trt_converters.onnx_files import save_model

    options, cache, work_dir, folded_path = job.options, job.cache, job.work_dir, job.folded_path
    high_precision, percentile, mask_input = job.high_precision, job.percentile, job.mask_input
    if cache is not None and cache.is_file():
        if header is None or header.model_sha256 != job.model_hash:
            why = "another FP32 graph"
        elif header.outliers and not options.int8_outlier_channels:
            why = "outlier channels computed apart (--int8-outlier-channels)"
        else:
            why = f"method {header.describe()}"
        notes.append(f"calibration cache {cache} was made for {why}: recalibrated and rewrote it")
    graph_inputs = [i.name for i in folded.graph.input]
    data = job.source.load()
    missing = [name for name in graph_inputs if name not in data]
    if missing:
        raise UserError(f"calibration data has no array for graph input(s) {', '.join(missing)}")
    data = {name: data[name] for name in graph_inputs}
    samples = next(iter(data.values())).shape[0]
    batch = max(1, min(job.source.opt_batch, samples))
    shapes = calibration_shapes(data, batch)
    ranges = channel_ranges(folded, list(weight_matmul_inputs(folded)), data, batch, mask_input)
    outliers = choose_outliers(ranges) if options.int8_outlier_channels else {}
    folded = _split(folded, outliers, folded_path, notes)
    kept_out = _kept_out_nodes(folded)
    if mask_input:
        notes.append(f"outlier channels and max/percentile scales from the positions {mask_input} keeps "
                     "(padding left out; entropy is ModelOpt's own and counts it)")
    methods = list(AUTO_CANDIDATES) if options.calib_method == "auto" else [options.calib_method]
    described = {m: f"percentile {percentile:g}" if m == "percentile" else m for m in methods}
    notes.append(f"INT8 calibration: {', '.join(described.values())} over {samples} samples on ONNX Runtime CPU")
    candidates: dict[str, Path] = {}
    max_path = None
    started = time.perf_counter()
    for index, name in enumerate(methods):
        candidates[name] = work_dir / f"model.{name}.onnx"
        left = "" if index == 0 else \
            f", about {(time.perf_counter() - started) / index * (len(methods) - index):.0f} s left for calibration"
        job.log(f"INT8 calibration {index + 1}/{len(methods)} ({described[name]}) with ModelOpt{left}")
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
            write_cache(scales_file, CacheHeader(name, job.model_hash, shapes, percentile, outliers), scales)
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
    return _Calibrated(folded, candidates, data, shapes, outliers, ranges)



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



def _split(folded, outliers: dict[str, list[int]], path: Path, notes: list[str]):
    """The graph with its outlier channels computed apart (outlier_channels.py), saved at `path`."""
    from trt_converters.onnx_files import save_model
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
