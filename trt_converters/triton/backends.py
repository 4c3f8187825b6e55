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

# Triton backend folder each serving choice needs on the server
BACKEND_FOLDERS = {"tensorrt_plan": "tensorrt", "onnxruntime_onnx": "onnxruntime", "python_onnxruntime": "python",
                   "openvino": "openvino", "python_openvino": "python"}
TRITON_CONTAINER = "NVIDIA's Triton container (nvcr.io/nvidia/tritonserver:<yy.mm>-py3)"


@dataclass
class ServingChoice:
    backend: str
    instance_kind: str
    why: str
    warnings: list[str] = field(default_factory=list)
    cpu_runtime: str = "auto"  # onnxruntime, openvino, or auto (measured by --tune)
    cpu_runtime_why: str = ""

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
    if backend == "auto":
        backend, why = _auto_backend(options)
    kind = options.instance_kind
    if kind == "auto":
        kind = "gpu" if backend == "tensorrt_plan" else "cpu"
        why += "; instances follow the backend"
    choice = ServingChoice(backend=backend, instance_kind=kind, why=why)
    from trt_converters.openvino_cpu.choice import resolve_cpu_runtime
    from trt_converters.openvino_cpu.serving import serving_warnings

    choice.cpu_runtime, choice.cpu_runtime_why = resolve_cpu_runtime(options, backend)
    if options.generate_triton_config:
        choice.warnings += _local_server_warnings(backend) + serving_warnings(backend, options.openvino_precision)
    return choice


def _auto_backend(options) -> tuple[str, str]:
    if options.cpu_runtime == "openvino":
        return "python_openvino", "auto: --cpu-runtime openvino (the python backend's OpenVINO model; Triton's own: openvino)"
    if options.onnx_int8:
        return "python_onnxruntime", "auto: --onnx-int8 graphs run on ONNX Runtime (CPU integer kernels)"
    if options.instance_kind == "cpu":
        return "python_onnxruntime", "auto: --instance-kind cpu cannot run a TensorRT plan"
    if options.trt_backend == "tensorrt-rtx":
        return "python_onnxruntime", ("auto: --trt-backend tensorrt-rtx plans load only in a TensorRT-RTX runtime, "
                                      "not in Triton's tensorrt backend")
    if not options.generate_trt and not (options.model_name and options.resolved_engine_path().is_file()):
        return "python_onnxruntime", "auto: this run builds no engine (--generate-trt) and none exists"
    gpus = cuda_gpu_count()
    if gpus and tensorrt_installed():
        return "tensorrt_plan", f"auto: {gpus} CUDA GPU(s) and NVIDIA TensorRT on this machine"
    missing = "no CUDA GPU on this machine" if not gpus else "NVIDIA TensorRT is not installed (pip install tensorrt)"
    return "python_onnxruntime", f"auto: {missing}; --triton-backend tensorrt_plan packages the engine instead"


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
    where = {"tensorrt_plan": f"{TRITON_CONTAINER} on a GPU, with the TensorRT version that built the engine",
             "onnxruntime_onnx": f"{TRITON_CONTAINER}, or use --triton-backend python_onnxruntime here",
             "openvino": f"{TRITON_CONTAINER}, or use --triton-backend python_openvino here"}[backend]
    return [f"--triton-backend {backend} needs Triton's {needed} backend, which the local server (nvidia-pytriton "
            f"wheel: {', '.join(sorted(available))} only) does not have; serve it with {where}"]
