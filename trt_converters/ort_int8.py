"""ONNX Runtime-native INT8 for CPU serving: the names the CLI imports (see trt_converters.onnxruntime_cpu)."""

from trt_converters.onnxruntime_cpu import (
    TARGET_KEY,
    TARGET_ONNXRUNTIME,
    classify_int8_graph,
    is_onnxruntime_targeted,
    optimize_for_onnxruntime,
    quantize_for_onnxruntime,
    refuse_for_onnxruntime_cpu,
    refuse_for_tensorrt,
)

__all__ = [
    "TARGET_KEY", "TARGET_ONNXRUNTIME", "classify_int8_graph", "is_onnxruntime_targeted",
    "optimize_for_onnxruntime", "quantize_for_onnxruntime", "refuse_for_onnxruntime_cpu", "refuse_for_tensorrt",
]
