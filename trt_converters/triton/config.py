"""Every Triton `config.pbtxt` this toolkit writes: built as Triton's ModelConfig protobuf (shipped by
tritonclient), checked against the engine's optimization profile, and printed as text.

Core models, python pre/post-processing models, BLS entry models and ensembles are all made here;
pipelines only say which tensors and parameters their models have.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Optional

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec, TensorSpec
from trt_converters.triton.backends import (KIND_CPU, ONNXRUNTIME_ONNX, OPENVINO, PYTHON_ONNXRUNTIME,
                                            PYTHON_OPENVINO, SERVING_BACKENDS, TENSORRT_PLAN)

MODEL_FILES = {TENSORRT_PLAN: "model.plan", ONNXRUNTIME_ONNX: "model.onnx", PYTHON_ONNXRUNTIME: "model.onnx",
               OPENVINO: "model.xml", PYTHON_OPENVINO: "model.xml"}  # OpenVINO IR: model.bin beside model.xml
# A model is a folder of the repository and a segment of /v2/models/<name>/... URLs: no separators, no
# hidden or relative folders, nothing a URL would need to escape.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")
WARMUP_FOLDER = "warmup"  # Triton reads input_data_file from <model>/warmup/
# A sentence of ordinary length: text models warm up on what they will see, not on empty strings.
WARMUP_SENTENCE = "Triton warms this model up with a sentence of ordinary length before serving requests."
PIPELINE_ROLES = ("tokenizer", "preprocess", "postprocess", "entry")
# Dynamic batching's wait for more requests when nothing else sets one: the original tool's 100 µs.
DEFAULT_MAX_QUEUE_DELAY_US = 100
_VERSION_POLICY = re.compile(r"^(all|latest(?::(\d+))?|specific:(\d+(?:,\d+)*))$")


def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def model_name_problem(name: str) -> str | None:
    """Why Triton cannot serve a model of this name, or None."""
    if _MODEL_NAME.fullmatch(name):
        return None
    suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).lstrip("._-")[:200] or "model"
    return (f"{name!r} cannot be a Triton model name: the name is a folder in the repository, so use letters, "
            f"digits, '_', '-' and '.' (not first), at most 200 characters, e.g. {suggestion!r}")


# -- settings taken from the options -------------------------------------------------------------
@dataclass(frozen=True)
class Scheduling:
    """What the options ask of a model's scheduler and lifecycle (dynamic batching and beyond)."""

    dynamic_batching: bool = False
    preferred_batch_sizes: Optional[list[int]] = None
    max_queue_delay_us: int = DEFAULT_MAX_QUEUE_DELAY_US
    max_queue_size: Optional[int] = None
    queue_timeout_us: Optional[int] = None
    queue_timeout_action: str = "reject"
    priority_levels: Optional[int] = None
    default_priority_level: Optional[int] = None
    response_cache: bool = False
    version_policy: Optional[str] = None
    warmup: bool = False
    parameters: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options, *, serving_backend: str) -> "Scheduling":
        warmup = options.model_warmup if options.model_warmup is not None else serving_backend == TENSORRT_PLAN
        return cls(dynamic_batching=options.dynamic_batching, preferred_batch_sizes=options.preferred_batch_sizes,
                   max_queue_delay_us=options.max_queue_delay, max_queue_size=options.max_queue_size,
                   queue_timeout_us=options.queue_timeout, queue_timeout_action=options.queue_timeout_action,
                   priority_levels=options.priority_levels, default_priority_level=options.default_priority_level,
                   response_cache=options.response_cache and not options.pipeline,
                   version_policy=options.version_policy, warmup=warmup, parameters=dict(options.triton_parameters))


@dataclass(frozen=True)
class PipelineServing:
    """What the options ask of the pre/post-processing models a pipeline writes."""

    instance_counts: Mapping[str, int] = field(default_factory=dict)  # role -> count; "*" for every role
    response_cache: bool = False  # on the entry model users call
    warmup: bool = False  # text models warm up on a real sentence

    def instances(self, role: str) -> int:
        return int(self.instance_counts.get(role, self.instance_counts.get("*", 1)))


def parse_instance_counts(value) -> dict[str, int] | None:
    """--pipeline-instance-count: 3 (every pre/post model), or tokenizer=2,postprocess=1 (per role); YAML may give
    a mapping."""
    if value is None or isinstance(value, dict):
        return value
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        return {"*": int(value)}
    counts = {}
    for item in str(value).split(","):
        role, separator, count = item.partition("=")
        if not separator or not count.strip().isdigit():
            raise ValueError(f"{value!r}: give a count (2) or ROLE=COUNT pairs (tokenizer=2,postprocess=1)")
        counts[role.strip()] = int(count)
    return counts


def check_options(options) -> None:
    """Checks of the config-related options that need nothing but the options (run before any work)."""
    if options.triton_backend == TENSORRT_PLAN and options.instance_kind == KIND_CPU:
        raise UserError("--instance-kind cpu cannot serve a TensorRT plan; use --triton-backend auto or "
                        "python_onnxruntime for CPU serving")
    if options.preferred_batch_sizes:
        check_preferred_batch_sizes(options.preferred_batch_sizes, options.max_batch_size)
    queue = {"--max-queue-size": options.max_queue_size, "--queue-timeout": options.queue_timeout,
             "--priority-levels": options.priority_levels}
    given = [flag for flag, value in queue.items() if value is not None]
    if given and not options.dynamic_batching:
        raise UserError(f"{given[0]} configures the dynamic batcher's queue: add --dynamic-batching")
    for flag, value in queue.items():
        if value is not None and value < (0 if flag == "--queue-timeout" else 1):
            raise UserError(f"{flag} must be >= {0 if flag == '--queue-timeout' else 1}, got {value}")
    if options.default_priority_level is not None:
        if options.priority_levels is None:
            raise UserError("--default-priority-level needs --priority-levels")
        if not 1 <= options.default_priority_level <= options.priority_levels:
            raise UserError(f"--default-priority-level {options.default_priority_level} must be within 1.."
                            f"{options.priority_levels} (--priority-levels)")
    if options.version_policy is not None and not _VERSION_POLICY.match(options.version_policy):
        raise UserError(f"--version-policy {options.version_policy!r} must be all, latest:N or specific:V[,V...]")
    if getattr(options, "model_version", None) is not None and options.model_version < 1:
        raise UserError(f"--model-version must be >= 1, got {options.model_version}")
    unknown = sorted(set(options.pipeline_instance_count or {}) - {*PIPELINE_ROLES, "*"})
    if unknown:
        raise UserError(f"--pipeline-instance-count names role {unknown[0]!r}; roles: {', '.join(PIPELINE_ROLES)}")
    if any(count < 1 for count in (options.pipeline_instance_count or {}).values()):
        raise UserError("--pipeline-instance-count must be >= 1")


def default_preferred_batch_sizes(max_batch_size: int) -> list[int]:
    """Powers of two from 1 up to max_batch_size (the original tool's default)."""
    sizes, size = [], 1
    while size <= max_batch_size:
        sizes.append(size)
        size *= 2
    return sizes


def check_preferred_batch_sizes(sizes: list[int], max_batch_size: int) -> list[int]:
    too_large = [s for s in sizes if s > max_batch_size]
    if too_large:
        raise UserError(f"--preferred-batch-sizes {too_large[0]} is above --max-batch-size {max_batch_size}; "
                        "lower it or raise --max-batch-size")
    if any(s < 1 for s in sizes):
        raise UserError("--preferred-batch-sizes must all be >= 1")
    return sorted(set(sizes))


# -- building blocks ---------------------------------------------------------------------------
def tensor(message_type, name: str, data_type: str, dims: Iterable[int], *, optional: bool = False):
    """A ModelInput/ModelOutput; data_type is Triton's name, e.g. TYPE_FP32."""
    message = message_type(name=name, data_type=_pb().DataType.Value(data_type))
    message.dims.extend(list(dims))
    if optional:
        message.optional = True
    return message


def tensor_config(spec: TensorSpec, message_type):
    return tensor(message_type, spec.name, spec.triton_dtype, spec.shape)


def add_tensor(entries, name: str, data_type: str, dims: Iterable[int], *, optional: bool = False):
    """Appends a tensor to a config's `input` or `output` list and returns it."""
    entry = entries.add(name=name, data_type=_pb().DataType.Value(data_type))
    entry.dims.extend(list(dims))
    if optional:
        entry.optional = True
    return entry


def add_spec(entries, spec: TensorSpec):
    return add_tensor(entries, spec.name, spec.triton_dtype, spec.shape)


def _set_parameters(config, parameters: Mapping[str, object]) -> None:
    import json

    for key, value in parameters.items():
        config.parameters[key].string_value = value if isinstance(value, str) else json.dumps(value)


def _instances(config, kind: str, count: int) -> None:
    pb = _pb()
    config.instance_group.add(count=count, kind=pb.ModelInstanceGroup.Kind.Value(f"KIND_{kind.upper()}"))


# -- the model kinds -----------------------------------------------------------------------------
def model_config(name: str, *, serving_backend: str, io: IOSpec, max_batch_size: int,
                 scheduling: Scheduling = Scheduling(), instance_kind: str = "gpu", instance_count: int = 1,
                 parameters: Mapping[str, object] | None = None):
    """The ModelConfig of a converted core model (warmup entries are added by `add_warmup`)."""
    pb = _pb()
    if serving_backend not in SERVING_BACKENDS:
        raise UserError(f"--triton-backend {serving_backend!r} is not one of {', '.join(SERVING_BACKENDS)}")
    if serving_backend == TENSORRT_PLAN and instance_kind == KIND_CPU:
        raise UserError("--instance-kind cpu cannot serve a TensorRT plan; use --triton-backend onnxruntime_onnx, "
                        "python_onnxruntime, openvino or python_openvino for CPU serving")
    config = pb.ModelConfig(name=name, max_batch_size=max_batch_size)
    if serving_backend in (PYTHON_ONNXRUNTIME, PYTHON_OPENVINO):
        config.backend = "python"
    elif serving_backend == OPENVINO:  # Triton's openvino backend has no platform name
        config.backend = "openvino"
    else:
        config.platform = serving_backend
    config.input.extend(tensor_config(t, pb.ModelInput) for t in io.inputs)
    config.output.extend(tensor_config(t, pb.ModelOutput) for t in io.outputs)
    _instances(config, instance_kind, instance_count)
    if scheduling.dynamic_batching:
        sizes = check_preferred_batch_sizes(scheduling.preferred_batch_sizes
                                            or default_preferred_batch_sizes(max_batch_size), max_batch_size)
        batching = config.dynamic_batching
        batching.preferred_batch_size.extend(sizes)
        batching.max_queue_delay_microseconds = scheduling.max_queue_delay_us
        if scheduling.max_queue_size is not None or scheduling.queue_timeout_us is not None:
            policy = batching.default_queue_policy
            policy.timeout_action = pb.ModelQueuePolicy.TimeoutAction.Value(scheduling.queue_timeout_action.upper())
            if scheduling.queue_timeout_us is not None:
                policy.default_timeout_microseconds = scheduling.queue_timeout_us
            if scheduling.max_queue_size is not None:
                policy.max_queue_size = scheduling.max_queue_size
        if scheduling.priority_levels is not None:
            batching.priority_levels = scheduling.priority_levels
            batching.default_priority_level = scheduling.default_priority_level or scheduling.priority_levels
    if scheduling.response_cache:
        config.response_cache.enable = True
    if scheduling.version_policy is not None:
        _version_policy(config, scheduling.version_policy)
    _set_parameters(config, {**(parameters or {}), **scheduling.parameters})
    return config


def _version_policy(config, policy: str) -> None:
    match = _VERSION_POLICY.match(policy)
    if match is None:
        raise UserError(f"--version-policy {policy!r} must be all, latest:N or specific:V[,V...]")
    if policy == "all":
        config.version_policy.all.SetInParent()
    elif policy.startswith("latest"):
        config.version_policy.latest.num_versions = int(match.group(2) or 1)
    else:
        config.version_policy.specific.versions.extend(int(v) for v in match.group(3).split(","))


def python_model_config(name: str, *, max_batch_size: int, parameters: Mapping[str, object] | None = None,
                        instance_count: int = 1, batching: bool = True, max_queue_delay_us: int | None = None,
                        response_cache: bool = False):
    """A python-backend pre/post-processing or BLS model; it runs on the CPU whatever device the core uses."""
    config = _pb().ModelConfig(name=name, backend="python", max_batch_size=max_batch_size)
    _instances(config, "cpu", instance_count)
    if batching and max_batch_size > 0:
        config.dynamic_batching.SetInParent()
        if max_queue_delay_us is not None:
            config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    if response_cache:
        config.response_cache.enable = True
    _set_parameters(config, parameters or {})
    return config


def ensemble_config(name: str, *, max_batch_size: int, steps: list[tuple[str, dict, dict]],
                    response_cache: bool = False):
    """An ensemble; steps are (model, {its input: ensemble tensor}, {its output: ensemble tensor})."""
    config = _pb().ModelConfig(name=name, platform="ensemble", max_batch_size=max_batch_size)
    for model_name, inputs, outputs in steps:
        step = config.ensemble_scheduling.step.add(model_name=model_name, model_version=-1)
        step.input_map.update(inputs)
        step.output_map.update(outputs)
    if response_cache:
        config.response_cache.enable = True
    return config


def image_to_text_config(name: str, *, max_batch_size: int, parameters: Mapping[str, object],
                         instance_count: int = 1, response_cache: bool = False):
    """A BLS entry model: `image` (encoded bytes) or `image_raw` (uint8 HWC) in, `text` out. It only
    orchestrates; the heavy work runs in the core models it calls."""
    config = python_model_config(name, max_batch_size=max_batch_size, parameters=parameters, batching=False,
                                 instance_count=instance_count, response_cache=response_cache)
    add_tensor(config.input, "image", "TYPE_STRING", [1], optional=True)
    add_tensor(config.input, "image_raw", "TYPE_UINT8", [-1, -1, -1], optional=True)
    add_tensor(config.output, "text", "TYPE_STRING", [1])
    return config


# -- warmup ----------------------------------------------------------------------------------------
def warmup_shapes(profiles: dict, max_batch_size: int) -> list[tuple[int, dict[str, tuple[int, ...]]]]:
    """(batch, {input: dims without batch}) at batch 1 and the max batch; the other dims at the profile's
    opt shape (the sequence length real text has), not the worst case."""
    batches = sorted({1, max(max_batch_size, 1)})
    return [(batch, {name: tuple(p.opt[1:]) for name, p in profiles.items()}) for batch in batches]


def add_warmup(config, io: IOSpec, profiles: dict) -> dict[str, bytes]:
    """Adds model_warmup entries from the IO spec (value_range-respecting data, one sample repeated over the
    batch by the server) and returns the data files to write under `warmup/`."""
    from trt_converters.shapes import synthetic_inputs

    pb = _pb()
    files: dict[str, bytes] = {}
    served = [t for t in io.inputs if any(i.name == t.name for i in config.input)]
    for batch, dims in warmup_shapes({t.name: profiles[t.name] for t in served}, config.max_batch_size):
        sample = synthetic_inputs(io.with_inputs([t.name for t in served]),
                                  {name: (1, *shape) for name, shape in dims.items()}, seed=batch)
        warmup = config.model_warmup.add(name=f"batch_{batch}", batch_size=batch if config.max_batch_size else 0,
                                         count=1)
        for spec in served:
            filename = f"{spec.name}_{'x'.join(map(str, dims[spec.name]))}".replace("/", "_")
            files[filename] = sample[spec.name].astype(spec.numpy_dtype).tobytes()
            entry = warmup.inputs[spec.name]
            entry.data_type = pb.DataType.Value(spec.triton_dtype)
            entry.dims.extend(dims[spec.name])
            entry.input_data_file = filename
    return files


def add_text_warmup(config, input_name: str, batch_sizes: Iterable[int]) -> dict[str, bytes]:
    """Warmup of a model whose input is one string per row: a real sentence, at each batch size."""
    import struct

    pb = _pb()
    data = WARMUP_SENTENCE.encode("utf-8")
    filename = f"{input_name}_sentence"
    for batch in sorted(set(batch_sizes)):
        warmup = config.model_warmup.add(name=f"batch_{batch}", batch_size=batch, count=1)
        entry = warmup.inputs[input_name]
        entry.data_type = pb.TYPE_STRING
        entry.dims.append(1)
        entry.input_data_file = filename
    return {filename: struct.pack("<I", len(data)) + data}


# -- consistency with the engine's profile -----------------------------------------------------------
def check_against_profiles(config, profiles: dict) -> None:
    """The config must describe what the engine accepts: same max batch, dims inside the profile, preferred
    batch sizes and warmup shapes within it. Raises UserError naming the first disagreement."""
    if not profiles:
        return
    batches = {(p.min[0], p.max[0]) for p in profiles.values()}
    low, high = min(b[0] for b in batches), min(b[1] for b in batches)
    if config.max_batch_size and config.max_batch_size != high:
        raise UserError(f"{config.name}: max_batch_size {config.max_batch_size} differs from the profile's max batch "
                        f"{high}; build and package with the same --max-batch-size")
    for size in config.dynamic_batching.preferred_batch_size:
        if not low <= size <= high:
            raise UserError(f"{config.name}: preferred batch size {size} is outside the profile's batch range "
                            f"{low}..{high}")
    for entry in config.input:
        profile = profiles.get(entry.name)
        if profile is None:
            raise UserError(f"{config.name}: input {entry.name!r} has no optimization profile")
        dims = list(entry.dims)
        if len(dims) + 1 != len(profile.max):
            raise UserError(f"{config.name}: input {entry.name!r} dims {dims} have rank {len(dims)} but the profile "
                            f"{list(profile.max[1:])} has rank {len(profile.max) - 1}")
        for axis, (dim, lo, hi) in enumerate(zip(dims, profile.min[1:], profile.max[1:])):
            if dim == -1 and lo == hi:
                continue  # a dynamic dim the profile pins to one size is still served correctly
            if dim != -1 and not lo == dim == hi:
                raise UserError(f"{config.name}: input {entry.name!r} dim {axis} is {dim} in the config but "
                                f"{lo}..{hi} in the profile")
    for warmup in config.model_warmup:
        for name, entry in warmup.inputs.items():
            profile = profiles.get(name)
            if profile is None:
                continue
            shape = (max(warmup.batch_size, 1), *entry.dims)
            if len(shape) != len(profile.min) or any(not lo <= d <= hi for d, lo, hi in
                                                     zip(shape, profile.min, profile.max)):
                raise UserError(f"{config.name}: warmup {warmup.name!r} shape {list(shape)} for {name!r} is outside "
                                f"the profile {list(profile.min)}..{list(profile.max)}")


# -- text ------------------------------------------------------------------------------------------
def to_text(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def write_config(model_dir: Path, config, warmup_files: Mapping[str, bytes] | None = None) -> list[Path]:
    """Writes `<model_dir>/config.pbtxt` (and `warmup/` data files); returns the paths written.

    Callers write into a staging folder that is moved into place whole, and plain writes keep the umask's
    permissions, so a server running as another user can read the files.
    """
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, data in (warmup_files or {}).items():
        path = model_dir / WARMUP_FOLDER / filename
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    path = model_dir / "config.pbtxt"
    path.write_text(to_text(config), encoding="utf-8")
    return [path, *written]


def parse_config_text(text: str):
    """Parses config.pbtxt text back into a ModelConfig; unknown fields and enums raise ParseError."""
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())


def read_config(path: Path):
    return parse_config_text(Path(path).read_text())


def parse_config_json(config_json: dict):
    """The server's JSON model config (GET /v2/models/<name>/config) as a ModelConfig."""
    from google.protobuf import json_format

    return json_format.ParseDict(config_json, _pb().ModelConfig(), ignore_unknown_fields=True)


def data_type_name(value: int) -> str:
    """A ModelConfig data type enum value as its name, e.g. TYPE_STRING."""
    return _pb().DataType.Name(value)
