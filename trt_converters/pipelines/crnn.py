"""CRNN text-line OCR pipeline: one BLS python model, image in, string out.

`<repo>/<pipeline_name>` takes `image` (encoded bytes, TYPE_STRING [1]) or `image_raw` (uint8
[H, W, C]), resizes each line to the model height keeping its aspect ratio, pads the batch to a
common width, calls the core CRNN model by name and CTC-decodes the logits of each line's own
width. The resize/pad logic is in trt_converters/serving_runtime/ocr_preprocess.py (copied beside the
BLS model, imported by tests).

pipeline_options (YAML):
    charset (required), blank_index (0), width_downsample (4: input width per output step),
    mean / std (per channel, after scaling pixels to [0, 1]; default none), pad_value (0.0, in
    the [0, 1] pixel scale), min_width / max_width (default: the core input's min/max_shape),
    pad_batches (true: the lines of one request run as one padded batch; the BiLSTM's backward
    pass then also reads the padding, so a line's text may depend on its batch-mates. false: one
    core call per line, each line's text independent of the others).
"""
from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines._options import Option
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.triton import config as config_writer
from trt_converters.triton.python_model import FileSource, write_python_model

OPTIONS = {
    "charset": Option("any", "the symbols of the classes other than the blank (a string or a list; required)"),
    "blank_index": Option("int", "class index of the CTC blank (default 0)", minimum=0),
    "width_downsample": Option("int", "input width per output step (default 4)", minimum=1),
    "mean": Option("list", "per-channel mean after scaling pixels to [0, 1] (default none)"),
    "std": Option("list", "per-channel std after scaling pixels to [0, 1] (default none)"),
    "pad_value": Option("float", "padding in the [0, 1] pixel scale (default 0.0)"),
    "min_width": Option("int", "narrowest resized line (default: the core input's min_shape)", minimum=1),
    "max_width": Option("int", "widest resized line (default: the core input's max_shape)", minimum=1),
    "pad_batches": Option("bool", "run a request's lines as one padded batch (default true)"),
}

def number_list(value, *, name: str, length: int, kind=float) -> list | None:
    """A list option from YAML ([0.5, 0.5, 0.5]) or from --pipeline-option KEY=VALUE ("0.5,0.5,0.5", "32x96")."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        value = [value]
    items = value.replace("x", ",").split(",") if isinstance(value, str) else value
    try:
        numbers = [kind(item) for item in items]
    except (TypeError, ValueError):
        numbers = None
    if numbers is None or len(numbers) != length:
        raise UserError(f"pipeline option {name}={value!r} needs {length} numbers, e.g. {name}="
                        + ",".join(["1"] * length))
    return numbers


def resolve_options(request: PipelineRequest) -> dict:
    """Everything the BLS model needs, validated against the core model's IO spec."""
    from trt_converters.serving_runtime.ctc import ctc_labels

    options = dict(request.options)
    if len(request.io.inputs) != 1 or len(request.io.outputs) != 1:
        raise UserError("the crnn pipeline needs a core model with one image input and one logits output")
    image, logits = request.io.inputs[0], request.io.outputs[0]
    if len(image.shape) != 3:
        raise UserError(f"crnn pipeline: input {image.name!r} must be [channels, height, width], got {image.shape}")
    channels, height, _ = image.shape
    if channels not in (1, 3) or height < 1:
        raise UserError(f"crnn pipeline: input {image.name!r} needs 1 or 3 channels and a fixed height, got {image.shape}")
    if "charset" not in options:
        raise UserError("crnn pipeline: pipeline_options needs 'charset' (the symbols of classes other than the blank)")
    if not isinstance(options["charset"], (str, list)):
        raise UserError(f"crnn pipeline: charset must be a string or a list of symbols, got {options['charset']!r}; "
                        "quote it (YAML reads 0123456789 as a number)")
    blank_index = int(options.get("blank_index", 0))
    try:
        labels = ctc_labels(options["charset"], blank_index)
    except ValueError as exc:
        raise UserError(f"crnn pipeline: {exc}; fix pipeline_options.charset/blank_index") from None
    num_classes = logits.shape[-1] if logits.shape else -1
    if num_classes != -1 and num_classes != len(labels):
        raise UserError(f"crnn pipeline: charset has {len(labels) - 1} symbols + blank = {len(labels)} classes "
                        f"but output {logits.name!r} has {num_classes}; fix the charset or num_classes")
    downsample = int(options.get("width_downsample", 4))
    if downsample < 1:
        raise UserError(f"crnn pipeline: width_downsample must be >= 1, got {downsample}")
    min_width = int(options.get("min_width", (image.min_shape or [0, 0, downsample])[2]))
    max_width = options.get("max_width", (image.max_shape or [0, 0, None])[2])
    max_width = int(max_width) if max_width is not None else None
    if max_width is not None and max_width % downsample:
        raise UserError(f"crnn pipeline: max_width {max_width} must be a multiple of width_downsample {downsample}")
    mean = number_list(options.get("mean"), name="mean", length=channels)
    std = number_list(options.get("std"), name="std", length=channels)
    if std is not None and min(std) <= 0:
        raise UserError(f"crnn pipeline: std {std} must be positive")
    return {
        "core_model_name": request.core_model_name,
        "input_name": image.name,
        "output_name": logits.name,
        "channels": channels,
        "image_height": height,
        "labels": labels,
        "blank_index": blank_index,
        "width_downsample": downsample,
        "min_width": max(min_width, downsample),
        "max_width": max_width,
        "mean": mean,
        "std": std,
        "pad_value": float(options.get("pad_value", 0.0)),
        "pad_batches": _flag(options.get("pad_batches", True), "pad_batches"),
        "max_batch_size": request.max_batch_size,
    }


def _flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if str(value).lower() in ("true", "1", "yes"):
        return True
    if str(value).lower() in ("false", "0", "no"):
        return False
    raise UserError(f"crnn pipeline: {name} must be true or false, got {value!r}")


def write_pipeline(request: PipelineRequest) -> list[Path]:
    return write_image_to_text_model(request, "crnn_pipeline", resolve_options(request))


def write_image_to_text_model(request: PipelineRequest, source: str, options: dict,
                              files: dict[str, FileSource] | None = None) -> list[Path]:
    """The `image` -> `text` BLS model of an OCR pipeline (crnn, trocr); returns the files written."""
    config = config_writer.image_to_text_config(
        request.pipeline_name, max_batch_size=request.max_batch_size, parameters={"pipeline_options": options},
        instance_count=request.serving.instances("entry"), response_cache=request.serving.response_cache)
    return write_python_model(Path(request.repo) / request.pipeline_name, source, config, files=files)
