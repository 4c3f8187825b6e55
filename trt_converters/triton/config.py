"""Triton `config.pbtxt` built as Triton's ModelConfig protobuf (shipped by tritonclient) and printed as text."""

from __future__ import annotations

import re
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec, TensorSpec

SERVING_BACKENDS = ("tensorrt_plan", "onnxruntime_onnx", "python_onnxruntime")
MODEL_FILES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx", "python_onnxruntime": "model.onnx"}
# A model is a folder of the repository and a segment of /v2/models/<name>/... URLs: no separators, no
# hidden or relative folders, nothing a URL would need to escape.
_MODEL_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}")


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


def tensor_config(tensor: TensorSpec, message_type):
    pb = _pb()
    message = message_type(name=tensor.name, data_type=pb.DataType.Value(tensor.triton_dtype))
    message.dims.extend(tensor.shape)
    return message


def model_config(name: str, *, serving_backend: str, io: IOSpec, max_batch_size: int,
                 dynamic_batching: bool = True, preferred_batch_sizes: list[int] | None = None,
                 max_queue_delay_us: int = 100, instance_kind: str = "gpu", instance_count: int = 1,
                 parameters: dict[str, str] | None = None):
    """The ModelConfig of a converted core model."""
    pb = _pb()
    if serving_backend not in SERVING_BACKENDS:
        raise UserError(f"--triton-backend {serving_backend!r} is not one of {', '.join(SERVING_BACKENDS)}")
    if serving_backend == "tensorrt_plan" and instance_kind == "cpu":
        raise UserError("--instance-kind cpu cannot serve a TensorRT plan; use --triton-backend onnxruntime_onnx "
                        "or python_onnxruntime for CPU serving")
    config = pb.ModelConfig(name=name, max_batch_size=max_batch_size)
    if serving_backend == "python_onnxruntime":
        config.backend = "python"
    else:
        config.platform = serving_backend
    config.input.extend(tensor_config(t, pb.ModelInput) for t in io.inputs)
    config.output.extend(tensor_config(t, pb.ModelOutput) for t in io.outputs)
    kind = pb.ModelInstanceGroup.Kind.Value("KIND_GPU" if instance_kind == "gpu" else "KIND_CPU")
    config.instance_group.add(count=instance_count, kind=kind)
    if dynamic_batching:
        sizes = check_preferred_batch_sizes(preferred_batch_sizes or default_preferred_batch_sizes(max_batch_size),
                                            max_batch_size)
        config.dynamic_batching.preferred_batch_size.extend(sizes)
        config.dynamic_batching.max_queue_delay_microseconds = max_queue_delay_us
    for key, value in (parameters or {}).items():
        config.parameters[key].string_value = str(value)
    return config


def to_text(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def parse_config_text(text: str):
    """Parses config.pbtxt text back into a ModelConfig; unknown fields and enums raise ParseError."""
    from google.protobuf import text_format

    return text_format.Parse(text, _pb().ModelConfig())


def read_config(path: Path):
    return parse_config_text(Path(path).read_text())
