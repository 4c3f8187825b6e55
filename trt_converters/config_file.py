"""The `--config` file: a YAML or JSON mapping of option names to values, paths relative to the file.

It is one layer of the options (options.py merges the layers); this module only reads and normalises it.
"""

from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.spec import load_mapping_file

PATH_OPTIONS = ("ckpt_path", "model_script_path", "onnx_path", "engine_path", "triton_repo", "timing_cache",
                "calib_data", "verify_data", "tokenizer_path", "output_dir", "report_path", "calibration_cache")


def read_config_file(path: Path) -> dict:
    """A YAML/JSON config: option names as keys, relative paths resolved against the file's folder."""
    from trt_converters.options import PRECISION_FLAGS, ConvertOptions

    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path} does not exist")
    data = load_mapping_file(path, what="--config")
    data = {key.replace("-", "_"): value for key, value in data.items()}
    if "precision" in data:  # --precision's value lives in precision_mode
        data["precision_mode"] = data.pop("precision")
    unknown = sorted(set(data) - set(ConvertOptions.model_fields) - set(PRECISION_FLAGS))
    if unknown:
        raise UserError(f"--config {path}: unknown option {unknown[0]!r}; options are the long flag names, "
                        "e.g. max_batch_size")
    for key in PATH_OPTIONS:
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute() and "://" not in data[key]:
            data[key] = str((path.parent / data[key]).resolve())
    if isinstance(data.get("model_io_config"), str) and not data["model_io_config"].lstrip().startswith("{"):
        candidate = path.parent / data["model_io_config"]
        if candidate.is_file():
            data["model_io_config"] = str(candidate)
    options = data.get("pipeline_options") or {}
    if isinstance(options, dict):
        data["pipeline_options"] = {k: _resolve_relative(path.parent, k, v) for k, v in options.items()}
    return data


def _resolve_relative(base: Path, key: str, value):
    if isinstance(value, str) and key.endswith("_path") and not Path(value).is_absolute():
        return str((base / value).resolve())
    return value
