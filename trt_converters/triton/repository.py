"""Triton model repository layout for a converted core model: `<name>/config.pbtxt` and `<name>/1/<model file>`."""

from __future__ import annotations

import shutil
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.openvino_cpu import OPENVINO_BACKENDS
from trt_converters.serving_runtime import copy_runtime
from trt_converters.spec import IOSpec
from trt_converters.triton.config import (MODEL_FILES, Scheduling, add_warmup, check_against_profiles,
                                           model_config, write_config)

VERSION = "1"


def triton_model_source(name: str) -> Path:
    """`model.py` of one of this project's python-backend models (`triton_models/<name>/`).

    Found beside the package in a source checkout, or under `<prefix>/share/trt-converters/` where a wheel
    install put the data files.
    """
    import sys

    for folder in (Path(__file__).resolve().parents[2] / "triton_models",
                   Path(sys.prefix) / "share" / "trt-converters" / "triton_models"):
        if (folder / name / "model.py").is_file():
            return folder / name / "model.py"
    raise UserError(f"python-backend model {name!r} not found: triton_models/ is missing from this installation; "
                    "install trt-converters from its source checkout (pip install -e .)")


def package_core_model(repo: Path, options, io: IOSpec, *, engine: Path | None, onnx_graph: Path | None,
                       profiles: dict | None = None, openvino_ir: Path | None = None) -> Path:
    """Writes `<repo>/<model_name>/` for the chosen serving backend and returns that folder."""
    backend = options.triton_backend
    if backend in OPENVINO_BACKENDS:
        from trt_converters.openvino_cpu.serving import copy_ir

        model_dir = Path(repo) / options.model_name
        (model_dir / VERSION).mkdir(parents=True, exist_ok=True)
        copy_ir(openvino_ir, model_dir / VERSION, backend)
        write_config(model_dir, *core_model_config(options, io, profiles or {}))
        return model_dir
    artifact = engine if backend == "tensorrt_plan" else onnx_graph
    if artifact is None or not Path(artifact).is_file():
        what = "a TensorRT engine (--generate-trt)" if backend == "tensorrt_plan" else "an ONNX graph (--generate-onnx)"
        raise UserError(f"--triton-backend {backend} needs {what}")
    model_dir = Path(repo) / options.model_name
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, version_dir / MODEL_FILES[backend])
    if backend == "python_onnxruntime":
        shutil.copyfile(triton_model_source("onnxruntime_python"), version_dir / "model.py")
        copy_runtime(version_dir)
    config, warmup = core_model_config(options, io, profiles or {})
    write_config(model_dir, config, warmup)
    return model_dir


def core_model_config(options, io: IOSpec, profiles: dict):
    """The core model's ModelConfig and warmup files, checked against the profile (UserError if they disagree).

    Cheap: the conversion calls it once before any work, and again when it packages the model.
    """
    backend = options.triton_backend
    parameters = {}
    if backend in OPENVINO_BACKENDS:
        from trt_converters.openvino_cpu.serving import openvino_parameters

        parameters = openvino_parameters(backend, options.openvino_precision, options.intra_op_threads)
    elif backend != "tensorrt_plan":
        if options.intra_op_threads is not None:
            parameters["intra_op_thread_count"] = options.intra_op_threads
        if options.inter_op_threads is not None:
            parameters["inter_op_thread_count"] = options.inter_op_threads
    scheduling = Scheduling.from_options(options, serving_backend=backend)
    config = model_config(options.model_name, serving_backend=backend, io=io, max_batch_size=options.max_batch_size,
                          scheduling=scheduling, instance_kind=options.instance_kind,
                          instance_count=options.instance_count, parameters=parameters)
    warmup = add_warmup(config, io, profiles) if scheduling.warmup and profiles else None
    check_against_profiles(config, profiles)
    return config, warmup
