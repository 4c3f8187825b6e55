"""Text classifier pipeline: ensemble `text` -> tokenizer -> core model -> label/score/probabilities.

Models written (P = the pipeline name):
  P_tokenizer    python model: `text` (TYPE_STRING [1]) -> the core inputs, padded to the core's
                 fixed length, or to the longest text of the batch when the length is dynamic
  P_postprocess  python model: logits -> `label` (TYPE_STRING [top_k]), `score` (FP32 [top_k]),
                 `probabilities` (FP32 [num_labels])
  P              the ensemble users call
Options: tokenizer_path, max_length, labels (list, or {id: name}; default config.json id2label),
activation (softmax | sigmoid; default sigmoid for one-logit heads or multi-label configs),
top_k (1), logits_output (default: the first core output), input_roles, text_input and
output_names (the entry model's tensor names).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines import _text_common as common
from trt_converters.pipelines._options import Option, renamed_outputs, text_input_name
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.spec import TensorSpec

# the models this pipeline writes: <pipeline_name><suffix>
MODEL_SUFFIXES = ("", "_tokenizer", "_postprocess")


def checkpoint_options(hf_config: dict) -> dict:
    """The label names of the checkpoint's config.json (id2label)."""
    return {"labels": dict(hf_config["id2label"])} if isinstance(hf_config.get("id2label"), dict) else {}


OPTIONS = {
    **common.text_options("label", "score", "probabilities"),
    "labels": Option("any", "class names: a list, {id: name}, or comma-separated (default: config.json id2label)"),
    "activation": Option("str", "softmax or sigmoid (default: sigmoid for one-logit or multi-label heads)",
                         choices=("softmax", "sigmoid")),
    "top_k": Option("int", "labels returned per text (default 1)", minimum=1),
    "logits_output": Option("str", "core output holding the logits (default: the first)"),
}
ENTRY_OUTPUTS = ["label", "score", "probabilities"]


def write_pipeline(request: PipelineRequest) -> list[Path]:
    common.require_batching(request)
    logits = _logits_output(request)
    hf_config = common.checkpoint_config(request) or {}
    labels = _labels(request, logits, hf_config)
    activation = _activation(request, len(labels), hf_config)
    top_k = common.int_option(request, "top_k", 1, minimum=1)
    if top_k > len(labels):
        raise UserError(f"pipeline option top_k={top_k} exceeds the {len(labels)} labels")
    text, names = text_input_name(request), renamed_outputs(request, ENTRY_OUTPUTS)

    tokenizer_name = f"{request.pipeline_name}_tokenizer"
    postprocess_name = f"{request.pipeline_name}_postprocess"
    tokenizer_dir = common.write_tokenizer_model(request, tokenizer_name, prefix="")

    post_version = common.new_python_model(request, postprocess_name, "classifier_postprocess")
    post = common.python_model_config(request, postprocess_name, parameters={
        "logits_input": logits.name, "labels": json.dumps(labels), "activation": activation, "top_k": str(top_k),
    })
    common.add_spec(post.input, logits)
    common.add_tensor(post.output, "label", "TYPE_STRING", [top_k])
    common.add_tensor(post.output, "score", "TYPE_FP32", [top_k])
    common.add_tensor(post.output, "probabilities", "TYPE_FP32", [len(labels)])
    common.write_config(post_version.parent, post)

    ensemble = common.ensemble_config(request, [
        (tokenizer_name, {"text": text}, {s.name: s.name for s in request.io.inputs}),
        (request.core_model_name, {s.name: s.name for s in request.io.inputs}, {logits.name: logits.name}),
        (postprocess_name, {logits.name: logits.name}, names),
    ])
    common.add_tensor(ensemble.input, text, "TYPE_STRING", [1])
    common.add_tensor(ensemble.output, names["label"], "TYPE_STRING", [top_k])
    common.add_tensor(ensemble.output, names["score"], "TYPE_FP32", [top_k])
    common.add_tensor(ensemble.output, names["probabilities"], "TYPE_FP32", [len(labels)])
    ensemble_dir = request.repo / request.pipeline_name
    common.version_folder(ensemble_dir)  # ensembles need a version folder, even empty
    common.write_config(ensemble_dir, ensemble)
    return common.written_files(tokenizer_dir, post_version.parent, ensemble_dir)


def _logits_output(request: PipelineRequest) -> TensorSpec:
    name = common.option(request, "logits_output")
    if name is None:
        return request.io.outputs[0]
    for spec in request.io.outputs:
        if spec.name == name:
            return spec
    raise UserError(f"pipeline option logits_output={name!r} is not a core output "
                    f"({', '.join(s.name for s in request.io.outputs)})")


def _labels(request: PipelineRequest, logits: TensorSpec, hf_config: dict) -> list[str]:
    given = common.option(request, "labels")
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except json.JSONDecodeError:
            given = [part.strip() for part in given.split(",") if part.strip()]
    if given is None and hf_config.get("id2label"):
        given = hf_config["id2label"]
    width = math.prod(logits.shape) if logits.shape and -1 not in logits.shape else None
    if isinstance(given, dict):
        try:
            by_id = {int(k): str(v) for k, v in given.items()}
        except ValueError:
            raise UserError("pipeline option labels must map integer ids to names") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise UserError("pipeline option labels: ids must be 0..N-1 without gaps")
        given = [by_id[i] for i in range(len(by_id))]
    if given is None:
        if width is None:
            raise UserError(f"core output {logits.name!r} has a dynamic size: give pipeline option labels")
        return [f"LABEL_{i}" for i in range(width)]
    labels = [str(label) for label in given]
    if width is not None and len(labels) != width:
        # A one-logit head may come with a config naming both classes; keep the positive one.
        if width == 1 and len(labels) == 2:
            return [labels[1]]
        raise UserError(f"{len(labels)} labels given but core output {logits.name!r} has {width} logits: "
                        "fix pipeline option labels (or config.json id2label)")
    return labels


def _activation(request: PipelineRequest, n_labels: int, hf_config: dict) -> str:
    default = "sigmoid" if n_labels == 1 or hf_config.get("problem_type") == "multi_label_classification" \
        else "softmax"
    activation = str(common.option(request, "activation", default)).lower()
    if activation not in ("softmax", "sigmoid"):
        raise UserError(f"pipeline option activation={activation!r} must be softmax or sigmoid")
    return activation
