"""Triton model repository layout for a converted core model: `<name>/config.pbtxt` and `<name>/1/<model file>`."""

from __future__ import annotations

import shutil
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.serving_runtime import copy_runtime
from trt_converters.spec import IOSpec
from trt_converters.triton.backends import PYTHON_ONNXRUNTIME, TENSORRT_PLAN, ServingChoice
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


def package_core_model(repo: Path, options, io: IOSpec, serving: ServingChoice, *, engine: Path | None,
                       onnx_graph: Path | None, profiles: dict | None = None) -> Path:
    """Writes `<repo>/<model_name>/` for the chosen serving backend and returns that folder."""
    backend = serving.backend
    artifact = engine if backend == TENSORRT_PLAN else onnx_graph
    if artifact is None or not Path(artifact).is_file():
        what = "a TensorRT engine (--generate-trt)" if backend == TENSORRT_PLAN else "an ONNX graph (--generate-onnx)"
        raise UserError(f"--triton-backend {backend} needs {what}")
    model_dir = Path(repo) / options.model_name
    version_dir = model_dir / VERSION
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(artifact, version_dir / MODEL_FILES[backend])
    if backend == PYTHON_ONNXRUNTIME:
        shutil.copyfile(triton_model_source("onnxruntime_python"), version_dir / "model.py")
        copy_runtime(version_dir)
    config, warmup = core_model_config(options, io, profiles or {}, serving)
    write_config(model_dir, config, warmup)
    return model_dir


def core_model_config(options, io: IOSpec, profiles: dict, serving: ServingChoice):
    """The core model's ModelConfig and warmup files, checked against the profile (UserError if they disagree).

    Cheap: the conversion calls it once before any work, and again when it packages the model.
    """
    backend = serving.backend
    parameters = {}
    if backend != TENSORRT_PLAN:
        if serving.intra_op_threads is not None:
            parameters["intra_op_thread_count"] = serving.intra_op_threads
        if serving.inter_op_threads is not None:
            parameters["inter_op_thread_count"] = serving.inter_op_threads
    scheduling = Scheduling.from_options(options, serving_backend=backend)
    config = model_config(options.model_name, serving_backend=backend, io=io, max_batch_size=options.max_batch_size,
                          scheduling=scheduling, instance_kind=serving.instance_kind,
                          instance_count=serving.instance_count, parameters=parameters)
    warmup = add_warmup(config, io, profiles) if scheduling.warmup and profiles else None
    check_against_profiles(config, profiles)
    return config, warmup
