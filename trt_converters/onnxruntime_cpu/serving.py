"""Triton model folders served on CPU by python-backend models (this server has no onnxruntime backend).

The nvidia-pytriton tritonserver carries only the python backend, so ONNX Runtime serving goes
through the generic `triton_models/onnxruntime_python/model.py`; on a full Triton image the same
graph can be served by the `onnxruntime_onnx` backend with the config from triton/config.py.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec
from trt_converters.triton.repository import triton_model_source

DEFAULT_MAX_QUEUE_DELAY_US = 1000


def cpu_python_config(model_name: str, io: IOSpec, *, max_batch_size: int, instance_count: int,
                      max_queue_delay_us: int, parameters: dict[str, str]):
    """ModelConfig of a python-backend model on KIND_CPU with dynamic batching."""
    from trt_converters.triton.backends import PYTHON_ONNXRUNTIME
    from trt_converters.triton.config import Scheduling, model_config

    return model_config(model_name, serving_backend=PYTHON_ONNXRUNTIME, io=io, max_batch_size=max_batch_size,
                        scheduling=Scheduling(dynamic_batching=max_batch_size > 0,
                                              max_queue_delay_us=max_queue_delay_us),
                        instance_kind="cpu", instance_count=instance_count, parameters=parameters)


def write_model_folder(repo: Path, model_name: str, config, files: dict[str, Path | str], *,
                       overwrite: bool = False) -> Path:
    """Writes <repo>/<model_name>/{config.pbtxt, 1/<files>} in a staging folder, then moves it into place.

    `files` maps a name inside `1/` to a source path (copied) or to text (written); the serving
    runtime its model.py imports is copied beside it, and the repository's requirements.txt updated.
    """
    from trt_converters.serving_runtime import copy_runtime
    from trt_converters.triton.config import write_config
    from trt_converters.triton.requirements import write_repository_requirements

    repo = Path(repo)
    target = repo / model_name
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; remove it or pass overwrite=True (--overwrite)")
    repo.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model_name}-", dir=repo) as tmp:
        staged = Path(tmp) / model_name
        version = staged / "1"
        version.mkdir(parents=True)
        write_config(staged, config)
        for name, source in files.items():
            if isinstance(source, Path):
                shutil.copy2(source, version / name)
            else:
                (version / name).write_text(source)
        copy_runtime(version)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    write_repository_requirements(repo)
    return target


def write_onnxruntime_python_model(repo: Path, model_name: str, onnx_path: Path, io: IOSpec, *,
                                   max_batch_size: int = 8, instance_count: int = 1,
                                   intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                                   max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
                                   overwrite: bool = False) -> Path:
    """A python-backend model folder that runs `onnx_path` with ONNX Runtime (CPU); returns the folder."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"ONNX file {onnx_path} does not exist")
    if onnx_path.with_name(onnx_path.name + ".data").exists():
        raise UserError(f"{onnx_path.name} keeps its weights in an external .data file; "
                        "this writer copies single-file graphs only")
    parameters = {}
    if intra_op_threads is not None:
        parameters["intra_op_thread_count"] = str(intra_op_threads)
    if inter_op_threads is not None:
        parameters["inter_op_thread_count"] = str(inter_op_threads)
    config = cpu_python_config(model_name, io, max_batch_size=max_batch_size, instance_count=instance_count,
                               max_queue_delay_us=max_queue_delay_us, parameters=parameters)
    return write_model_folder(repo, model_name, config,
                              {"model.py": triton_model_source("onnxruntime_python"), "model.onnx": onnx_path},
                              overwrite=overwrite)
