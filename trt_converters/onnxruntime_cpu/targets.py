"""Which runtime an ONNX graph is for: the metadata marker and the refusals built on it."""

from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError

TARGET_KEY = "trt_converters.target"
TARGET_ONNXRUNTIME = "onnxruntime"
LOWERING_KEY = "trt_converters.onnxruntime_lowering"

# Operators only ONNX Runtime's CPU integer kernels run; the TensorRT ONNX parser has none of them.
ONNXRUNTIME_INTEGER_OPS = frozenset({
    "MatMulInteger", "ConvInteger", "DynamicQuantizeLinear", "DynamicQuantizeMatMul", "MatMulIntegerToFloat",
    "QLinearMatMul", "QLinearConv", "QLinearAdd", "QLinearMul", "QLinearSigmoid", "QLinearLeakyRelu",
    "QLinearConcat", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearSoftmax", "QLinearWhere",
    "QGemm", "QAttention", "QEmbedLayerNormalization", "QOrderedMatMul",
})
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


def _load_structure(onnx_path: Path):
    import onnx

    path = Path(onnx_path)
    if not path.is_file():
        raise UserError(f"ONNX file {path} does not exist; pass the path of a .onnx graph")
    return onnx.load(str(path), load_external_data=False)


def mark_onnxruntime_target(model, lowering: str) -> None:
    """Adds (or replaces) the marker entries in a ModelProto's metadata_props."""
    wanted = {TARGET_KEY: TARGET_ONNXRUNTIME, LOWERING_KEY: lowering}
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in wanted]
    del model.metadata_props[:]
    for key, value in kept + list(wanted.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def graph_metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def is_onnxruntime_targeted(onnx_path: Path) -> bool:
    """True when the graph carries the marker written by quantize/optimize_for_onnxruntime."""
    return graph_metadata(_load_structure(onnx_path)).get(TARGET_KEY) == TARGET_ONNXRUNTIME


def _op_types(model) -> set[str]:
    ops = {node.op_type for node in model.graph.node}
    for function in model.functions:
        ops.update(node.op_type for node in function.node)
    return ops


def classify_int8_graph(onnx_path: Path) -> str:
    """'onnxruntime' (marked, or holds ONNX Runtime integer ops), 'tensorrt_qdq' (Q/DQ pairs only) or 'float'."""
    return classify_loaded_graph(_load_structure(onnx_path))


def classify_loaded_graph(model) -> str:
    """classify_int8_graph for a ModelProto already in memory."""
    ops = _op_types(model)
    if graph_metadata(model).get(TARGET_KEY) == TARGET_ONNXRUNTIME or ops & ONNXRUNTIME_INTEGER_OPS:
        return "onnxruntime"
    if ops & QDQ_OPS:
        return "tensorrt_qdq"
    return "float"


def refuse_for_tensorrt(onnx_path: Path) -> None:
    """Raises UserError when the graph was made for ONNX Runtime's integer kernels."""
    if classify_int8_graph(onnx_path) == "onnxruntime":
        raise UserError(f"{Path(onnx_path).name} is an ONNX Runtime INT8 graph (MatMulInteger/QOperator); "
                        "TensorRT cannot build it: use --use-int8 for TensorRT Q/DQ")


def refuse_for_onnxruntime_cpu(onnx_path: Path) -> None:
    """Raises UserError when a TensorRT Q/DQ graph is handed to the ONNX Runtime CPU INT8 path."""
    if classify_int8_graph(onnx_path) == "tensorrt_qdq":
        raise UserError(f"{Path(onnx_path).name} is a TensorRT Q/DQ INT8 graph; ONNX Runtime on CPU runs it no "
                        "faster than FP32: start from the FP32 graph and use --onnx-int8 dynamic|static")
