"""Triton model folders served on CPU by python-backend models (this server has no onnxruntime backend).

The nvidia-pytriton tritonserver carries only the python backend, so ONNX Runtime serving goes
through the generic `triton_models/onnxruntime_python/model.py`; on a full Triton image the same
graph can be served by the `onnxruntime_onnx` backend with the config from triton/config.py.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec
from trt_converters.triton.config import DEFAULT_MAX_QUEUE_DELAY_US
from trt_converters.triton.python_model import FileSource


@dataclass(frozen=True)
class CpuServing:
    """How a python-backend model serves on CPU: batching, instances and its runtime's thread pools."""

    max_batch_size: int = 8
    instance_count: int = 1
    intra_op_threads: int | None = None
    inter_op_threads: int | None = None
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US

    def thread_parameters(self, intra_key: str, inter_key: str) -> dict[str, str]:
        """The thread counts that are set, as config parameters under the model's own keys."""
        counts = {intra_key: self.intra_op_threads, inter_key: self.inter_op_threads}
        return {key: str(value) for key, value in counts.items() if value is not None}


def cpu_python_config(model_name: str, io: IOSpec, serving: CpuServing, parameters: Mapping[str, str]):
    """ModelConfig of a python-backend model on KIND_CPU with dynamic batching."""
    from trt_converters.triton.backends import PYTHON_ONNXRUNTIME
    from trt_converters.triton.config import Scheduling, model_config

    return model_config(model_name, serving_backend=PYTHON_ONNXRUNTIME, io=io, max_batch_size=serving.max_batch_size,
                        scheduling=Scheduling(dynamic_batching=serving.max_batch_size > 0,
                                              max_queue_delay_us=serving.max_queue_delay_us),
                        instance_kind="cpu", instance_count=serving.instance_count, parameters=dict(parameters))


def write_model_folder(repo: Path, model_name: str, config, source: str | Path,
                       files: Mapping[str, FileSource] | None = None, *, overwrite: bool = False) -> Path:
    """Writes the python-backend model <repo>/<model_name>/ in a staging folder, then moves it into place.

    `source` and `files` are those of triton/python_model.py's `write_python_model`; the repository's
    requirements.txt is updated.
    """
    from trt_converters.triton.python_model import write_python_model
    from trt_converters.triton.requirements import write_repository_requirements

    repo = Path(repo)
    target = repo / model_name
    if target.exists() and not overwrite:
        raise UserError(f"{target} already exists; remove it or pass overwrite=True (--overwrite)")
    repo.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{model_name}-", dir=repo) as tmp:
        staged = Path(tmp) / model_name
        write_python_model(staged, source, config, files=files)
        if target.exists():
            shutil.rmtree(target)
        staged.rename(target)
    write_repository_requirements(repo)
    return target


def write_onnxruntime_python_model(repo: Path, model_name: str, onnx_path: Path, io: IOSpec,
                                   serving: CpuServing = CpuServing(), *, overwrite: bool = False) -> Path:
    """A python-backend model folder that runs `onnx_path` with ONNX Runtime (CPU); returns the folder."""
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise UserError(f"ONNX file {onnx_path} does not exist")
    if onnx_path.with_name(onnx_path.name + ".data").exists():
        raise UserError(f"{onnx_path.name} keeps its weights in an external .data file; "
                        "this writer copies single-file graphs only")
    parameters = serving.thread_parameters("intra_op_thread_count", "inter_op_thread_count")
    config = cpu_python_config(model_name, io, serving, parameters)
    return write_model_folder(repo, model_name, config, "onnxruntime_python", {"model.onnx": onnx_path},
                              overwrite=overwrite)
