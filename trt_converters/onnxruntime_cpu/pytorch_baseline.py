"""A Triton model folder serving the original PyTorch module on CPU (python backend): the baseline
that the ONNX Runtime CPU path is measured against."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.onnxruntime_cpu.serving import CpuServing, cpu_python_config, write_model_folder
from trt_converters.spec import IOSpec


@dataclass(frozen=True)
class TorchModule:
    """The PyTorch module to serve: its script, class, state_dict checkpoint (optional) and keyword arguments."""

    script: Path
    class_name: str
    checkpoint: Path | None = None
    kwargs: dict = field(default_factory=dict)


def write_pytorch_baseline_model(repo: Path, model_name: str, module: TorchModule, io: IOSpec,
                                 serving: CpuServing = CpuServing(), *, overwrite: bool = False) -> Path:
    """<repo>/<model_name>/ with triton_models/pytorch_python/model.py, the script, checkpoint and kwargs."""
    model_script = Path(module.script)
    if not model_script.is_file():
        raise UserError(f"--model-script-path {model_script} does not exist")
    files: dict[str, Path | str] = {"model_script.py": model_script,
                                    "model_kwargs.json": json.dumps(module.kwargs, indent=2, sort_keys=True)}
    if module.checkpoint is not None:
        checkpoint = Path(module.checkpoint)
        if not checkpoint.is_file():
            raise UserError(f"checkpoint {checkpoint} does not exist")
        files[f"checkpoint{checkpoint.suffix or '.pt'}"] = checkpoint
    parameters = {"model_class": module.class_name,
                  **serving.thread_parameters("torch_intra_op_threads", "torch_inter_op_threads")}
    config = cpu_python_config(model_name, io, serving, parameters)
    return write_model_folder(repo, model_name, config, "pytorch_python", files, overwrite=overwrite)
