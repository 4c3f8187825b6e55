"""Model script import, checkpoint reading and strict state_dict loading with a readable key report.

A model script is code the user chose to run: it is executed as given. Checkpoints are read with
`torch.load(weights_only=True)`, so a checkpoint file cannot run code.
"""

from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.serving_runtime import torch_loading

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".th", ".safetensors")


def import_model_class(script_path: Path, class_name: str):
    """Imports `script_path` under a private module name (sys.path untouched) and returns the class."""
    if not Path(script_path).is_file():
        raise UserError(f"--model-script-path {script_path} does not exist")
    try:
        return torch_loading.import_model_class(script_path, class_name)
    except torch_loading.LoadError as exc:
        flag = "--model-script-path" if exc.part == "script" else "--model-class-name"
        raise UserError(f"{flag} {exc}") from exc


def construct_model(model_class, kwargs: dict):
    try:
        return model_class(**kwargs)
    except TypeError as exc:
        raise UserError(f"{model_class.__name__}(**model_kwargs) failed: {exc}; "
                        "fix model_kwargs in the config or --model-kwargs") from None


def read_checkpoint(path: Path) -> dict:
    """A flat name -> tensor mapping from .pt/.pth/.bin/.th (torch.load, weights_only) or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--ckpt-path {path} does not exist")
    try:
        return torch_loading.read_state_dict(path)
    except torch_loading.LoadError as exc:
        raise UserError(f"--ckpt-path {exc}") from None


def load_weights(model, state_dict: dict, *, strict: bool = True) -> list[str]:
    """Loads strictly by default; a mismatch raises UserError with a readable key report.

    Returns warnings (non-strict mode's missing/unexpected keys) for the report.
    """
    try:
        return torch_loading.load_weights(model, state_dict, strict=strict)
    except torch_loading.LoadError as exc:
        raise UserError(f"{exc}. Check --model-class-name and model_kwargs (or --model-kwargs)"
                        + (", or pass --no-strict to load what matches" if exc.part == "weights_strict" else "")) from None


def load_model(script_path: Path, class_name: str, checkpoint_path: Path | None, *, model_kwargs: dict | None = None,
               strict: bool = True, device: str = "cpu"):
    """The model in eval mode with its weights, plus a dict describing how it was built (for the report).

    `model_kwargs` are used as given: options.build_options has already layered them (flags > the
    checkpoint's config.json > the YAML).
    """
    model_class = import_model_class(script_path, class_name)
    kwargs = dict(model_kwargs or {})
    model = construct_model(model_class, kwargs)
    warnings: list[str] = []
    if checkpoint_path is not None:
        warnings = load_weights(model, read_checkpoint(Path(checkpoint_path)), strict=strict)
    model.eval()
    if device != "cpu":
        model.to(device)
    return model, {"class": class_name, "kwargs": kwargs, "load_warnings": warnings}
