"""Triton model repository layout for a converted core model: `<name>/config.pbtxt` and `<name>/<version>/<model file>`."""

from __future__ import annotations

import shutil
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec
from trt_converters.triton.backends import (OPENVINO_BACKENDS, PYTHON_ONNXRUNTIME, PYTHON_OPENVINO, TENSORRT_PLAN,
                                            ServingChoice)
from trt_converters.triton.config import (MODEL_FILES, Scheduling, add_warmup, check_against_profiles,
                                           model_config, write_config)
from trt_converters.triton.python_model import version_folder, write_python_model

# the triton_models/ folder of each python-backend serving choice
PYTHON_MODELS = {PYTHON_ONNXRUNTIME: "onnxruntime_python", PYTHON_OPENVINO: "openvino_python"}


def package_core_model(repo: Path, options, io: IOSpec, serving: ServingChoice, *, engine: Path | None,
                       onnx_graph: Path | None, profiles: dict | None = None, openvino_ir: Path | None = None) -> Path:
    """Writes `<repo>/<model_name>/` for the chosen serving backend and returns that folder."""
    backend = serving.backend
    if backend in OPENVINO_BACKENDS:
        from trt_converters.openvino_cpu.serving import ir_files

        files = ir_files(openvino_ir, backend)
    else:
        artifact = engine if backend == TENSORRT_PLAN else onnx_graph
        if artifact is None or not Path(artifact).is_file():
            what = ("a TensorRT engine (--generate-trt)" if backend == TENSORRT_PLAN
                    else "an ONNX graph (--generate-onnx)")
            raise UserError(f"--triton-backend {backend} needs {what}")
        files = {MODEL_FILES[backend]: Path(artifact)}
    model_dir = Path(repo) / options.model_name
    config, warmup = core_model_config(options, io, profiles or {}, serving)
    if backend in PYTHON_MODELS:
        write_python_model(model_dir, PYTHON_MODELS[backend], config, files=files, warmup_files=warmup)
    else:
        for name, source in files.items():
            shutil.copyfile(source, version_folder(model_dir) / name)
        write_config(model_dir, config, warmup)
    return model_dir


def core_model_config(options, io: IOSpec, profiles: dict, serving: ServingChoice):
    """The core model's ModelConfig and warmup files, checked against the profile (UserError if they disagree).

    Cheap: the conversion calls it once before any work, and again when it packages the model.
    """
    backend = serving.backend
    parameters = {}
    if backend in OPENVINO_BACKENDS:
        from trt_converters.openvino_cpu.serving import openvino_parameters

        parameters = openvino_parameters(backend, serving.openvino_precision, serving.intra_op_threads)
    elif backend != TENSORRT_PLAN:
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
