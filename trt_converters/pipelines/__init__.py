"""Pre/post-processing pipelines around a converted core model.

A pipeline is a module `trt_converters.pipelines.<name>` with `write_pipeline(request) -> list[Path]`;
the config's `pipeline:` key names it. A module that writes more models than the entry model lists their
name suffixes in `MODEL_SUFFIXES`, so a run can refuse existing models before any work.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from trt_converters.errors import StageError, UserError
from trt_converters.pipelines._options import check_options
from trt_converters.pipelines.base import PipelineRequest


def write_pipeline(name: str, request: PipelineRequest) -> list[Path]:
    module = pipeline_module(name)
    check_options(name, module.OPTIONS, request.options)
    written = module.write_pipeline(request)
    declared = set(pipeline_model_names(name, request.pipeline_name))
    undeclared = sorted({p.relative_to(request.repo).parts[0] for p in written
                         if p.is_relative_to(request.repo)} - declared)
    if undeclared:
        raise StageError(f"pipeline {name!r} wrote model {undeclared[0]!r}, which its MODEL_SUFFIXES do not declare")
    return written


def pipeline_model_names(name: str, pipeline_name: str) -> list[str]:
    """The models pipeline `name` writes when its entry model is `pipeline_name`."""
    return [pipeline_name + suffix for suffix in getattr(pipeline_module(name), "MODEL_SUFFIXES", ("",))]


def pipeline_module(name: str):
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name == "base":
        raise UserError(f"pipeline {name!r} is not a pipeline name; use one of: {', '.join(available_pipelines())}")
    try:
        return importlib.import_module(f"trt_converters.pipelines.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"trt_converters.pipelines.{name}":
            raise
        raise UserError(f"unknown pipeline {name!r}; available: {', '.join(available_pipelines())}") from None


def validate_pipeline_options(name: str, options: dict) -> None:
    """Unknown keys and bad values of a pipeline's options, as one-line UserErrors (no model needed)."""
    check_options(name, pipeline_module(name).OPTIONS, options)


def pipeline_options_help(name: str) -> dict[str, str]:
    return {key: option.help for key, option in sorted(pipeline_module(name).OPTIONS.items())}


def available_pipelines() -> list[str]:
    folder = Path(__file__).parent
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_") and p.stem != "base")
