"""Running OpenVINO IRs on this CPU: its features, the compile properties of each precision, sessions.

A precision is an IR and an inference precision: `fp32` and `bf16` are the same FP32 IR compiled with
INFERENCE_PRECISION_HINT f32 or bf16; `int8` is NNCF's INT8 IR, whose layers left out of INT8 run in
BF16 where the CPU has it (OpenVINO's own default there) and FP32 elsewhere. The hint is always set
explicitly, so what is verified is what is served.
"""

from __future__ import annotations

import functools
from pathlib import Path

from trt_converters.errors import UserError

# flag in /proc/cpuinfo -> what it gives OpenVINO
FEATURE_FLAGS = {"amx_int8": "AMX INT8", "amx_bf16": "AMX BF16", "avx512_bf16": "AVX-512 BF16",
                 "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI", "avx512f": "AVX-512", "avx2": "AVX2"}


def openvino_module():
    """`openvino`, or a UserError saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise UserError("the OpenVINO CPU path needs openvino and nncf: pip install -e '.[openvino]'") from None
    return openvino


def cpu_features() -> dict:
    """The CPU features that decide the fastest runtime and precision, and what OpenVINO reports."""
    found, capabilities = _cpu_features()
    return {"flags": dict(found), "openvino_capabilities": list(capabilities),
            "amx": found["AMX INT8"] or found["AMX BF16"], "bf16": "BF16" in capabilities}


@functools.lru_cache(maxsize=1)
def _cpu_features() -> tuple[dict, tuple]:
    """Read once per process: the CPU does not change, and each read starts an OpenVINO Core."""
    from trt_converters.onnxruntime_cpu.targets import cpu_flags

    flags = cpu_flags()
    found = {name: flag in flags for flag, name in FEATURE_FLAGS.items()}
    capabilities = []
    try:
        capabilities = list(openvino_module().Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except (UserError, RuntimeError):
        pass
    return found, tuple(capabilities)


def has_bf16() -> bool:
    """Whether OpenVINO computes BF16 natively on this CPU (AMX or AVX-512 BF16): its default precision there."""
    return bool(cpu_features()["bf16"])


def default_precision() -> str:
    """OpenVINO's own choice on this CPU: bf16 where it is native, fp32 elsewhere."""
    return "bf16" if has_bf16() else "fp32"


def inference_hint(precision: str) -> str:
    """INFERENCE_PRECISION_HINT for a precision (see the module docstring)."""
    if precision == "int8":
        return "bf16" if has_bf16() else "f32"
    return {"fp32": "f32", "bf16": "bf16"}[precision]


def compile_ir(xml: Path, precision: str, *, threads: int | None = None, streams: int = 1):
    """The IR compiled for CPU the way the served model compiles it (one stream, latency hint)."""
    ov = openvino_module()
    properties = {"INFERENCE_PRECISION_HINT": inference_hint(precision), "NUM_STREAMS": str(streams),
                  "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        properties["INFERENCE_NUM_THREADS"] = str(threads)
    core = ov.Core()
    return core.compile_model(core.read_model(str(xml)), "CPU", properties)


class OpenVINOSession:
    """One compiled IR with one infer request; `run(None, feeds)` like an ONNX Runtime session."""

    def __init__(self, xml: Path, precision: str, *, threads: int | None = None):
        self.compiled = compile_ir(xml, precision, threads=threads)
        self.request = self.compiled.create_infer_request()
        self.output_names = [port.get_any_name() for port in self.compiled.outputs]
        self.input_names = {name for port in self.compiled.inputs for name in port.get_names()}

    def run(self, output_names, feeds: dict) -> list:
        import numpy as np

        results = self.request.infer({k: v for k, v in feeds.items() if k in self.input_names})
        ports = self.compiled.outputs if output_names is None else [self.compiled.output(n) for n in output_names]
        return [np.array(results[port]) for port in ports]


def run_ir(xml: Path, input_sets: list[dict], precision: str) -> list[dict]:
    """The IR's outputs (name -> array) on each input set."""
    session = OpenVINOSession(xml, precision)
    return [dict(zip(session.output_names, session.run(None, inputs))) for inputs in input_sets]
