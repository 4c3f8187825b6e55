"""Which Triton backend serves the core model, and which servers can load what was written.

`--triton-backend auto` serves the TensorRT engine (tensorrt_plan) only where this machine could run it
itself: a CUDA GPU and NVIDIA TensorRT, whose plans Triton's `tensorrt` backend loads. Everywhere else it
serves the ONNX graph with ONNX Runtime through the python backend (python_onnxruntime): that is the one
ONNX Runtime model the local server (the nvidia-pytriton wheel's tritonserver, python backend only) can
load, and it runs unchanged in NVIDIA's Triton container. `onnxruntime_onnx` (Triton's native ONNX Runtime
backend) is chosen only when asked for.
"""

from __future__ import annotations

import ctypes
import importlib.util
from dataclasses import dataclass, field

# How Triton serves the core model (--triton-backend) and where its instances run (--instance-kind)
TENSORRT_PLAN = "tensorrt_plan"
ONNXRUNTIME_ONNX = "onnxruntime_onnx"
PYTHON_ONNXRUNTIME = "python_onnxruntime"
OPENVINO = "openvino"  # Triton's openvino backend
PYTHON_OPENVINO = "python_openvino"  # triton_models/openvino_python in the python backend
SERVING_BACKENDS = (TENSORRT_PLAN, ONNXRUNTIME_ONNX, PYTHON_ONNXRUNTIME, OPENVINO, PYTHON_OPENVINO)
OPENVINO_BACKENDS = (OPENVINO, PYTHON_OPENVINO)
KIND_GPU = "gpu"
KIND_CPU = "cpu"
AUTO = "auto"
# Triton backend folder each serving choice needs on the server
BACKEND_FOLDERS = {TENSORRT_PLAN: "tensorrt", ONNXRUNTIME_ONNX: "onnxruntime", PYTHON_ONNXRUNTIME: "python",
                   OPENVINO: "openvino", PYTHON_OPENVINO: "python"}
TRITON_CONTAINER = "NVIDIA's Triton container (nvcr.io/nvidia/tritonserver:<yy.mm>-py3)"


@dataclass(frozen=True)
class ServingChoice:
    """How the core model is served: the resolved backend and instance kind (never `auto`), the instances and
    intra-op threads (those --tune measured, where it ran), the CPU runtime (`auto` only until --tune measured
    both) and the OpenVINO precision (the OpenVINO stage's or --tune's choice)."""

    backend: str
    instance_kind: str
    why: str
    warnings: list[str] = field(default_factory=list)
    instance_count: int = 1
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    cpu_runtime: str = AUTO  # onnxruntime, openvino, or auto (measured by --tune)
    cpu_runtime_why: str = ""
    openvino_precision: str = AUTO  # the OpenVINO stage's or --tune's choice, where OpenVINO serves

    def as_report(self) -> dict:
        return {"backend": self.backend, "instance_kind": self.instance_kind, "why": self.why,
                "warnings": self.warnings, "cpu_runtime": self.cpu_runtime, "cpu_runtime_why": self.cpu_runtime_why}


def cuda_gpu_count() -> int:
    """CUDA devices the driver reports (0 without a driver), asked of libcuda directly: no framework import."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    count = ctypes.c_int(0)
    if cuda.cuInit(0) != 0 or cuda.cuDeviceGetCount(ctypes.byref(count)) != 0:
        return 0
    return count.value


def tensorrt_installed() -> bool:
    """NVIDIA TensorRT (not TensorRT-RTX): its plans are what Triton's tensorrt backend loads."""
    return importlib.util.find_spec("tensorrt") is not None


def choose_serving(options) -> ServingChoice:
    """Resolves `auto` backend and instance kind; explains the choice and warns about unloadable models."""
    backend, why = options.triton_backend, f"--triton-backend {options.triton_backend}"
    if backend == AUTO:
        backend, why = _auto_backend(options)
    kind = options.instance_kind
    if kind == AUTO:
        kind = KIND_GPU if backend == TENSORRT_PLAN else KIND_CPU
        why += "; instances follow the backend"
    from trt_converters.openvino_cpu.choice import resolve_cpu_runtime
    from trt_converters.openvino_cpu.serving import serving_warnings

    warnings = []
    if options.generate_triton_config:
        warnings = _local_server_warnings(backend) + serving_warnings(backend, options.openvino_precision)
    cpu_runtime, cpu_runtime_why = resolve_cpu_runtime(options, backend)
    return ServingChoice(backend=backend, instance_kind=kind, why=why, warnings=warnings,
                         instance_count=options.instance_count, intra_op_threads=options.intra_op_threads,
                         inter_op_threads=options.inter_op_threads, cpu_runtime=cpu_runtime,
                         cpu_runtime_why=cpu_runtime_why, openvino_precision=options.openvino_precision)


def _auto_backend(options) -> tuple[str, str]:
    if options.cpu_runtime == "openvino":
        return PYTHON_OPENVINO, ("auto: --cpu-runtime openvino (the python backend's OpenVINO model; Triton's own: "
                                 "openvino)")
    if options.onnx_int8:
        return PYTHON_ONNXRUNTIME, "auto: --onnx-int8 graphs run on ONNX Runtime (CPU integer kernels)"
    if options.instance_kind == KIND_CPU:
        return PYTHON_ONNXRUNTIME, "auto: --instance-kind cpu cannot run a TensorRT plan"
    if options.trt_backend == "tensorrt-rtx":
        return PYTHON_ONNXRUNTIME, ("auto: --trt-backend tensorrt-rtx plans load only in a TensorRT-RTX runtime, "
                                      "not in Triton's tensorrt backend")
    if not options.generate_trt and not (options.model_name and options.resolved_engine_path().is_file()):
        return PYTHON_ONNXRUNTIME, "auto: this run builds no engine (--generate-trt) and none exists"
    gpus = cuda_gpu_count()
    if gpus and tensorrt_installed():
        return TENSORRT_PLAN, f"auto: {gpus} CUDA GPU(s) and NVIDIA TensorRT on this machine"
    missing = "no CUDA GPU on this machine" if not gpus else "NVIDIA TensorRT is not installed (pip install tensorrt)"
    return PYTHON_ONNXRUNTIME, f"auto: {missing}; --triton-backend tensorrt_plan packages the engine instead"


def local_server_backends() -> set[str] | None:
    """Backends the local tritonserver (nvidia-pytriton wheel) carries; None when it is not installed."""
    from trt_converters.errors import UserError
    from trt_converters.triton.server import find_triton_distribution

    try:
        folder = find_triton_distribution().python_backend.parent
    except UserError:
        return None
    return {path.name for path in folder.iterdir() if path.is_dir()}


def _local_server_warnings(backend: str) -> list[str]:
    available = local_server_backends()
    needed = BACKEND_FOLDERS[backend]
    if available is None or needed in available:
        return []
    where = {TENSORRT_PLAN: f"{TRITON_CONTAINER} on a GPU, with the TensorRT version that built the engine",
             ONNXRUNTIME_ONNX: f"{TRITON_CONTAINER}, or use --triton-backend python_onnxruntime here",
             OPENVINO: f"{TRITON_CONTAINER}, or use --triton-backend python_openvino here"}[backend]
    return [f"--triton-backend {backend} needs Triton's {needed} backend, which the local server (nvidia-pytriton "
            f"wheel: {', '.join(sorted(available))} only) does not have; serve it with {where}"]
