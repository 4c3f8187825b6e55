"""YOLOX detection pipeline: a Triton ensemble  preprocess -> core model -> postprocess.

Written into the repository next to the core model:

    <pipeline_name>/               ensemble users call
        in:  image      TYPE_STRING [1]          encoded JPEG/PNG/... bytes, one image per batch row
             image_raw  TYPE_UINT8 [-1, -1, 3]   or a raw HWC image in the model's channel order (BGR
                                                 for official YOLOX, as cv2.imread gives); exactly one of the two
        out: boxes TYPE_FP32 [-1, 4] (x1, y1, x2, y2 in original pixels), scores TYPE_FP32 [-1],
             classes TYPE_INT32 [-1], num_detections TYPE_INT32 [1]
             (+ labels TYPE_STRING [-1] when class_names are given); rows past num_detections are padding
    <pipeline_name>_preprocess/    python: decode / validate, letterbox (pad 114), float32 CHW 0..255
    <pipeline_name>_postprocess/   python: score filter, class-aware NMS, top-k, undo the letterbox

Why an ensemble and not BLS: each step is scheduled by Triton on its own, so requests from many
clients are dynamically batched into one core-model call (TensorRT engine) while the CPU steps of
other requests run in parallel, without python code waiting on the GPU model. The pre/post
models get the serving runtime (`trt_converters/serving_runtime/`) copied beside `model.py`, so
the repository runs in a stock Triton container without this package installed.

pipeline_options (YAML): score_threshold (0.3), iou_threshold (0.45), max_detections (100),
class_agnostic (false), class_names (null or a list, one name per class), channel_order
("BGR": official YOLOX; "RGB" for checkpoints trained on RGB), pad_value (114),
input_size ([H, W], only when the core input's spatial dims are dynamic), python_instance_count (1).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.serving_runtime import copy_runtime
from trt_converters.triton.repository import triton_model_source

KNOWN_OPTIONS = {"score_threshold", "iou_threshold", "max_detections", "class_agnostic", "class_names",
                 "channel_order", "pad_value", "input_size", "python_instance_count"}
LETTERBOX_INFO = "letterbox_info"  # float32 [3] per image: ratio, original height, original width


def resolve_options(request: PipelineRequest) -> dict:
    """The pipeline's settings, validated against the core model's IO spec (UserError on mistakes)."""
    options = dict(request.options or {})
    unknown = sorted(set(options) - KNOWN_OPTIONS)
    if unknown:
        raise UserError(f"yolox pipeline: unknown pipeline_options {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(KNOWN_OPTIONS))}")
    if len(request.io.inputs) != 1:
        raise UserError(f"yolox pipeline: the core model must have one image input, it has {len(request.io.inputs)}")
    image = request.io.inputs[0]
    if image.dtype != "float32" or len(image.shape) != 3 or image.shape[0] != 3:
        raise UserError(f"yolox pipeline: input {image.name!r} must be float32 [3, H, W], got {image.dtype} {image.shape}")
    height, width = _input_size(image, options.get("input_size"))
    detections = request.io.outputs[0]
    if len(detections.shape) != 2:
        raise UserError(f"yolox pipeline: output {detections.name!r} must be [anchors, 5 + classes], "
                        f"got {detections.shape}")
    num_classes = detections.shape[1] - 5 if detections.shape[1] != -1 else None
    if num_classes is not None and num_classes < 1:
        raise UserError(f"yolox pipeline: output {detections.name!r} has {detections.shape[1]} columns; "
                        "YOLOX gives 5 + num_classes")
    score = _fraction(options, "score_threshold", 0.3)
    iou = _fraction(options, "iou_threshold", 0.45)
    max_detections = _positive_int(options, "max_detections", 100)
    instances = _positive_int(options, "python_instance_count", 1)
    class_names = options.get("class_names")
    if class_names is not None:
        if not isinstance(class_names, list) or not all(isinstance(n, str) for n in class_names):
            raise UserError("yolox pipeline: class_names must be a list of strings (or null)")
        if num_classes is not None and len(class_names) != num_classes:
            raise UserError(f"yolox pipeline: class_names has {len(class_names)} names but the model predicts "
                            f"{num_classes} classes; give one name per class")
    order = str(options.get("channel_order", "BGR")).upper()
    if order not in ("BGR", "RGB"):
        raise UserError(f"yolox pipeline: channel_order {order!r} must be BGR or RGB")
    pad = int(options.get("pad_value", 114))
    if not 0 <= pad <= 255:
        raise UserError(f"yolox pipeline: pad_value {pad} must be within 0..255")
    if request.max_batch_size < 1:
        raise UserError("yolox pipeline: needs a batching core model (max_batch_size >= 1), got "
                        f"{request.max_batch_size}")
    if request.pipeline_name == request.core_model_name:
        raise UserError(f"yolox pipeline: pipeline name {request.pipeline_name!r} equals the core model's name; "
                        "pass another --pipeline-name")
    return {
        "input_name": image.name, "output_name": detections.name, "input_height": height, "input_width": width,
        "detections_dims": list(detections.shape), "num_classes": num_classes, "score_threshold": score,
        "iou_threshold": iou, "max_detections": max_detections, "class_agnostic": bool(options.get("class_agnostic")),
        "class_names": class_names, "channel_order": order, "pad_value": pad, "instances": instances,
    }


def write_pipeline(request: PipelineRequest) -> list[Path]:
    settings = resolve_options(request)
    repo = Path(request.repo)
    pre, post = f"{request.pipeline_name}_preprocess", f"{request.pipeline_name}_postprocess"
    written: list[Path] = []
    written += _write_python_model(repo, pre, "yolox_preprocess", _preprocess_config(pre, request, settings))
    post_files = {}
    if settings["class_names"] is not None:
        post_files["class_names.json"] = json.dumps(settings["class_names"], indent=1)
    written += _write_python_model(repo, post, "yolox_postprocess", _postprocess_config(post, request, settings),
                                   post_files)
    ensemble_dir = repo / request.pipeline_name
    (ensemble_dir / "1").mkdir(parents=True, exist_ok=True)  # ensembles need a version folder, even empty
    written.append(_write_text(ensemble_dir / "config.pbtxt", _to_text(_ensemble_config(request, settings, pre, post))))
    return written


# -- configs ------------------------------------------------------------------------------------
def _pb():
    from tritonclient.grpc import model_config_pb2

    return model_config_pb2


def _tensor(message_type, name: str, data_type: str, dims, optional: bool = False):
    pb = _pb()
    tensor = message_type(name=name, data_type=pb.DataType.Value(data_type))
    tensor.dims.extend(dims)
    if optional:
        tensor.optional = True
    return tensor


def _image_inputs(pb, optional: bool):
    return [_tensor(pb.ModelInput, "image", "TYPE_STRING", [1], optional),
            _tensor(pb.ModelInput, "image_raw", "TYPE_UINT8", [-1, -1, 3], optional)]


def _detection_outputs(pb, settings):
    outputs = [_tensor(pb.ModelOutput, "boxes", "TYPE_FP32", [-1, 4]),
               _tensor(pb.ModelOutput, "scores", "TYPE_FP32", [-1]),
               _tensor(pb.ModelOutput, "classes", "TYPE_INT32", [-1]),
               _tensor(pb.ModelOutput, "num_detections", "TYPE_INT32", [1])]
    if settings["class_names"] is not None:
        outputs.append(_tensor(pb.ModelOutput, "labels", "TYPE_STRING", [-1]))
    return outputs


def _python_config(name: str, request: PipelineRequest, settings: dict):
    pb = _pb()
    config = pb.ModelConfig(name=name, backend="python", max_batch_size=request.max_batch_size)
    config.instance_group.add(count=settings["instances"], kind=pb.ModelInstanceGroup.Kind.Value("KIND_CPU"))
    config.dynamic_batching.max_queue_delay_microseconds = 100
    return config


def _preprocess_config(name: str, request: PipelineRequest, settings: dict):
    pb = _pb()
    config = _python_config(name, request, settings)
    config.input.extend(_image_inputs(pb, optional=True))
    config.output.extend([
        _tensor(pb.ModelOutput, settings["input_name"], "TYPE_FP32", [3, settings["input_height"], settings["input_width"]]),
        _tensor(pb.ModelOutput, LETTERBOX_INFO, "TYPE_FP32", [3]),
    ])
    for key in ("input_height", "input_width", "channel_order", "pad_value"):
        config.parameters[key].string_value = str(settings[key])
    config.parameters["input_name"].string_value = settings["input_name"]
    return config


def _postprocess_config(name: str, request: PipelineRequest, settings: dict):
    pb = _pb()
    config = _python_config(name, request, settings)
    config.input.extend([
        _tensor(pb.ModelInput, settings["output_name"], "TYPE_FP32", settings["detections_dims"]),
        _tensor(pb.ModelInput, LETTERBOX_INFO, "TYPE_FP32", [3]),
    ])
    config.output.extend(_detection_outputs(pb, settings))
    for key in ("score_threshold", "iou_threshold", "max_detections"):
        config.parameters[key].string_value = str(settings[key])
    config.parameters["class_agnostic"].string_value = "true" if settings["class_agnostic"] else "false"
    config.parameters["detections_name"].string_value = settings["output_name"]
    if settings["class_names"] is not None:
        config.parameters["class_names_file"].string_value = "class_names.json"
    return config


def _ensemble_config(request: PipelineRequest, settings: dict, pre: str, post: str):
    pb = _pb()
    config = pb.ModelConfig(name=request.pipeline_name, platform="ensemble", max_batch_size=request.max_batch_size)
    config.input.extend(_image_inputs(pb, optional=True))
    config.output.extend(_detection_outputs(pb, settings))
    core_in, core_out = settings["input_name"], settings["output_name"]
    steps = config.ensemble_scheduling.step
    pre_step = steps.add(model_name=pre, model_version=-1)
    pre_step.input_map.update({"image": "image", "image_raw": "image_raw"})
    pre_step.output_map.update({core_in: "_preprocessed", LETTERBOX_INFO: "_letterbox_info"})
    core_step = steps.add(model_name=request.core_model_name, model_version=-1)
    core_step.input_map[core_in] = "_preprocessed"
    core_step.output_map[core_out] = "_detections"
    post_step = steps.add(model_name=post, model_version=-1)
    post_step.input_map.update({core_out: "_detections", LETTERBOX_INFO: "_letterbox_info"})
    post_step.output_map.update({o.name: o.name for o in config.output})
    return config


# -- files --------------------------------------------------------------------------------------
def _write_python_model(repo: Path, name: str, source: str, config, extra: dict | None = None) -> list[Path]:
    version_dir = repo / name / "1"
    version_dir.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copyfile(triton_model_source(source), version_dir / "model.py"))]
    written += copy_runtime(version_dir)
    for filename, text in (extra or {}).items():
        written.append(_write_text(version_dir / filename, text))
    written.append(_write_text(repo / name / "config.pbtxt", _to_text(config)))
    return written


def _to_text(config) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(config)


def _write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- option parsing -----------------------------------------------------------------------------
def _input_size(image, override) -> tuple[int, int]:
    _, height, width = image.shape
    if override is not None:
        if not (isinstance(override, (list, tuple)) and len(override) == 2 and all(int(v) > 0 for v in override)):
            raise UserError(f"yolox pipeline: input_size must be [height, width], got {override!r}")
        fixed = [(d, int(v)) for d, v in zip((height, width), override) if d != -1]
        if any(d != v for d, v in fixed):
            raise UserError(f"yolox pipeline: input_size {list(override)} contradicts the core input {image.shape}")
        height, width = int(override[0]), int(override[1])
    if height == -1 or width == -1:
        raise UserError(f"yolox pipeline: input {image.name!r} has dynamic spatial dims {image.shape}; set "
                        "pipeline_options input_size: [H, W]")
    if height % 32 or width % 32:
        raise UserError(f"yolox pipeline: input size {height}x{width} must be multiples of 32 (YOLOX strides)")
    return height, width


def _fraction(options: dict, key: str, default: float) -> float:
    value = options.get(key, default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise UserError(f"yolox pipeline: {key} must be a number in [0, 1], got {value!r}") from None
    if not 0.0 <= value <= 1.0:
        raise UserError(f"yolox pipeline: {key} must be within [0, 1], got {value}")
    return value


def _positive_int(options: dict, key: str, default: int) -> int:
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"yolox pipeline: {key} must be a positive integer, got {value!r}")
    return value
