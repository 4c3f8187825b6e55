"""Model script import, checkpoint reading and strict state_dict loading with a readable key report.

A model script is code the user chose to run: it is executed as given. Checkpoints are read with
`torch.load(weights_only=True)`, so a checkpoint file cannot run code.
"""

from __future__ import annotations

import sys
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
        raise UserError(f"{flag} {exc}") from (None if exc.__cause__ is None else exc)


def check_module_class(model_class, script_path: Path) -> None:
    import torch

    if not issubclass(model_class, torch.nn.Module):
        modules = sorted(n for n, v in vars(sys.modules[model_class.__module__]).items()
                         if isinstance(v, type) and issubclass(v, torch.nn.Module)
                         and v.__module__ == model_class.__module__)
        raise UserError(f"--model-class-name {model_class.__name__!r} is not a torch.nn.Module subclass; name the "
                        f"model class (nn.Module classes in {Path(script_path).name}: {', '.join(modules) or 'none'})")


def check_forward_inputs(model_class, input_names: list[str]) -> None:
    """forward() must take the IO config's inputs, in order, as positional arguments."""
    import inspect

    try:
        signature = inspect.signature(model_class.forward)
    except (TypeError, ValueError):
        return
    parameters = list(signature.parameters.values())[1:]  # without self
    if any(p.kind == p.VAR_POSITIONAL for p in parameters):
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    takes = f"{model_class.__name__}.forward({', '.join(p.name for p in positional)})"
    declared = f"{len(input_names)} input{'s' if len(input_names) != 1 else ''} ({', '.join(input_names)})"
    if len(input_names) < len(required):
        missing = required[len(input_names):]
        raise UserError(f"--model-io-config declares {declared} but {takes} also needs "
                        f"{', '.join(map(repr, missing))}: add {'them' if len(missing) > 1 else 'it'} to the "
                        "IO config's inputs, in forward()'s order")
    keyword_only = [p.name for p in parameters if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    if keyword_only:
        raise UserError(f"{model_class.__name__}.forward() requires keyword-only argument(s) "
                        f"{', '.join(map(repr, keyword_only))}, but the IO config's inputs are passed by position; "
                        "give them defaults or make them positional")
    if len(input_names) > len(positional):
        raise UserError(f"--model-io-config declares {declared} but {takes} takes {len(positional)}: "
                        "remove the extra inputs from the IO config or check --model-class-name")


def construct_model(model_class, kwargs: dict):
    try:
        return model_class(**kwargs)
    except TypeError as exc:
        raise UserError(f"{model_class.__name__}(**model_kwargs) failed: {exc}; "
                        "fix model_kwargs in the config or --model-kwargs") from None
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UserError(f"{model_class.__name__}({', '.join(f'{k}={v!r}' for k, v in kwargs.items())}) raised "
                        f"{type(exc).__name__}: {first}; check model_kwargs (config or --model-kwargs) and the "
                        "class") from exc


def read_checkpoint(path: Path) -> dict:
    """A flat name -> tensor mapping from .pt/.pth/.bin/.th (torch.load, weights_only) or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--ckpt-path {path} does not exist")
    try:
        return torch_loading.read_state_dict(path)
    except torch_loading.LoadError as exc:
        raise UserError(f"--ckpt-path {exc}") from None


def load_weights(model, state_dict: dict, *, strict: bool = True, checkpoint_dir: Path | None = None) -> list[str]:
    """Loads strictly by default; a mismatch raises UserError (bad input: the checkpoint does not fit the class
    and kwargs given, exit 2) with a readable key report.

    `--no-strict` is suggested only where most tensors would load; otherwise the message says which key prefix
    maps (`bert.` in the checkpoint where the class has `model.bert.`) and points to the Hugging Face config.
    Returns warnings (non-strict mode's missing/unexpected keys) for the report.
    """
    try:
        return torch_loading.load_weights(model, state_dict, strict=strict)
    except torch_loading.LoadError as exc:
        from trt_converters.key_mismatch import mismatch_advice

        adapt = getattr(model, "adapt_state_dict", None)
        checkpoint_keys = list((adapt(dict(state_dict)) if adapt else state_dict).keys())
        advice, most_load = mismatch_advice(list(model.state_dict()), checkpoint_keys, checkpoint_dir)
        hint = ", or pass --no-strict to load what matches" if exc.part == "weights_strict" and most_load else ""
        raise UserError(f"{exc}. {advice}Check --model-class-name and model_kwargs (or --model-kwargs){hint}") \
            from None


def load_model(script_path: Path, class_name: str, checkpoint_path: Path | None, *, model_kwargs: dict | None = None,
               strict: bool = True, device: str = "cpu", input_names: list[str] | None = None):
    """The model in eval mode with its weights, plus a dict describing how it was built (for the report).

    `model_kwargs` are used as given: options.build_options has already layered them (flags > the
    checkpoint's config.json > the YAML). With `input_names` (the IO config's inputs, in order), forward()
    must accept them as positional arguments.
    """
    model_class = import_model_class(script_path, class_name)
    check_module_class(model_class, script_path)
    if input_names is not None:
        check_forward_inputs(model_class, input_names)
    kwargs = dict(model_kwargs or {})
    model = construct_model(model_class, kwargs)
    warnings: list[str] = []
    non_finite: list[str] = []
    if checkpoint_path is not None:
        state_dict = read_checkpoint(Path(checkpoint_path))
        non_finite = non_finite_tensors(state_dict)
        warnings = load_weights(model, state_dict, strict=strict, checkpoint_dir=Path(checkpoint_path).parent)
    model.eval()
    if device != "cpu":
        model.to(device)
    return model, {"class": class_name, "kwargs": kwargs, "load_warnings": warnings,
                   "non_finite_weights": non_finite}


def non_finite_tensors(state_dict: dict) -> list[str]:
    """Names of floating-point tensors holding NaN or inf (a diverged training run)."""
    import torch

    return [name for name, tensor in state_dict.items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())]
