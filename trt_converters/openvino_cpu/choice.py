"""--cpu-runtime auto|onnxruntime|openvino against --triton-backend, by the one precedence rule.

A backend names its runtime (onnxruntime_onnx/python_onnxruntime: ONNX Runtime; openvino/python_openvino:
OpenVINO). When --cpu-runtime and --triton-backend disagree, the value from the stronger source wins and
the other follows it (a typed `--triton-backend openvino` over a YAML's `cpu_runtime: onnxruntime`);
two values from the same source are an error. `auto` runs ONNX Runtime, unless --tune measures both.
"""

from __future__ import annotations

from trt_converters.errors import UserError
from trt_converters.triton.backends import (ONNXRUNTIME_ONNX, OPENVINO, OPENVINO_BACKENDS, PYTHON_ONNXRUNTIME,
                                            PYTHON_OPENVINO)

BACKEND_RUNTIME = {ONNXRUNTIME_ONNX: "onnxruntime", PYTHON_ONNXRUNTIME: "onnxruntime",
                   OPENVINO: "openvino", PYTHON_OPENVINO: "openvino"}
# the same kind of Triton model (native backend or python backend) on the other runtime
COUNTERPART = {ONNXRUNTIME_ONNX: OPENVINO, PYTHON_ONNXRUNTIME: PYTHON_OPENVINO,
               OPENVINO: ONNXRUNTIME_ONNX, PYTHON_OPENVINO: PYTHON_ONNXRUNTIME}


def reconcile_cpu_runtime(values: dict, sources: dict, derived: dict, rank) -> None:
    """Makes `cpu_runtime` and `triton_backend` agree in `values` (see the module docstring)."""
    runtime, backend = values.get("cpu_runtime", "auto"), values.get("triton_backend", "auto")
    implied = BACKEND_RUNTIME.get(backend)
    if runtime in (None, "auto") or implied in (None, runtime):
        return
    runtime_source, backend_source = sources.get("cpu_runtime", "default"), sources.get("triton_backend", "default")
    if rank(backend_source) < rank(runtime_source):
        values["cpu_runtime"] = implied
        derived["cpu_runtime"] = {"value": implied, "from": f"triton_backend ({backend_source})"}
    elif rank(runtime_source) < rank(backend_source):
        values["triton_backend"] = COUNTERPART[backend]
        derived["triton_backend"] = {"value": COUNTERPART[backend], "from": f"cpu_runtime ({runtime_source})"}
    else:
        raise UserError(f"--cpu-runtime {runtime} contradicts --triton-backend {backend} (an {implied} backend); "
                        f"drop one, or use --triton-backend {COUNTERPART[backend]}")


def check_cpu_runtime(options) -> None:
    """Checks needing the options only, run before any work."""
    openvino = options.cpu_runtime == "openvino" or options.triton_backend in OPENVINO_BACKENDS
    if openvino and options.onnx_int8:
        raise UserError("--onnx-int8 makes an ONNX Runtime graph; OpenVINO quantizes with NNCF: use "
                        "--openvino-precision int8 (or --cpu-runtime onnxruntime)")
    if options.openvino_precision != "auto" and not (openvino or (options.cpu_runtime == "auto" and options.tune)):
        raise UserError("--openvino-precision applies to --cpu-runtime openvino (or auto with --tune)")
    if openvino and options.instance_kind == "gpu":
        raise UserError("--cpu-runtime openvino serves on the CPU: use --instance-kind cpu (or auto)")
    if openvino and options.generate_trt:
        raise UserError("--cpu-runtime openvino serves an OpenVINO IR on CPU; drop --generate-trt or serve the engine")


def resolve_cpu_runtime(options, backend: str) -> tuple[str, str]:
    """(runtime, why) once the serving backend is known: `auto` stays only where --tune will measure it."""
    if backend not in BACKEND_RUNTIME:
        return options.cpu_runtime, "the core model is not served on CPU"
    if options.cpu_runtime != "auto":
        return options.cpu_runtime, f"cpu_runtime {options.cpu_runtime} ({options.option_sources()['cpu_runtime']})"
    if options.triton_backend in BACKEND_RUNTIME:
        return BACKEND_RUNTIME[backend], f"--triton-backend {options.triton_backend}"
    if options.tune and importable("openvino") and importable("nncf"):
        return "auto", "--tune measures ONNX Runtime and OpenVINO"
    return "onnxruntime", "auto: ONNX Runtime (--tune measures OpenVINO beside it)"


def importable(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
