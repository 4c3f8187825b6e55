"""Every conversion option in one validated object: tool defaults < `--config FILE` < flags on the command line.

Option names are the CLI's long names with underscores, in flags and config files alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec, describe_validation_error, load_mapping_file, parse_byte_size, parse_io_config

PATH_OPTIONS = ("ckpt_path", "model_script_path", "onnx_path", "engine_path", "triton_repo", "timing_cache",
                "calib_data", "tokenizer_path", "output_dir", "report_path", "calibration_cache")


class ConvertOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    # the original tool's options, same meaning and defaults
    ckpt_path: Optional[Path] = None
    model_script_path: Optional[Path] = None
    model_class_name: Optional[str] = None
    model_io_config: Optional[IOSpec] = None
    model_name: Optional[str] = None
    onnx_path: Optional[Path] = None
    engine_path: Optional[Path] = None
    triton_repo: Optional[Path] = None
    generate_onnx: bool = False
    generate_trt: bool = False
    generate_triton_config: bool = False
    input_size: Optional[tuple[Optional[int], Optional[int]]] = None
    max_batch_size: int = 8
    preferred_batch_sizes: Optional[list[int]] = None
    max_queue_delay: int = 100
    memory_pool_limit: int = 1 << 30
    dynamic_batching: bool = False
    use_fp16: bool = False
    use_int8: bool = False
    triton_inputs: Optional[list[str]] = None
    overwrite: bool = False
    device: Literal["cpu", "cuda"] = "cpu"
    # added here
    model_kwargs: dict = {}
    strict: bool = True
    output_dir: Path = Path("trt_out")
    report_path: Optional[Path] = None
    opset: int = 18
    exporter: Literal["auto", "dynamo", "legacy"] = "auto"
    skip_verify: bool = False
    atol: Optional[float] = None
    rtol: Optional[float] = None
    min_cosine: Optional[float] = None
    trt_backend: Literal["auto", "tensorrt", "tensorrt-rtx"] = "auto"
    timing_cache: Optional[Path] = None
    builder_optimization_level: Optional[int] = None
    tf32: Optional[bool] = None
    version_compatible: bool = False
    hardware_compatibility_level: Optional[Literal["none", "ampere_plus", "same_compute_capability"]] = None
    weak_typing_fp16: bool = False
    calib_data: Optional[Path] = None
    calib_samples: Optional[int] = None
    calib_method: str = "max"
    calibration_cache: Optional[Path] = None
    tokenizer_path: Optional[Path] = None
    image_options: Optional[dict] = None
    onnx_int8: Optional[Literal["dynamic", "static"]] = None
    ort_fusion: bool = True
    cpu_target: Literal["auto", "avx2", "avx512", "avx_vnni", "avx512_vnni"] = "auto"
    tune: bool = False
    ort_optimization_level: Optional[Literal["basic", "extended", "all"]] = None
    triton_backend: Literal["tensorrt_plan", "onnxruntime_onnx", "python_onnxruntime"] = "tensorrt_plan"
    instance_kind: Literal["gpu", "cpu"] = "gpu"
    instance_count: int = 1
    intra_op_threads: Optional[int] = None
    inter_op_threads: Optional[int] = None
    pipeline: Optional[str] = None
    pipeline_options: dict = {}
    pipeline_name: Optional[str] = None
    verbose: bool = False

    @field_validator("model_io_config", mode="before")
    @classmethod
    def _io(cls, value):
        return None if value is None else parse_io_config(value)

    @field_validator("memory_pool_limit", mode="before")
    @classmethod
    def _bytes(cls, value):
        return parse_byte_size(value)

    @field_validator("preferred_batch_sizes", "triton_inputs", mode="before")
    @classmethod
    def _comma_list(cls, value):
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            return items
        return value

    @field_validator("input_size", mode="before")
    @classmethod
    def _input_size(cls, value):
        if value is None:
            return None
        values = [None if v in (None, "None", "none", -1, "-1") else int(v) for v in value]
        if len(values) != 2:
            raise ValueError("takes two values: batch size and sequence length, e.g. --input-size 8 128")
        return tuple(values)

    @model_validator(mode="after")
    def _consistent(self) -> "ConvertOptions":
        if self.max_batch_size < 1:
            raise ValueError("max_batch_size: must be >= 1")
        if self.instance_count < 1:
            raise ValueError("instance_count: must be >= 1")
        if self.builder_optimization_level is not None and not 0 <= self.builder_optimization_level <= 5:
            raise ValueError("builder_optimization_level: must be between 0 and 5")
        if self.calib_samples is not None and self.calib_samples < 1:
            raise ValueError("calib_samples: must be >= 1")
        if self.preferred_batch_sizes:
            from trt_converters.triton.config import check_preferred_batch_sizes

            check_preferred_batch_sizes(self.preferred_batch_sizes, self.max_batch_size)
        if self.triton_inputs is not None and self.model_io_config is not None:
            declared = [t.name for t in self.model_io_config.inputs]
            unknown = [name for name in self.triton_inputs if name not in declared]
            if unknown:
                raise UserError(f"--triton-inputs names {unknown[0]!r}, which is not an input in --model-io-config "
                                f"({', '.join(declared)})")
        if self.pipeline is not None:
            from trt_converters.pipelines import available_pipelines

            if self.pipeline not in available_pipelines():
                raise UserError(f"unknown pipeline {self.pipeline!r}; available: {', '.join(available_pipelines())}")
        return self

    @property
    def precision(self) -> str:
        if self.use_int8:
            return "int8_fp16" if self.use_fp16 else "int8"
        return "fp16" if self.use_fp16 else "fp32"

    def artifact_dir(self) -> Path:
        return self.output_dir / self.model_name

    def resolved_onnx_path(self) -> Path:
        return self.onnx_path or self.artifact_dir() / "model.onnx"

    def resolved_engine_path(self) -> Path:
        return self.engine_path or self.artifact_dir() / "model.plan"

    def lowered_onnx_path(self) -> Path:
        return self.artifact_dir() / f"model.{self.precision}.onnx"

    def ort_fused_onnx_path(self) -> Path:
        return self.artifact_dir() / "model.ort-fused.onnx"

    def ort_int8_onnx_path(self) -> Path:
        return self.artifact_dir() / f"model.ort-int8-{self.onnx_int8}.onnx"

    def resolved_report_path(self) -> Path:
        return self.report_path or self.artifact_dir() / "report.json"

    def resolved_pipeline_name(self) -> str:
        return self.pipeline_name or f"{self.model_name}_{self.pipeline}"


def read_config_file(path: Path) -> dict:
    """A YAML/JSON config: option names as keys, relative paths resolved against the file's folder."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--config {path} does not exist")
    data = load_mapping_file(path, what="--config")
    data = {key.replace("-", "_"): value for key, value in data.items()}
    unknown = sorted(set(data) - set(ConvertOptions.model_fields))
    if unknown:
        raise UserError(f"--config {path}: unknown option {unknown[0]!r}; options are the long flag names, "
                        "e.g. max_batch_size")
    for key in PATH_OPTIONS:
        if isinstance(data.get(key), str) and not Path(data[key]).is_absolute():
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


def build_options(config_values: dict, cli_values: dict) -> ConvertOptions:
    """Config file values, then flags given on the command line; validated with one-line errors."""
    merged = {**config_values, **cli_values}
    for key in ("model_kwargs",):
        if isinstance(merged.get(key), str):
            merged[key] = _json_object(merged[key], f"--{key.replace('_', '-')}")
    if "model_kwargs" in cli_values and "model_kwargs" in config_values:
        merged["model_kwargs"] = {**config_values["model_kwargs"], **merged["model_kwargs"]}
    try:
        return ConvertOptions.model_validate(merged)
    except ValidationError as exc:
        raise UserError(_as_flag_message(describe_validation_error(exc))) from None


def _as_flag_message(message: str) -> str:
    """'max_batch_size: must be >= 1' -> '--max-batch-size: must be >= 1'."""
    name, separator, rest = message.partition(": ")
    if separator and name.split(".")[0] in ConvertOptions.model_fields:
        return f"--{name.replace('_', '-')}: {rest}"
    return message


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"{flag} is not valid JSON ({exc.msg}); pass an object like '{{\"num_labels\": 4}}'") from None
    if not isinstance(value, dict):
        raise UserError(f"{flag} must be a JSON object")
    return value
