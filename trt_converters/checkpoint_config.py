"""The checkpoint's own files as an option source (docs/design.md, "Where options come from").

The config.json beside `--ckpt-path` is read once and interpreted by the code that knows its format:
the model script's hooks for the network, the pipeline module's for pre/post-processing. Optional hooks:

    ModelClass.hf_config_to_kwargs(hf_config[, config_dir]) -> dict
        constructor kwargs the config.json sets (architecture, label count, ...); hooks that take
        `config_dir` may read files the config names relative to its folder
    ModelClass.io_from_kwargs(kwargs) -> dict
        IO values a configuration fixes, by forward() position: {"value_ranges": [[low, high] | None per
        input], "max_sequence_length": int | None, "output_widths": [int | None per output]}
    trt_converters.pipelines.<name>.checkpoint_options(hf_config) -> dict
        pipeline options the config.json sets (e.g. GECToR's max_length, a classifier's labels)
"""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path
from typing import Optional

from trt_converters.errors import UserError
from trt_converters.spec import DYNAMIC, IOSpec


def read_config_json(ckpt_path: Optional[Path]) -> Optional[tuple[Path, dict]]:
    """(path, contents) of the config.json beside the checkpoint, or None when there is none."""
    if ckpt_path is None:
        return None
    path = Path(ckpt_path).parent / "config.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno}); fix or remove it") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object")
    return path, data


def checkpoint_layer(values: dict, sources: dict) -> tuple[type | None, dict]:
    """The options layer of the checkpoint's config.json for the merged `values` (and their `sources`): the
    model class (when the checkpoint or a flag needs its hooks) and what the config.json sets."""
    found = read_config_json(values.get("ckpt_path"))
    needs_class = found is not None or sources.get("model_kwargs") == "flag"
    model_class = None
    if needs_class and values.get("model_script_path") and values.get("model_class_name"):
        from trt_converters.loading import import_model_class

        model_class = import_model_class(Path(values["model_script_path"]), values["model_class_name"])
    if found is None:
        return model_class, {}
    path, hf_config = found
    layer: dict = {}
    if model_class is not None:
        layer["model_kwargs"] = model_kwargs_from_config(model_class, hf_config, path.parent)
    pipeline_options = pipeline_options_from_config(values.get("pipeline"), hf_config)
    if pipeline_options:
        layer["pipeline_options"] = pipeline_options
    return model_class, {k: v for k, v in layer.items() if v}


def model_kwargs_from_config(model_class, hf_config: dict, config_dir: Path) -> dict:
    hook = getattr(model_class, "hf_config_to_kwargs", None)
    if hook is None:
        return {}
    extra = {"config_dir": config_dir} if "config_dir" in inspect.signature(hook).parameters else {}
    return dict(_call_hook(model_class, "hf_config_to_kwargs", hf_config, **extra))


def pipeline_options_from_config(pipeline: Optional[str], hf_config: dict) -> dict:
    if not pipeline:
        return {}
    try:
        module = importlib.import_module(f"trt_converters.pipelines.{pipeline}")
    except ModuleNotFoundError:
        return {}  # an unknown pipeline name is reported by the options' validation
    hook = getattr(module, "checkpoint_options", None)
    return dict(hook(hf_config)) if hook is not None else {}


def io_values(model_class, kwargs: dict) -> Optional[dict]:
    if getattr(model_class, "io_from_kwargs", None) is None:
        return None
    return _call_hook(model_class, "io_from_kwargs", dict(kwargs))


def _call_hook(model_class, name: str, *args, **kwargs):
    try:
        return getattr(model_class, name)(*args, **kwargs)
    except UserError:
        raise
    except Exception as exc:  # the model script's code: report it as bad input, in one line
        raise UserError(f"{model_class.__name__}.{name} failed: {type(exc).__name__}: {exc}; check the "
                        "checkpoint's config.json and model_kwargs") from exc


def io_changes(io: IOSpec, values: dict) -> dict:
    """What `values` (an io_from_kwargs answer) change in the IO spec, as {"inputs.NAME.FIELD": value}.

    The token-id range and output widths are set; the sequence length is a limit: max (and opt, min)
    shapes of 1-D dynamic inputs above it come down to it.
    """
    changed: dict = {}
    for tensor, value_range in zip(io.inputs, values.get("value_ranges") or []):
        if value_range is not None and list(tensor.value_range or []) != list(value_range):
            changed[f"inputs.{tensor.name}.value_range"] = [value_range[0], value_range[1]]
    limit = values.get("max_sequence_length")
    for tensor in io.inputs if limit else []:
        for key in ("max_shape", "opt_shape", "min_shape"):
            dims = getattr(tensor, key)
            if tensor.shape == [DYNAMIC] and dims and dims[0] > limit:
                changed[f"inputs.{tensor.name}.{key}"] = [limit]
    for tensor, width in zip(io.outputs, values.get("output_widths") or []):
        if width is not None and tensor.shape and tensor.shape[-1] != width:
            changed[f"outputs.{tensor.name}.shape"] = [*tensor.shape[:-1], int(width)]
    return changed


def with_io_fields(io: IOSpec, fields: dict) -> IOSpec:
    """The IO spec with {"inputs.NAME.FIELD": value} entries set."""
    if not fields:
        return io
    data = io.model_dump()
    for key, value in fields.items():
        side, name, field = key.split(".", 2)
        next(t for t in data[side] if t["name"] == name)[field] = value
    return IOSpec.model_validate(data)


def sequence_limit(io: IOSpec) -> Optional[int]:
    """The longest sequence the IO spec's 1-D dynamic inputs accept, when it says."""
    limits = [t.max_shape[0] for t in io.inputs if t.shape == [DYNAMIC] and t.max_shape]
    return min(limits) if limits else None
