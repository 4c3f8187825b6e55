"""Model script import, checkpoint reading and strict state_dict loading with a readable key report.

A model script is code the user chose to run: it is executed as given. Checkpoints are read with
`torch.load(weights_only=True)`, so a checkpoint file cannot run code.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from trt_converters.errors import UserError

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".th", ".safetensors")
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")


def import_model_class(script_path: Path, class_name: str):
    """Imports `script_path` under a private module name (sys.path untouched) and returns the class."""
    script_path = Path(script_path)
    if not script_path.is_file():
        raise UserError(f"--model-script-path {script_path} does not exist")
    module_name = f"trt_converters_user_script_{abs(hash(str(script_path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, script_path)
    if spec is None or spec.loader is None:
        raise UserError(f"--model-script-path {script_path} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UserError(f"--model-script-path {script_path} failed to import: {type(exc).__name__}: {exc}") from exc
    model_class = getattr(module, class_name, None)
    if model_class is None or not isinstance(model_class, type):
        classes = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        raise UserError(f"--model-class-name {class_name!r} is not a class in {script_path.name}; "
                        f"classes defined there: {', '.join(classes) or 'none'}")
    return model_class


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
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"--ckpt-path {path} is not a readable safetensors file: {exc}") from None
    import pickle

    import torch

    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0]
        raise UserError(f"--ckpt-path {path} holds more than tensors and cannot be loaded safely "
                        f"(weights_only=True): {first}; save it as model.state_dict()") from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--ckpt-path {path} is not a readable PyTorch checkpoint: {first}") from None
    return unwrap_state_dict(loaded, path)


def unwrap_state_dict(loaded, path: Path) -> dict:
    """Unwraps {"model": sd}, {"state_dict": sd} (training checkpoints) and `module.` prefixes (DataParallel)."""
    import torch

    state = loaded
    for _ in range(3):  # nested wrappers, e.g. {"state_dict": {"model": ...}}; bounded
        if not isinstance(state, dict) or all(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in _WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise UserError(f"--ckpt-path {path} holds a {type(state).__name__}, not a state_dict; "
                        "save model.state_dict() instead of the whole model")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"--ckpt-path {path} holds no tensors (keys: {', '.join(list(state)[:5])})")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_weights(model, state_dict: dict, *, strict: bool = True) -> list[str]:
    """Loads strictly by default; a mismatch raises UserError with a readable key report.

    Returns warnings (non-strict mode's missing/unexpected keys) for the report.
    """
    adapt = getattr(model, "adapt_state_dict", None)
    if adapt is not None:
        state_dict = adapt(state_dict)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = sorted(f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
                        for k in set(expected) & set(state_dict) if state_dict[k].shape != expected[k].shape)
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape-mismatched", mismatched)):
        if keys:
            shown = ", ".join(keys[:4]) + (f" (+{len(keys) - 4} more)" if len(keys) > 4 else "")
            problems.append(f"{len(keys)} {label}: {shown}")
    if mismatched or (strict and problems):
        raise UserError("checkpoint does not match the model: " + "; ".join(problems)
                        + ". Check --model-class-name and model_kwargs (or --model-kwargs)"
                        + ("" if mismatched else ", or pass --no-strict to load what matches"))
    model.load_state_dict(state_dict, strict=False)
    return problems


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
