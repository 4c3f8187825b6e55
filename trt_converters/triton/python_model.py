"""The one writer of python-backend model folders: `<model>/config.pbtxt` + `<model>/<VERSION>/model.py`.

Every python-backend model trt-converters writes (pipeline steps, the ONNX Runtime model, the PyTorch
baseline) gets its `model.py` (from `triton_models/<source>/`), the serving runtime it imports
(`serving_runtime/`) and its data files in the version folder; the config goes through triton/config.py.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Mapping, Union

from trt_converters.errors import UserError
from trt_converters.serving_runtime import copy_runtime
from trt_converters.triton import config as config_writer

VERSION = "1"  # the one model version every written model folder (and ensemble) carries

# a data file of the version folder: copied from a path, or written from text
FileSource = Union[Path, str]


def triton_model_source(name: str) -> Path:
    """`model.py` of one of this project's python-backend models (`triton_models/<name>/`).

    Found beside the package in a source checkout, or under `<prefix>/share/trt-converters/` where a wheel
    install put the data files.
    """
    for folder in (Path(__file__).resolve().parents[2] / "triton_models",
                   Path(sys.prefix) / "share" / "trt-converters" / "triton_models"):
        if (folder / name / "model.py").is_file():
            return folder / name / "model.py"
    raise UserError(f"python-backend model {name!r} not found: triton_models/ is missing from this installation; "
                    "install trt-converters from its source checkout (pip install -e .)")


def version_folder(model_dir: Path) -> Path:
    """`<model_dir>/<VERSION>/`, created if missing (ensembles need one too, even empty)."""
    version = Path(model_dir) / VERSION
    version.mkdir(parents=True, exist_ok=True)
    return version


def write_model_files(model_dir: Path, source: str | Path, files: Mapping[str, FileSource] | None = None) -> list[Path]:
    """The version folder of a python-backend model: model.py, the serving runtime and `files`.

    `source` names a `triton_models/` folder or is the path of a model.py; `files` maps a name inside the
    version folder to a source path (copied) or to text (written). Returns the files written.
    """
    version = version_folder(model_dir)
    model_py = source if isinstance(source, Path) else triton_model_source(source)
    written = [Path(shutil.copyfile(model_py, version / "model.py"))]
    written += copy_runtime(version)
    for name, data in (files or {}).items():
        target = version / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, Path):
            shutil.copyfile(data, target)
        else:
            target.write_text(data)
        written.append(target)
    return written


def write_python_model(model_dir: Path, source: str | Path, config, *, files: Mapping[str, FileSource] | None = None,
                       warmup_files: Mapping[str, bytes] | None = None) -> list[Path]:
    """A whole python-backend model folder: `write_model_files`, then its config.pbtxt; returns the files written."""
    written = write_model_files(model_dir, source, files)
    return written + config_writer.write_config(model_dir, config, warmup_files)
