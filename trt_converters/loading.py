"""Model script import, checkpoint reading and strict state_dict loading with a readable key report.

A model script is code the user chose to run: it is executed as given. Checkpoints are read with
`torch.load(weights_only=True)`, so a checkpoint file cannot run code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
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
    printed = io.StringIO()
    saved_argv = sys.argv
    # The script sees none of our arguments, and what it prints to stderr while importing is held back: a
    # script that runs argparse at import must not print a usage line that passes for trt-convert's.
    sys.argv = [str(script_path)]
    try:
        with contextlib.redirect_stderr(printed):
            spec.loader.exec_module(module)
    except SystemExit as exc:
        sys.modules.pop(module_name, None)
        said = [line.strip() for line in printed.getvalue().splitlines() if line.strip()]
        raise UserError(f"--model-script-path {script_path} exited while being imported (SystemExit {exc.code}"
                        + (f", after printing {said[-1]!r}" if said else "") + "): it runs sys.exit() or argparse "
                        "at import; put that code under `if __name__ == \"__main__\":`") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise UserError(f"--model-script-path {script_path} failed to import: {type(exc).__name__}: {exc}") from exc
    finally:
        sys.argv = saved_argv
    sys.stderr.write(printed.getvalue())
    model_class = getattr(module, class_name, None)
    if model_class is None or not isinstance(model_class, type):
        classes = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        raise UserError(f"--model-class-name {class_name!r} is not a class in {script_path.name}; "
                        f"classes defined there: {', '.join(classes) or 'none'}")
    return model_class


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
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise UserError(f"--ckpt-path {path} is not a readable safetensors file: {exc}") from None
    import pickle

    import torch

    _check_checkpoint_format(path)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's text advises retrying with weights_only=False; only its own diagnosis is passed on
        detail = str(exc).partition("WeightsUnpickler error:")[2].strip().splitlines()
        detail = detail[0].strip() if detail else ""
        if "Unsupported global" not in detail:
            raise UserError(f"--ckpt-path {path} is not a PyTorch checkpoint: it is corrupt or truncated "
                            f"({detail or 'unreadable pickle'})") from None
        raise UserError(f"--ckpt-path {path} holds more than tensors and cannot be loaded safely "
                        f"(weights_only=True): {detail.split(' was not an allowed')[0]}; "
                        "save it as model.state_dict()") from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"--ckpt-path {path} is not a readable PyTorch checkpoint: {first}") from None
    return unwrap_state_dict(loaded, path)


def _check_checkpoint_format(path: Path) -> None:
    """torch.save writes a zip archive (or, before PyTorch 1.6, a pickle): anything else is not a checkpoint."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK") or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return
    if len(head) == 9 and head[8:9] == b"{":
        raise UserError(f"--ckpt-path {path} looks like a safetensors file: give it the .safetensors suffix")
    raise UserError(f"--ckpt-path {path} is not a PyTorch checkpoint: it is neither a torch.save zip archive nor a "
                    f"pickle (it starts with bytes {head[:4].hex(' ') or 'nothing: the file is empty'}); "
                    "a corrupt or incomplete download?")


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
        warnings = load_weights(model, state_dict, strict=strict)
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
