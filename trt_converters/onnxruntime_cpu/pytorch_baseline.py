"""A Triton model folder serving the original PyTorch module on CPU (python backend): the baseline
that the ONNX Runtime CPU path is measured against."""

from __future__ import annotations

import json
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.onnxruntime_cpu.serving import DEFAULT_MAX_QUEUE_DELAY_US, cpu_python_config, write_model_folder
from trt_converters.spec import IOSpec
from trt_converters.triton.repository import triton_model_source


def write_pytorch_baseline_model(repo: Path, model_name: str, *, model_script: Path, class_name: str,
                                 checkpoint: Path | None, model_kwargs: dict | None, io: IOSpec,
                                 max_batch_size: int = 8, instance_count: int = 1,
                                 intra_op_threads: int | None = None, inter_op_threads: int | None = None,
                                 max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US,
                                 overwrite: bool = False) -> Path:
    """<repo>/<model_name>/ with triton_models/pytorch_python/model.py, the script, checkpoint and kwargs."""
    model_script = Path(model_script)
    if not model_script.is_file():
        raise UserError(f"--model-script-path {model_script} does not exist")
    files: dict[str, Path | str] = {"model.py": triton_model_source("pytorch_python"), "model_script.py": model_script,
                                    "model_kwargs.json": json.dumps(model_kwargs or {}, indent=2, sort_keys=True)}
    if checkpoint is not None:
        checkpoint = Path(checkpoint)
        if not checkpoint.is_file():
            raise UserError(f"checkpoint {checkpoint} does not exist")
        files[f"checkpoint{checkpoint.suffix or '.pt'}"] = checkpoint
    parameters = {"model_class": class_name}
    if intra_op_threads is not None:
        parameters["torch_intra_op_threads"] = str(intra_op_threads)
    if inter_op_threads is not None:
        parameters["torch_inter_op_threads"] = str(inter_op_threads)
    config = cpu_python_config(model_name, io, max_batch_size=max_batch_size, instance_count=instance_count,
                               max_queue_delay_us=max_queue_delay_us, parameters=parameters)
    return write_model_folder(repo, model_name, config, files, overwrite=overwrite)
