"""A model class from a script file, a state_dict from a checkpoint file, and strict loading.

Used by trt-convert (trt_converters/loading.py adds the command-line hints) and by the served
PyTorch baseline (triton_models/pytorch_python), so a checkpoint loads the same way in both.
Checkpoints are read with `torch.load(weights_only=True)`: a checkpoint file cannot run code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import sys
from pathlib import Path

WRAPPER_KEYS = ("model", "state_dict", "model_state_dict", "module")


class LoadError(ValueError):
    """The script, checkpoint or weights cannot be used; the message names what and why.

    `part` is what to fix: "script", "class", "checkpoint" or "weights" ("weights_strict" when
    only the strict key match failed).
    """

    def __init__(self, message: str, part: str):
        super().__init__(message)
        self.part = part


def import_model_class(script_path, class_name: str):
    """Imports `script_path` under a private module name (sys.path untouched) and returns the class."""
    script_path = Path(script_path)
    module_name = f"trt_converters_user_script_{abs(hash(str(script_path.resolve())))}"
    spec = importlib.util.spec_from_file_location(module_name, script_path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{script_path} is not a Python file", "script")
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
        raise LoadError(f"{script_path} exited while being imported (SystemExit {exc.code}"
                        + (f", after printing {said[-1]!r}" if said else "") + "): it runs sys.exit() or argparse "
                        "at import; put that code under `if __name__ == \"__main__\":`", "script") from None
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise LoadError(f"{script_path} failed to import: {type(exc).__name__}: {exc}", "script") from exc
    finally:
        sys.argv = saved_argv
    sys.stderr.write(printed.getvalue())
    model_class = getattr(module, class_name, None)
    if model_class is None or not isinstance(model_class, type):
        classes = sorted(n for n, v in vars(module).items() if isinstance(v, type) and v.__module__ == module_name)
        raise LoadError(f"{class_name!r} is not a class in {script_path.name}; "
                        f"classes defined there: {', '.join(classes) or 'none'}", "class")
    return model_class


def read_state_dict(path) -> dict:
    """A flat name -> tensor mapping from .pt/.pth/.bin/.th (torch.load, weights_only) or .safetensors."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise LoadError(f"{path} is not a readable safetensors file: {exc}", "checkpoint") from None
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
            raise LoadError(f"{path} is not a PyTorch checkpoint: it is corrupt or truncated "
                            f"({detail or 'unreadable pickle'})", "checkpoint") from None
        raise LoadError(f"{path} holds more than tensors and cannot be loaded safely "
                        f"(weights_only=True): {detail.split(' was not an allowed')[0]}; "
                        "save it as model.state_dict()", "checkpoint") from None
    except (RuntimeError, EOFError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LoadError(f"{path} is not a readable PyTorch checkpoint: {first}", "checkpoint") from None
    return unwrap_state_dict(loaded, path)


def _check_checkpoint_format(path: Path) -> None:
    """torch.save writes a zip archive (or, before PyTorch 1.6, a pickle): anything else is not a checkpoint."""
    with open(path, "rb") as handle:
        head = handle.read(9)
    if head.startswith(b"PK") or (len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5):
        return
    if len(head) == 9 and head[8:9] == b"{":
        raise LoadError(f"{path} looks like a safetensors file: give it the .safetensors suffix", "checkpoint")
    raise LoadError(f"{path} is not a PyTorch checkpoint: it is neither a torch.save zip archive nor a "
                    f"pickle (it starts with bytes {head[:4].hex(' ') or 'nothing: the file is empty'}); "
                    "a corrupt or incomplete download?", "checkpoint")


def unwrap_state_dict(loaded, path) -> dict:
    """Unwraps {"model": sd}, {"state_dict": sd} (training checkpoints) and `module.` prefixes (DataParallel)."""
    import torch

    state = loaded
    for _ in range(3):  # nested wrappers, e.g. {"state_dict": {"model": ...}}; bounded
        if not isinstance(state, dict) or all(isinstance(v, torch.Tensor) for v in state.values()):
            break
        inner = next((state[k] for k in WRAPPER_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise LoadError(f"{path} holds a {type(state).__name__}, not a state_dict; "
                        "save model.state_dict() instead of the whole model", "checkpoint")
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise LoadError(f"{path} holds no tensors (keys: {', '.join(list(state)[:5])})", "checkpoint")
    if all(k.startswith("module.") for k in tensors):
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def load_weights(model, state_dict: dict, *, strict: bool = True) -> list[str]:
    """Loads strictly by default (the model's `adapt_state_dict` hook first); a mismatch raises LoadError.

    Returns the non-strict mode's missing/unexpected keys as warnings.
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
        raise LoadError("checkpoint does not match the model: " + "; ".join(problems),
                        "weights" if mismatched else "weights_strict")
    model.load_state_dict(state_dict, strict=False)
    return problems
