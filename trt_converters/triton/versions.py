"""`--model-version N`: the core model is written as version N beside the versions already in the repository.

Locally the staged model folder receives copies (hard links where possible) of the other version folders, so the
folder swap at commit keeps them; which versions Triton serves is the config's version policy (--version-policy;
Triton's default serves the latest one).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from trt_converters.triton.python_model import VERSION


def core_model_target(options) -> tuple[str, Path]:
    """(what, path) of the core model output that must not exist without --overwrite."""
    folder = options.triton_repo / options.model_name
    if options.model_version is None:
        return "the Triton model folder", folder
    return f"version {options.model_version} of Triton model {options.model_name!r}", folder / str(options.model_version)


def place_version(staged_model: Path, existing_model: Path, version: int | None) -> None:
    """Renames the staged version folder to `version` and copies the existing model's other versions in."""
    if version is None:
        return
    staged_model = Path(staged_model)
    if str(version) != VERSION:
        os.replace(staged_model / VERSION, staged_model / str(version))
    if not Path(existing_model).is_dir():
        return
    for folder in Path(existing_model).iterdir():
        if folder.is_dir() and folder.name.isdigit() and folder.name != str(version):
            shutil.copytree(folder, staged_model / folder.name, symlinks=True, copy_function=_link_or_copy)


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
