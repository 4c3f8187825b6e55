"""Pre/post-processing pipelines around a converted core model.

A pipeline is a module `trt_converters.pipelines.<name>` with `write_pipeline(request) -> list[Path]`;
the config's `pipeline:` key names it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines.base import PipelineRequest


def write_pipeline(name: str, request: PipelineRequest) -> list[Path]:
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name) or name == "base":
        raise UserError(f"pipeline {name!r} is not a pipeline name; use one of: {', '.join(available_pipelines())}")
    try:
        module = importlib.import_module(f"trt_converters.pipelines.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"trt_converters.pipelines.{name}":
            raise
        raise UserError(f"unknown pipeline {name!r}; available: {', '.join(available_pipelines())}") from None
    return module.write_pipeline(request)


def available_pipelines() -> list[str]:
    folder = Path(__file__).parent
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_") and p.stem != "base")
