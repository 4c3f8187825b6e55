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
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines._options import Option, check_options
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.triton import config as config_writer
from trt_converters.triton.python_model import version_folder, write_python_model

OPTIONS = {
    "score_threshold": Option("float", "minimum score kept (default 0.3)", minimum=0, maximum=1),
    "iou_threshold": Option("float", "NMS IoU threshold (default 0.45)", minimum=0, maximum=1),
    "max_detections": Option("int", "detections per image (default 100)", minimum=1),
    "class_agnostic": Option("bool", "NMS across classes (default false)"),
    "class_names": Option("list", "one name per class; adds a labels output"),
    "channel_order": Option("str", "BGR (official YOLOX, default) or RGB", choices=("BGR", "RGB")),
    "pad_value": Option("int", "letterbox padding (default 114)", minimum=0, maximum=255),
    "input_size": Option("list", "[H, W] when the core input's spatial dims are dynamic"),
    "python_instance_count": Option("int", "CPU instances of the pre/post models (default 1; "
                                           "--pipeline-instance-count overrides)", minimum=1),
}
# the models this pipeline writes: <pipeline_name><suffix>
MODEL_SUFFIXES = ("", "_preprocess", "_postprocess")
LETTERBOX_INFO = "letterbox_info"  # float32 [3] per image: ratio, original height, original width


def resolve_options(request: PipelineRequest) -> dict:
    """The pipeline's settings, validated against the core model's IO spec (UserError on mistakes)."""
    options = dict(request.options or {})
    check_options("yolox", OPTIONS, options)
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
    written += write_python_model(repo / pre, "yolox_preprocess", _preprocess_config(pre, request, settings))
    post_files = {}
    if settings["class_names"] is not None:
        post_files["class_names.json"] = json.dumps(settings["class_names"], indent=1)
    written += write_python_model(repo / post, "yolox_postprocess", _postprocess_config(post, request, settings),
                                  files=post_files)
    ensemble_dir = repo / request.pipeline_name
    version_folder(ensemble_dir)  # ensembles need a version folder, even empty
    written += config_writer.write_config(ensemble_dir, _ensemble_config(request, settings, pre, post))
    return written


# -- configs ------------------------------------------------------------------------------------
def _image_inputs(config):
    config_writer.add_tensor(config.input, "image", "TYPE_STRING", [1], optional=True)
    config_writer.add_tensor(config.input, "image_raw", "TYPE_UINT8", [-1, -1, 3], optional=True)


def _detection_outputs(config, settings):
    for name, data_type, dims in (("boxes", "TYPE_FP32", [-1, 4]), ("scores", "TYPE_FP32", [-1]),
                                  ("classes", "TYPE_INT32", [-1]), ("num_detections", "TYPE_INT32", [1])):
        config_writer.add_tensor(config.output, name, data_type, dims)
    if settings["class_names"] is not None:
        config_writer.add_tensor(config.output, "labels", "TYPE_STRING", [-1])


def _python_config(name: str, request: PipelineRequest, settings: dict, role: str):
    counts = request.serving.instance_counts
    instances = request.serving.instances(role) if role in counts or "*" in counts else settings["instances"]
    return config_writer.python_model_config(name, max_batch_size=request.max_batch_size, instance_count=instances,
                                             max_queue_delay_us=config_writer.DEFAULT_MAX_QUEUE_DELAY_US)


def _preprocess_config(name: str, request: PipelineRequest, settings: dict):
    config = _python_config(name, request, settings, "preprocess")
    _image_inputs(config)
    config_writer.add_tensor(config.output, settings["input_name"], "TYPE_FP32",
                             [3, settings["input_height"], settings["input_width"]])
    config_writer.add_tensor(config.output, LETTERBOX_INFO, "TYPE_FP32", [3])
    for key in ("input_height", "input_width", "channel_order", "pad_value"):
        config.parameters[key].string_value = str(settings[key])
    config.parameters["input_name"].string_value = settings["input_name"]
    return config


def _postprocess_config(name: str, request: PipelineRequest, settings: dict):
    config = _python_config(name, request, settings, "postprocess")
    config_writer.add_tensor(config.input, settings["output_name"], "TYPE_FP32", settings["detections_dims"])
    config_writer.add_tensor(config.input, LETTERBOX_INFO, "TYPE_FP32", [3])
    _detection_outputs(config, settings)
    for key in ("score_threshold", "iou_threshold", "max_detections"):
        config.parameters[key].string_value = str(settings[key])
    config.parameters["class_agnostic"].string_value = "true" if settings["class_agnostic"] else "false"
    config.parameters["detections_name"].string_value = settings["output_name"]
    if settings["class_names"] is not None:
        config.parameters["class_names_file"].string_value = "class_names.json"
    return config


def _ensemble_config(request: PipelineRequest, settings: dict, pre: str, post: str):
    core_in, core_out = settings["input_name"], settings["output_name"]
    outputs = ["boxes", "scores", "classes", "num_detections"] + (["labels"] if settings["class_names"] else [])
    config = config_writer.ensemble_config(request.pipeline_name, max_batch_size=request.max_batch_size, steps=[
        (pre, {"image": "image", "image_raw": "image_raw"},
         {core_in: "_preprocessed", LETTERBOX_INFO: "_letterbox_info"}),
        (request.core_model_name, {core_in: "_preprocessed"}, {core_out: "_detections"}),
        (post, {core_out: "_detections", LETTERBOX_INFO: "_letterbox_info"}, {o: o for o in outputs}),
    ], response_cache=request.serving.response_cache)
    _image_inputs(config)
    _detection_outputs(config, settings)
    return config


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
