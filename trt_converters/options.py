"""Every conversion option in one validated object, from layered sources (docs/design.md, "Where options come
from"): flags on the command line > the checkpoint's own config.json > the `--config` YAML > built-in defaults.

Option names are the CLI's long names with underscores, in flags and config files alike.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError, field_validator, model_validator

from trt_converters.errors import UserError
from trt_converters.openvino_cpu.choice import check_cpu_runtime, reconcile_cpu_runtime
from trt_converters.precision.options import PrecisionOptions
from trt_converters.spec import IOSpec, describe_validation_error, parse_byte_size, parse_io_config
from trt_converters.triton.config import DEFAULT_MAX_QUEUE_DELAY_US


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
    triton_repo_uri: Optional[str] = None  # an s3:// --triton-repo (storage/location.py); triton_repo is then None
    model_version: Optional[int] = None
    generate_onnx: bool = False
    generate_trt: bool = False
    generate_triton_config: bool = False
    input_size: Optional[tuple[Optional[int], Optional[int]]] = None
    max_batch_size: int = 8
    preferred_batch_sizes: Optional[list[int]] = None
    max_queue_delay: int = DEFAULT_MAX_QUEUE_DELAY_US
    memory_pool_limit: int = 1 << 30
    memory_limit: Optional[int] = None  # bytes this run may use (memory.py); None: what the machine has free
    dynamic_batching: bool = False
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
    allow_constant_output: list[str] = []
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
    verify_data: Optional[Path] = None
    calib_samples: Optional[int] = None
    calib_method: str = "max"
    calib_percentile: Optional[float] = None
    int8_search: Optional[bool] = None
    int8_outlier_channels: Optional[bool] = None
    # the one precision spelling: --use-fp16/--use-int8 become a mode in build_options (int8_fp16: both)
    precision_mode: Literal["auto", "fp32", "fp16", "int8", "int8_fp16"] = "fp32"
    calibration_cache: Optional[Path] = None
    tokenizer_path: Optional[Path] = None
    image_options: Optional[dict] = None
    onnx_int8: Optional[Literal["dynamic", "static"]] = None
    ort_fusion: bool = True
    cpu_target: Literal["auto", "avx2", "avx512", "avx_vnni", "avx512_vnni"] = "auto"
    tune: bool = False
    cpu_runtime: Literal["auto", "onnxruntime", "openvino"] = "auto"
    openvino_precision: Literal["auto", "fp32", "bf16", "int8"] = "auto"
    triton_backend: Literal["auto", "tensorrt_plan", "onnxruntime_onnx", "python_onnxruntime", "openvino",
                            "python_openvino"] = "auto"  # requested
    instance_kind: Literal["auto", "gpu", "cpu"] = "auto"
    instance_count: int = 1
    model_warmup: Optional[bool] = None  # None: on for TensorRT plans
    response_cache: bool = False
    max_queue_size: Optional[int] = None
    queue_timeout: Optional[int] = None
    queue_timeout_action: Literal["reject", "delay"] = "reject"
    priority_levels: Optional[int] = None
    default_priority_level: Optional[int] = None
    version_policy: Optional[str] = None
    pipeline_instance_count: Optional[dict[str, int]] = None
    triton_parameters: dict[str, str] = {}
    intra_op_threads: Optional[int] = None
    inter_op_threads: Optional[int] = None
    pipeline: Optional[str] = None
    pipeline_options: dict = {}
    pipeline_name: Optional[str] = None
    verbose: bool = False

    _sources: dict = PrivateAttr(default_factory=dict)
    _derived: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _remote_repository(cls, data):
        from trt_converters.storage.location import remote_repository_options

        return remote_repository_options(data)

    @field_validator("model_io_config", mode="before")
    @classmethod
    def _io(cls, value):
        return None if value is None else parse_io_config(value)

    @field_validator("model_name", "pipeline_name")
    @classmethod
    def _servable_name(cls, value):
        from trt_converters.triton.config import model_name_problem

        problem = None if value is None else model_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @field_validator("memory_pool_limit", "memory_limit", mode="before")
    @classmethod
    def _bytes(cls, value):
        return None if value is None else parse_byte_size(value)

    @field_validator("preferred_batch_sizes", "triton_inputs", "allow_constant_output", mode="before")
    @classmethod
    def _comma_list(cls, value):
        if isinstance(value, str):
            items = [item.strip() for item in value.split(",") if item.strip()]
            return items
        return value

    @field_validator("pipeline_instance_count", mode="before")
    @classmethod
    def _instance_counts(cls, value):
        from trt_converters.triton.config import parse_instance_counts

        return parse_instance_counts(value)

    @field_validator("triton_parameters", mode="before")
    @classmethod
    def _parameters(cls, value):
        return {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in value.items()} \
            if isinstance(value, dict) else value

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
        self.precision_options()  # every precision option checked here, before any model is loaded
        from trt_converters.triton.config import check_options

        check_options(self)
        check_cpu_runtime(self)
        if self.triton_inputs is not None and self.model_io_config is not None:
            self.model_io_config.check_triton_inputs(self.triton_inputs)
        if self.pipeline is not None:
            from trt_converters.pipelines import available_pipelines, validate_pipeline_options

            if self.pipeline not in available_pipelines():
                raise UserError(f"unknown pipeline {self.pipeline!r}; available: {', '.join(available_pipelines())}")
            validate_pipeline_options(self.pipeline, self.pipeline_options)
        elif self.pipeline_options:
            raise UserError(f"pipeline option {next(iter(self.pipeline_options))!r} given without a pipeline: "
                            "add --pipeline NAME")
        return self

    def option_sources(self) -> dict[str, str]:
        """Option (or option.key, model_io_config.inputs.NAME.FIELD) -> flag, checkpoint, yaml or default.

        Options built directly (not by build_options) count what was passed as flags."""
        names = [*type(self).model_fields, *PRECISION_FLAGS]
        sources = {name: "flag" if name in self.model_fields_set else "default" for name in names}
        if self._sources:
            sources = {name: "default" for name in names}
        return {**sources, **self._sources}

    def derived_values(self) -> dict:
        """Values set from other options: {key: {"value": ..., "from": "OPTION (SOURCE)"}}."""
        return dict(self._derived)

    def precision_options(self) -> "PrecisionOptions":
        from trt_converters.precision.methods import check_percentile, resolve_method

        int8_paths = []
        if self.precision_mode in ("int8", "int8_fp16", "auto"):
            int8_paths.append("tensorrt")
        if self.onnx_int8 == "static":
            int8_paths.append("onnxruntime")
        method = "max"
        for path in int8_paths or ["tensorrt"]:
            method = resolve_method(self.calib_method, path=path).name
        if self.calib_percentile is not None:
            check_percentile(self.calib_percentile)
            if method not in ("percentile", "auto"):
                raise UserError(f"--calib-percentile applies to --calib-method percentile (or auto), not {method}")
        for flag, value in (("--atol", self.atol), ("--rtol", self.rtol)):
            if value is not None and not value >= 0:
                raise UserError(f"{flag} {value} must be >= 0")
        if self.min_cosine is not None and not -1.0 <= self.min_cosine <= 1.0:
            raise UserError(f"--min-cosine {self.min_cosine} must be between -1 and 1")
        if self.int8_search and not int8_paths[:1] == ["tensorrt"]:
            raise UserError("--int8-search applies to --use-int8 or --precision int8|auto")
        if self.int8_outlier_channels is not None and not int8_paths[:1] == ["tensorrt"]:
            raise UserError("--int8-outlier-channels/--no-int8-outlier-channels apply to --use-int8 or "
                            "--precision int8|auto")
        return PrecisionOptions(mode=self.precision_mode, calib_method=method, calib_percentile=self.calib_percentile,
                                calib_data=self.calib_data, calib_samples=self.calib_samples,
                                calibration_cache=self.calibration_cache, tokenizer_path=self.tokenizer_path,
                                image_options=self.image_options, int8_search=self.int8_search,
                                int8_outlier_channels=self.int8_outlier_channels is not False,
                                atol=self.atol, rtol=self.rtol, min_cosine=self.min_cosine)

    def ort_int8_options(self):
        """onnxruntime_cpu.quantize.OrtInt8Options for --onnx-int8 (None without it)."""
        from trt_converters.onnxruntime_cpu.quantize import OrtInt8Options

        if self.onnx_int8 is None:
            return None
        return OrtInt8Options(mode=self.onnx_int8, calib_method=self.precision_options().calib_method,
                              calib_percentile=self.calib_percentile, cpu_target=self.cpu_target)

    def artifact_dir(self) -> Path:
        return self.output_dir / self.model_name

    def resolved_onnx_path(self) -> Path:
        return self.onnx_path or self.artifact_dir() / "model.onnx"

    def resolved_engine_path(self) -> Path:
        return self.engine_path or self.artifact_dir() / "model.plan"

    def lowered_onnx_path(self, precision: str | None = None) -> Path:
        return self.artifact_dir() / f"model.{precision or self.precision_mode}.onnx"

    def ort_fused_onnx_path(self) -> Path:
        return self.artifact_dir() / "model.ort-fused.onnx"

    def ort_int8_onnx_path(self) -> Path:
        return self.artifact_dir() / f"model.ort-int8-{self.onnx_int8}.onnx"

    def resolved_report_path(self) -> Path:
        return self.report_path or self.artifact_dir() / "report.json"

    def resolved_pipeline_name(self) -> str:
        return self.pipeline_name or f"{self.model_name}_{self.pipeline}"


# strongest first; "report": what a trt-convert report.json says of the model (trt-bench --report)
SOURCES = ("flag", "checkpoint", "yaml", "report", "default")
MERGED_BY_KEY = ("model_kwargs", "pipeline_options", "image_options", "triton_parameters")  # layers merge these key by key


def build_options(config_values: dict, cli_values: dict, *, read_checkpoint: bool = True,
                  report_values: dict | None = None) -> ConvertOptions:
    """Flags > the checkpoint's config.json > the `--config` YAML > `report_values` > defaults, validated with
    one-line errors.

    Where each effective value came from is kept on the options (`option_sources()`, `derived_values()`),
    for the report.
    """
    layers = {"report": _parsed(report_values or {}), "yaml": _parsed(config_values), "flag": _parsed(cli_values)}
    values, sources = _merge(layers)
    model_class = None
    if read_checkpoint:
        from trt_converters.checkpoint_config import checkpoint_layer

        model_class, layers["checkpoint"] = checkpoint_layer(values, sources)
        values, sources = _merge(layers)
    derived: dict = {}
    _derive_io(layers, values, sources, derived, model_class)
    _reconcile(values, sources, derived)
    _precision_mode(values)
    try:
        options = ConvertOptions.model_validate(values)
    except ValidationError as exc:
        raise UserError(_as_flag_message(describe_validation_error(exc))) from None
    options._sources = sources
    options._derived = derived
    return options


PRECISION_FLAGS = ("use_fp16", "use_int8")  # the original tool's spelling of the precision mode


def _precision_mode(values: dict) -> None:
    """--use-fp16/--use-int8 (flags or YAML) become `precision_mode`, the one spelling the code reads."""
    use_fp16, use_int8 = (bool(values.pop(name, False)) for name in PRECISION_FLAGS)
    if values.get("precision_mode") is not None and (use_fp16 or use_int8):
        raise UserError("--precision replaces --use-fp16/--use-int8; pass one or the other")
    if values.get("precision_mode") is None:
        values["precision_mode"] = ("int8_fp16" if use_fp16 else "int8") if use_int8 else \
            ("fp16" if use_fp16 else "fp32")
    if values["precision_mode"] in ("int8", "int8_fp16") and values.get("onnx_int8"):
        raise UserError("--use-int8 (TensorRT Q/DQ) and --onnx-int8 (ONNX Runtime integer kernels) target different "
                        "runtimes; pick one per run")


def _parsed(values: dict) -> dict:
    parsed = dict(values)
    if isinstance(parsed.get("model_kwargs"), str):
        parsed["model_kwargs"] = _json_object(parsed["model_kwargs"], "--model-kwargs")
    return parsed


def _merge(layers: dict) -> tuple[dict, dict]:
    """Values by precedence; dict options key by key. Sources: option (or option.key) -> layer name."""
    values: dict = {}
    sources: dict = {}
    for name in reversed(SOURCES[:-1]):  # weakest first, each overriding the one before
        for key, value in (layers.get(name) or {}).items():
            if key in MERGED_BY_KEY and isinstance(value, dict):
                merged = values.get(key) if isinstance(values.get(key), dict) else {}
                values[key] = {**merged, **value}
                sources.update({f"{key}.{item}": name for item in value})
                sources[key] = _strongest(sources[f"{key}.{item}"] for item in values[key]) if values[key] else name
            else:
                values[key] = value
                sources[key] = name
    return values, sources


def _strongest(names) -> str:
    return min(names, key=_rank, default="default")


def _rank(source: str) -> int:
    return SOURCES.index(source) if source in SOURCES else len(SOURCES)


def _derive_io(layers: dict, values: dict, sources: dict, derived: dict, model_class) -> None:
    """IO values the model kwargs fix (token-id range, sequence limit, output widths) replace those of an IO
    spec from a weaker source. A value's source is the strongest layer whose kwargs changed it."""
    from trt_converters import checkpoint_config

    io = values.get("model_io_config")
    if model_class is None or io is None:
        return
    spec = parse_io_config(io)
    order = ("yaml", "checkpoint", "flag")
    by_layer = {}
    for depth, name in enumerate(order, start=1):
        kwargs = _merge({layer: layers[layer] for layer in order[:depth] if layer in layers})[0].get("model_kwargs")
        io_values = checkpoint_config.io_values(model_class, kwargs or {}) or {}
        by_layer[name] = checkpoint_config.io_changes(spec, io_values)
    applied = {}
    for field, value in by_layer["flag"].items():
        source = next((name for name, below in (("flag", "checkpoint"), ("checkpoint", "yaml"))
                       if by_layer[name].get(field) != by_layer[below].get(field)), "yaml")
        unset = field.endswith(".value_range") and spec.input(field.split(".")[1]).value_range is None
        if _rank(source) < _rank(sources.get("model_io_config", "default")) or unset:  # fills, never overrides
            applied[field] = value
            sources[f"model_io_config.{field}"] = source
            derived[f"model_io_config.{field}"] = {"value": value, "from": f"model_kwargs ({source})"}
    values["model_io_config"] = checkpoint_config.with_io_fields(spec, applied)


def _reconcile(values: dict, sources: dict, derived: dict) -> None:
    """A value from a weaker source gives way to a stronger one that it contradicts (a typed
    `--max-batch-size 4` caps a YAML's `input_size: [8, 128]`); contradictions within one source stay errors."""
    def stronger(governing: str, dependent: str) -> bool:
        return _rank(sources.get(governing, "default")) < _rank(sources.get(dependent, "default"))

    max_batch = values.get("max_batch_size", ConvertOptions.model_fields["max_batch_size"].default)
    size = values.get("input_size")
    if isinstance(size, (list, tuple)) and len(size) == 2:
        batch, sequence = size
        if _as_int(batch) is not None and isinstance(max_batch, int) and _as_int(batch) > max_batch \
                and stronger("max_batch_size", "input_size"):
            batch = max_batch
            derived["input_size"] = {"value": [batch, sequence],
                                     "from": f"max_batch_size ({sources['max_batch_size']})"}
        io = values.get("model_io_config")
        limit = _sequence_limit(io)
        io_source = _strongest([sources.get("model_io_config", "default")]
                               + [v for k, v in sources.items() if k.endswith(".max_shape")])
        if _as_int(sequence) is not None and limit is not None and _as_int(sequence) > limit \
                and _rank(io_source) < _rank(sources.get("input_size", "default")):
            sequence = limit
            derived["input_size"] = {"value": [batch, sequence], "from": f"model_io_config max_shape ({io_source})"}
        values["input_size"] = (batch, sequence)
    reconcile_cpu_runtime(values, sources, derived, _rank)
    preferred = values.get("preferred_batch_sizes")
    if isinstance(preferred, (list, tuple)) and isinstance(max_batch, int) and stronger("max_batch_size",
                                                                                       "preferred_batch_sizes"):
        kept = [size for size in preferred if (_as_int(size) or 0) <= max_batch]
        if len(kept) != len(preferred):
            values["preferred_batch_sizes"] = kept or None
            derived["preferred_batch_sizes"] = {"value": kept or None,
                                                "from": f"max_batch_size ({sources['max_batch_size']})"}


def _as_int(value) -> Optional[int]:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _sequence_limit(io) -> Optional[int]:
    from trt_converters.checkpoint_config import sequence_limit

    if io is None:
        return None
    return sequence_limit(parse_io_config(io))


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
