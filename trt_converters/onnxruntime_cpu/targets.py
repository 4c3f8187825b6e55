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
    set_metadata(model, {TARGET_KEY: TARGET_ONNXRUNTIME, LOWERING_KEY: lowering})


def set_metadata(model, wanted: dict[str, str]) -> None:
    """Adds (or replaces) entries in a ModelProto's metadata_props."""
    kept = [(p.key, p.value) for p in model.metadata_props if p.key not in wanted]
    del model.metadata_props[:]
    for key, value in kept + list(wanted.items()):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def graph_metadata(model) -> dict[str, str]:
    return {p.key: p.value for p in model.metadata_props}


def read_metadata(onnx_path: Path) -> dict[str, str]:
    """A graph file's metadata_props (weights not loaded)."""
    return graph_metadata(_load_structure(onnx_path))


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


# -- the CPU an INT8 graph is made for -------------------------------------------------------------
CPU_TARGET_KEY = "trt_converters.cpu_target"
WEIGHT_BITS_KEY = "trt_converters.int8_weight_bits"
# name -> has VNNI (u8 x s8 dot products that cannot saturate). Without VNNI ONNX Runtime's u8 x s8
# kernels (AVX2 vpmaddubsw) add pairs of products in int16, which can saturate with full-range weights.
CPU_TARGETS = {"avx2": False, "avx512": False, "avx_vnni": True, "avx512_vnni": True}


def cpu_flags() -> set[str]:
    """This machine's CPU feature flags (Linux /proc/cpuinfo); empty where that cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def detect_cpu_target(flags: set[str] | None = None) -> str:
    """The CPU_TARGETS name for these flags (this machine's when None); 'avx2' when nothing better is seen."""
    flags = cpu_flags() if flags is None else flags
    if "avx512_vnni" in flags:
        return "avx512_vnni"
    if "avx_vnni" in flags:
        return "avx_vnni"
    if "avx512f" in flags or "avx512bw" in flags:
        return "avx512"
    return "avx2"


def resolve_cpu_target(name: str) -> str:
    """'auto' -> this machine's target; a CPU_TARGETS name passes; anything else is a UserError."""
    if name == "auto":
        return detect_cpu_target()
    if name not in CPU_TARGETS:
        raise UserError(f"--cpu-target {name!r} is not one of auto, {', '.join(CPU_TARGETS)}")
    return name


def full_range_weights(target: str) -> bool:
    """8-bit weights where the target has VNNI, 7-bit (reduce_range) where it does not."""
    return CPU_TARGETS[resolve_cpu_target(target)]
