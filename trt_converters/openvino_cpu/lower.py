"""ONNX -> OpenVINO IR, and INT8 IRs by NNCF post-training quantization.

INT8 is `nncf.quantize` with the transformer model type on the calibration data (--calib-data, else
synthetic samples), with what NNCF applies for that model type: SmoothQuant (activation outliers moved
into the weights, NNCF's answer to the outlier channels that precision/outlier_channels.py computes
apart for TensorRT) and fast bias correction. MatMuls of two activations (attention scores and context)
are left out of INT8, as on the TensorRT path. That also lets the graph compile: on the exports whose
attention is PyTorch's scaled_dot_product_attention (the legacy and dynamo exporters alike, any opset),
NNCF's FakeQuantize pair on the score MatMul, whose inputs are the query and key each scaled by
sqrt(scale), made OpenVINO's CPU plugin fail to compile the INT8 graph (openvino 2026.4, nncf 3.4:
"Check 'convert->constant_fold(...)' failed"); the eager-attention export compiled either way.
"""

from __future__ import annotations

import contextlib
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.errors import StageError
from trt_converters.openvino_cpu.runtime import openvino_module

# NNCF's SmoothQuant alpha for MatMuls under ModelType.TRANSFORMER (nncf 3.4's default)
SMOOTH_QUANT_ALPHA = 0.95


@dataclass
class QuantizeResult:
    path: Path
    seconds: float
    samples: int
    ignored_matmuls: list[str] = field(default_factory=list)

    def as_report(self) -> dict:
        import nncf

        return {"nncf": nncf.__version__, "model_type": "transformer", "samples": self.samples,
                "smooth_quant_alpha_matmul": SMOOTH_QUANT_ALPHA, "fast_bias_correction": True,
                "kept_out_of_int8": self.ignored_matmuls,
                "why_kept_out": "MatMuls of two activations (attention scores and context), as on the TensorRT path",
                "seconds": round(self.seconds, 3)}


def ir_bin(xml: Path) -> Path:
    """The weights file beside an IR's model.xml."""
    return Path(xml).with_suffix(".bin")


def convert_to_ir(onnx_path: Path, xml_path: Path) -> Path:
    """The ONNX graph as an FP32 OpenVINO IR (weights kept in FP32: the precision is chosen at compile time)."""
    ov = openvino_module()
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO's frontend raises its own exception types
        raise StageError(f"OpenVINO could not read {Path(onnx_path).name}: {_first_line(exc)}") from exc
    Path(xml_path).parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(xml_path), compress_to_fp16=False)
    return Path(xml_path)


def _constant_source(output, depth: int = 0) -> bool:
    """Whether a tensor is computed from constants only (a weight, possibly converted or reshaped)."""
    node = output.get_node()
    if node.get_type_name() == "Constant":
        return True
    if depth > 8 or node.get_input_size() == 0:
        return False
    return all(_constant_source(node.input_value(i), depth + 1) for i in range(node.get_input_size()))


def activation_matmuls(model) -> list[str]:
    """Names of the MatMuls whose two inputs are both activations."""
    return [op.get_friendly_name() for op in model.get_ordered_ops()
            if op.get_type_name() == "MatMul" and not any(_constant_source(op.input_value(i)) for i in range(2))]


def calibration_items(calibration: dict, input_names: set[str]) -> list[dict]:
    """One batch-1 item per calibration sample, with only the inputs the graph takes."""
    count = len(next(iter(calibration.values())))
    return [{name: array[index:index + 1] for name, array in calibration.items() if name in input_names}
            for index in range(count)]


def quantize_ir(fp32_xml: Path, out_xml: Path, calibration: dict) -> QuantizeResult:
    """NNCF post-training INT8 of an FP32 IR on the calibration arrays (name -> samples along dim 0)."""
    import logging

    ov = openvino_module()
    import nncf

    nncf.set_log_level(logging.ERROR)
    started = time.perf_counter()
    model = ov.Core().read_model(str(fp32_xml))
    names = {name for port in model.inputs for name in port.get_names()}
    items = calibration_items(calibration, names)
    ignored = activation_matmuls(model)
    progress = io.StringIO()  # NNCF draws progress bars on the terminal; the stage prints its own lines
    try:
        with contextlib.redirect_stdout(progress), contextlib.redirect_stderr(progress):
            quantized = nncf.quantize(model, nncf.Dataset(items), model_type=nncf.ModelType.TRANSFORMER,
                                      subset_size=len(items), fast_bias_correction=True,
                                      ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    except Exception as exc:  # NNCF raises several types; the message is what helps
        raise StageError(f"NNCF INT8 quantization failed: {_first_line(exc)}") from exc
    ov.save_model(quantized, str(out_xml), compress_to_fp16=False)
    return QuantizeResult(Path(out_xml), time.perf_counter() - started, len(items), ignored)


def _first_line(exc: Exception) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return lines[-1].strip() if lines else type(exc).__name__
