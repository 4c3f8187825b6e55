"""The served OpenVINO model: `<model>/1/model.xml` + `model.bin`, and its config parameters.

Two ways, both configured by triton/config.py:
- `openvino`: Triton's openvino backend (NVIDIA's Triton container). Its parameters are
  INFERENCE_NUM_THREADS, NUM_STREAMS, PERFORMANCE_HINT and HINT_BF16 (YES only): it cannot ask for FP32
  inference, so on a CPU with native BF16 an fp32 model runs in BF16 there (OpenVINO's default).
- `python_openvino`: triton_models/openvino_python/model.py in the python backend (any Triton, the local
  server included), which sets every precision explicitly (`inference_precision`).
"""

from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.onnxruntime_cpu.serving import CpuServing
from trt_converters.spec import IOSpec

MODEL_PY = "openvino_python"


def openvino_parameters(backend: str, precision: str, threads: int | None) -> dict[str, str]:
    """The core model's config parameters for an OpenVINO backend; precision 'auto' leaves OpenVINO's default."""
    from trt_converters.openvino_cpu.runtime import inference_hint
    from trt_converters.triton.backends import OPENVINO

    hint = inference_hint(precision) if precision != "auto" else None
    if backend == OPENVINO:
        parameters = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            parameters["INFERENCE_NUM_THREADS"] = str(threads)
        if hint == "bf16":
            parameters["HINT_BF16"] = "YES"
        return parameters
    parameters = {"num_streams": "1", "performance_hint": "LATENCY"}
    if threads is not None:
        parameters["inference_num_threads"] = str(threads)
    if hint is not None:
        parameters["inference_precision"] = hint
    return parameters


def serving_warnings(backend: str, precision: str) -> list[str]:
    if backend == "openvino" and precision == "fp32":
        return ["Triton's openvino backend has no FP32 precision hint (HINT_BF16 only): on a CPU with native BF16 "
                "(AMX, AVX-512 BF16) it runs this fp32 model in BF16; --triton-backend python_openvino serves FP32"]
    return []


def ir_files(xml: Path | None, backend: str) -> dict[str, Path]:
    """The version folder's files of an OpenVINO model: model.xml and model.bin (UserError when missing)."""
    from trt_converters.openvino_cpu.lower import ir_bin

    if xml is None or not Path(xml).is_file() or not ir_bin(xml).is_file():
        raise UserError(f"--triton-backend {backend} needs an OpenVINO IR (--cpu-runtime openvino with --generate-onnx "
                        "or --onnx-path)")
    return {"model.xml": Path(xml), "model.bin": ir_bin(xml)}


def write_openvino_python_model(repo: Path, model_name: str, xml: Path, io: IOSpec,
                                serving: CpuServing = CpuServing(), *, precision: str, overwrite: bool = False) -> Path:
    """A python-backend model folder that runs the IR `xml` with OpenVINO on CPU; returns the folder."""
    from trt_converters.onnxruntime_cpu.serving import cpu_python_config, write_model_folder
    from trt_converters.triton.backends import PYTHON_OPENVINO

    parameters = openvino_parameters(PYTHON_OPENVINO, precision, serving.intra_op_threads)
    config = cpu_python_config(model_name, io, serving, parameters)
    return write_model_folder(repo, model_name, config, MODEL_PY, ir_files(xml, PYTHON_OPENVINO), overwrite=overwrite)
