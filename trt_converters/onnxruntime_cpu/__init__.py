"""The CPU serving path: ONNX graphs lowered for ONNX Runtime's own integer kernels.

TensorRT wants explicit Q/DQ graphs; ONNX Runtime on CPU runs those no faster than FP32 (BENCHMARKS.md
summary; docs/design.md, CPU serving). CPU speed comes from ONNX Runtime-native INT8 (MatMulInteger from
dynamic quantization, QLinearMatMul from static QOperator quantization), which TensorRT cannot parse.
So graphs made here carry a metadata marker, and each path refuses the other's graphs with a clear message.

Public functions (heavy libraries are imported inside them):
    quantize_for_onnxruntime   FP32 ONNX -> ONNX Runtime INT8 ONNX (dynamic or static QOperator)
    optimize_for_onnxruntime   ONNX Runtime graph optimizations saved as a graph
    is_onnxruntime_targeted    reads the marker
    refuse_for_tensorrt        UserError for ONNX Runtime INT8 graphs handed to TensorRT
    refuse_for_onnxruntime_cpu UserError for TensorRT Q/DQ graphs handed to the CPU INT8 path
"""

from trt_converters.onnxruntime_cpu.optimize import optimize_for_onnxruntime
from trt_converters.onnxruntime_cpu.quantize import OrtInt8Options, quantize_for_onnxruntime
from trt_converters.onnxruntime_cpu.targets import (
    TARGET_KEY,
    TARGET_ONNXRUNTIME,
    classify_int8_graph,
    is_onnxruntime_targeted,
    refuse_for_onnxruntime_cpu,
    refuse_for_tensorrt,
)

__all__ = [
    "OrtInt8Options", "TARGET_KEY", "TARGET_ONNXRUNTIME", "classify_int8_graph", "is_onnxruntime_targeted",
    "optimize_for_onnxruntime", "quantize_for_onnxruntime", "refuse_for_onnxruntime_cpu", "refuse_for_tensorrt",
]
