"""FP32 ONNX -> ONNX Runtime-native INT8 ONNX (dynamic MatMulInteger, or static QOperator).

Choices, measured on tiny RoBERTa graphs against PyTorch (random weights, 32x64 tokens):
- Stale shape metadata first: the dynamo exporter writes value_info for weights that ONNX shape
  inference then contradicts ("Inferred shape and existing shape differ"), which stops
  quantize_dynamic. All value_info is dropped; the quantizer re-infers what it needs.
- Weight range per target CPU (`cpu_target`, targets.CPU_TARGETS): without VNNI (AVX2, AVX-512
  without VNNI) the u8 x s8 kernels saturate, full-range weights gave max rel error 0.23 on an AVX2
  machine and 7-bit weights (reduce_range) 0.016; with VNNI 8-bit weights are accurate and more precise,
  so they are used there. The target and the weight bits are recorded in the graph's metadata.
- Dynamic quantizes MatMul and Gather (embedding tables), not Conv: ONNX Runtime's CPU provider has
  no ConvInteger kernel for int8 weights.
- Static quantizes MatMul (and Conv) only. Quantizing Add (residuals, the attention mask with its
  huge negative values) cost rel error 0.17; Gemm (the classifier head of a legacy export) and Gather
  (embeddings) cost 0.02-0.03 against 0.0006 for MatMul alone, and save size, not time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import StageError, UserError
from trt_converters.memory import release
from trt_converters.onnxruntime_cpu.targets import (
    CPU_TARGET_KEY,
    LOWERING_KEY,
    ONNXRUNTIME_INTEGER_OPS,
    WEIGHT_BITS_KEY,
    classify_loaded_graph,
    full_range_weights,
    graph_metadata,
    mark_onnxruntime_target,
    resolve_cpu_target,
    set_metadata,
)
from trt_converters.spec import IOSpec

MODES = ("dynamic", "static")
DYNAMIC_OP_TYPES = ("MatMul", "Gather", "Attention", "EmbedLayerNormalization")
STATIC_OP_TYPES = ("MatMul", "Conv")
DEFAULT_SYNTHETIC_CALIBRATION_SAMPLES = 16
_PROTOBUF_LIMIT = 2 * 1024**3 - 64 * 1024**2  # leave room for the graph itself


@dataclass(frozen=True)
class OrtInt8Options:
    """How the ONNX Runtime INT8 graph is made (--onnx-int8 and the calibration options).

    mode "dynamic": QInt8 weights, activations quantized at run time (MatMulInteger); no calibration.
    mode "static": QOperator graph (QLinearMatMul, ...) with activation ranges from calibration data.
    cpu_target ("auto" = this machine, or a targets.CPU_TARGETS name) sets the weight range unless
    reduce_range is given. calib_method is a canonical name of precision/methods.py.
    """

    mode: str
    calib_method: str = "max"
    calib_percentile: float | None = None
    cpu_target: str = "auto"
    per_channel: bool = True
    reduce_range: bool | None = None
    op_types: tuple[str, ...] | None = None


def quantize_for_onnxruntime(fp32_onnx: Path, out_path: Path, options: OrtInt8Options, *, io: IOSpec,
                             calibration: dict | None = None) -> Path:
    """Writes an ONNX Runtime INT8 graph of `fp32_onnx` to `out_path` (atomically) and returns `out_path`.

    `calibration` (static mode): input name -> array, samples stacked along dim 0; synthetic inputs when None.
    The input may be a fused graph (fusion.py); it may not be INT8 already. The output carries the metadata
    marker `trt_converters.target=onnxruntime`, the CPU target and the weight bits.
    """
    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    mode = options.mode
    if mode not in MODES:
        raise UserError(f"--onnx-int8 {mode!r} is not one of {', '.join(MODES)}")
    from trt_converters.precision.methods import resolve_method

    ort_method = resolve_method(options.calib_method, path="onnxruntime").onnxruntime
    if not fp32_onnx.is_file():
        raise UserError(f"ONNX file {fp32_onnx} does not exist; pass the path of a .onnx graph")

    import onnx

    target = resolve_cpu_target(options.cpu_target)
    reduce_range = options.reduce_range
    if reduce_range is None:
        reduce_range = not full_range_weights(target)
    model = onnx.load(str(fp32_onnx))
    kind = classify_loaded_graph(model)
    carried = {k: v for k, v in graph_metadata(model).items() if k.startswith("trt_converters.")}
    fused_float = (carried.get(LOWERING_KEY, "").startswith("fused")
                   and not {n.op_type for n in model.graph.node} & ONNXRUNTIME_INTEGER_OPS)
    if fused_float and mode == "static":
        raise UserError(f"{fp32_onnx.name} is a fused ONNX Runtime graph; ONNX Runtime's static quantizer cannot "
                        "take fused operators: quantize the unfused FP32 graph, or use mode dynamic")
    if kind == "onnxruntime" and not fused_float:
        raise UserError(f"{fp32_onnx.name} is already an ONNX Runtime INT8 graph; quantize the FP32 graph instead")
    if kind == "tensorrt_qdq":
        raise UserError(f"{fp32_onnx.name} is a TensorRT Q/DQ INT8 graph; ONNX Runtime on CPU runs it no faster "
                        "than FP32: start from the FP32 graph and use --onnx-int8 dynamic|static")
    clean_shape_metadata(model)
    graph_inputs = [i.name for i in model.graph.input]
    _check_inputs_against_spec(graph_inputs, io, fp32_onnx)
    large = _too_large(model)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ort-int8-", dir=out_path.parent) as tmp:
        cleaned, quantized = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        # Weights as external data: written tensor by tensor, where a single-file save serializes the whole graph
        # at once (on RoBERTa-base 1.5 GB above the 0.5 GB graph); the quantizer reads it back the same.
        _save(model, cleaned, external=True)
        del model
        release()  # the parent's freed heap back to the system before the quantizer's process starts
        if mode == "static":
            calibration = _prepared_calibration(calibration, io, graph_inputs)
        # A fresh process: NVIDIA ModelOpt patches onnxruntime.quantization when it runs (the TensorRT INT8
        # path), after which ONNX Runtime's own static quantizer fails in that process ("'NoneType' object
        # has no attribute 'extend'").
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            quantizer = _Quantizer(options, ort_method=ort_method, reduce_range=reduce_range, large=large)
            failure = pool.submit(_quantize_in_child, quantizer, (cleaned, quantized), calibration, io,
                                  graph_inputs).result()
        if failure:
            raise StageError(f"ONNX Runtime {mode} quantization of {fp32_onnx.name} failed: {failure}")
        result = onnx.load(str(quantized))
        set_metadata(result, {**carried, CPU_TARGET_KEY: target, WEIGHT_BITS_KEY: "7" if reduce_range else "8"})
        mark_onnxruntime_target(result, f"int8-{mode}")
        staged = Path(tmp) / out_path.name
        _save(result, staged, _too_large(result))
        _move_into_place(staged, out_path)
    return out_path


@dataclass(frozen=True)
class _Quantizer:
    """The options with what was resolved on this machine for this graph."""

    options: OrtInt8Options
    ort_method: str  # onnxruntime.quantization.CalibrationMethod member
    reduce_range: bool
    large: bool  # tensors in an external data file


def _quantize_in_child(quantizer: _Quantizer, paths: tuple[Path, Path], calibration: dict | None, io: IOSpec,
                       graph_inputs: list[str]) -> str:
    """Runs in a spawned process: `paths` (cleaned FP32 graph, quantized graph); returns '' on success, else the
    quantizer's error as one line."""
    cleaned, quantized = paths
    with _quiet_quantizer():
        try:
            if quantizer.options.mode == "dynamic":
                _quantize_dynamic(cleaned, quantized, quantizer)
            else:
                _quantize_static(cleaned, quantized, _calibration_reader(calibration, io, graph_inputs), quantizer)
        except Exception as exc:  # the quantizer raises many types; its message is what helps
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"{type(exc).__name__}: {first}"
    return ""


def clean_shape_metadata(model) -> None:
    """Drops value_info (intermediate and stale weight shapes) and graph inputs that merely shadow initializers."""
    del model.graph.value_info[:]
    initializers = {t.name for t in model.graph.initializer}
    kept = [i for i in model.graph.input if i.name not in initializers]
    if len(kept) != len(model.graph.input):
        del model.graph.input[:]
        model.graph.input.extend(kept)


def _check_inputs_against_spec(graph_inputs: list[str], io: IOSpec, path: Path) -> None:
    declared = {t.name for t in io.inputs}
    unknown = [name for name in graph_inputs if name not in declared]
    if unknown:
        raise UserError(f"{path.name} has inputs {unknown} that the IO spec does not declare "
                        f"(declared: {sorted(declared)}); fix --model-io-config or re-export the graph")


def _quantize_dynamic(source: Path, target: Path, quantizer: _Quantizer) -> None:
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fused com.microsoft operators (Attention, SkipLayerNormalization) defeat ONNX shape inference, so
    # the quantizer is told that tensors it cannot type are float.
    options = quantizer.options
    quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=options.per_channel,
                     reduce_range=quantizer.reduce_range,
                     op_types_to_quantize=list(options.op_types or DYNAMIC_OP_TYPES),
                     use_external_data_format=quantizer.large,
                     extra_options={"MatMulConstBOnly": True, "DefaultTensorType": TensorProto.FLOAT})


def _quantize_static(source: Path, target: Path, reader, quantizer: _Quantizer) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    options, ort_method = quantizer.options, quantizer.ort_method
    percentile = options.calib_percentile
    extra = {"CalibPercentile": percentile} if ort_method == "Percentile" and percentile else {}

    quantize_static(str(source), str(target), reader, quant_format=QuantFormat.QOperator,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=options.per_channel,
                    reduce_range=quantizer.reduce_range,
                    op_types_to_quantize=list(options.op_types or STATIC_OP_TYPES),
                    calibrate_method=getattr(CalibrationMethod, ort_method),
                    use_external_data_format=quantizer.large, extra_options=extra)


def _prepared_calibration(calibration: dict | None, io: IOSpec, graph_inputs: list[str]) -> dict:
    """One array per graph input, in the IO spec's dtypes; synthetic (with its warning) when none is given."""
    import numpy as np

    if calibration is None:
        from trt_converters.calibration import synthetic_calibration_data
        from trt_converters.shapes import profiles_for

        calibration = synthetic_calibration_data(io, profiles_for(io, max_batch_size=1),
                                                 DEFAULT_SYNTHETIC_CALIBRATION_SAMPLES)
    missing = [name for name in graph_inputs if name not in calibration]
    if missing:
        raise UserError(f"calibration data has no arrays for inputs {missing}; "
                        "give one array per model input, samples stacked along dim 0")
    dtypes = {t.name: t.numpy_dtype for t in io.inputs}
    arrays = {name: np.asarray(calibration[name]).astype(dtypes[name], copy=False) for name in graph_inputs}
    counts = {name: a.shape[0] if a.ndim else 0 for name, a in arrays.items()}
    samples = min(counts.values())
    if samples < 1 or len(set(counts.values())) > 1:
        raise UserError(f"calibration arrays must hold the same number (>= 1) of samples along dim 0, got {counts}")
    return arrays


def _calibration_reader(arrays: dict, io: IOSpec, graph_inputs: list[str]):
    """An onnxruntime CalibrationDataReader feeding one sample at a time (valid for any batch profile)."""
    from onnxruntime.quantization import CalibrationDataReader

    samples = min(a.shape[0] for a in arrays.values())

    class _OneSampleAtATime(CalibrationDataReader):
        def __init__(self) -> None:
            self._next = 0

        def get_next(self):
            if self._next >= samples:
                return None
            index, self._next = self._next, self._next + 1
            return {name: array[index:index + 1] for name, array in arrays.items()}

        def rewind(self) -> None:
            self._next = 0

    return _OneSampleAtATime()


@contextlib.contextmanager
def _quiet_quantizer():
    """The quantizer logs a pre-processing hint and dumps tensor types on the root logger."""
    root = logging.getLogger()
    previous = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(previous)


def _too_large(model) -> bool:
    try:
        return model.ByteSize() > _PROTOBUF_LIMIT
    except Exception:  # protobuf refuses to size messages over 2 GiB
        return True


def _save(model, path: Path, external: bool) -> None:
    import onnx

    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=path.name + ".data")
    else:
        onnx.save_model(model, str(path))


def _move_into_place(staged: Path, target: Path) -> None:
    data = staged.with_name(staged.name + ".data")
    if data.exists():
        os.replace(data, target.with_name(target.name + ".data"))
    os.replace(staged, target)


def model_size_bytes(onnx_path: Path) -> int:
    """The graph file plus its external data file, if any."""
    path = Path(onnx_path)
    data = path.with_name(path.name + ".data")
    return path.stat().st_size + (data.stat().st_size if data.exists() else 0)
