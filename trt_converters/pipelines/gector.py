"""GECToR pipeline: one BLS python model `text` (TYPE_STRING [1]) -> `corrected` (TYPE_STRING [1]).

The model (named after the pipeline) tokenizes, calls the core tagger by name once per
correction round and decodes with the serving runtime's `gector_decoding` (gotutiyan/gector's
predict semantics). Written into its version folder: the serving runtime, the tokenizer, the
checkpoint's config.json (label vocabulary) and, when given, the verb-form dictionary.
Options: iterations (5), min_error_prob (0), keep_confidence (0), verb_forms_path,
official_grammarly (default: config.json's is_official_model; official checkpoints were trained
without special tokens), max_length (default: config.json's max_length, else the profile's),
batch_size (rows per core-model call; the core model's max_batch_size), tokenizer_path,
label_config_path (default: <checkpoint_dir>/config.json), labels_output / detect_output
(default: logits_labels / logits_d), input_roles, text_input and output_names (the entry model's
tensor names).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines import _text_common as common
from trt_converters.pipelines._options import Option, renamed_outputs, text_input_name
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.serving_runtime.gector_decoding import GectorLabels
from trt_converters.serving_runtime.verb_forms import load_verb_forms
from trt_converters.spec import TensorSpec

VERB_FORMS_FILE = "verb-form-vocab.txt"
OPTIONS = {
    # the BLS model tokenizes itself (gotutiyan's way): no tokenizer model, so no length buckets
    **{key: value for key, value in common.text_options("corrected").items() if key != "length_buckets"},
    "iterations": Option("int", "correction rounds (default 5)", minimum=1),
    "min_error_prob": Option("float", "skip sentences whose error probability is below this (default 0)",
                             minimum=0, maximum=1),
    "keep_confidence": Option("float", "bias added to $KEEP (default 0)"),
    "verb_forms_path": Option("path", "verb-form dictionary (verb-form-vocab.txt)"),
    "official_grammarly": Option("bool", "checkpoint trained without special tokens (default: config.json's "
                                         "is_official_model)"),
    "label_config_path": Option("path", "config.json with label2id (default: beside the checkpoint)"),
    "labels_output": Option("str", "core output with the label logits (default logits_labels)"),
    "detect_output": Option("str", "core output with the detection logits (default logits_d)"),
    "batch_size": Option("int", "sentences per core-model call (default: max_batch_size)", minimum=1),
}


def checkpoint_options(hf_config: dict) -> dict:
    """gotutiyan's config.json max_length: the tagger saw at most that many tokens ($START included)."""
    return {"max_length": int(hf_config["max_length"])} if hf_config.get("max_length") else {}


def write_pipeline(request: PipelineRequest) -> list[Path]:
    common.require_batching(request)
    label_config_path = _label_config_path(request)
    label_config = read_gector_config(label_config_path)
    try:
        labels = GectorLabels.from_config(label_config)
    except ValueError as exc:
        raise UserError(f"{label_config_path}: {exc}") from None
    verb_path = common.option(request, "verb_forms_path")
    if verb_path is not None:
        try:
            load_verb_forms(verb_path)  # fail now, not when the server loads the model
        except ValueError as exc:
            raise UserError(str(exc)) from None

    labels_output = _output(request, "labels_output", "logits_labels", 0)
    detect_output = _output(request, "detect_output", "logits_d", 1)
    width = labels_output.shape[-1] if labels_output.shape else -1
    if width != -1 and width > len(labels.id2label):
        raise UserError(f"core output {labels_output.name!r} has {width} label logits but config.json lists "
                        f"{len(labels.id2label)} labels: use the config.json saved with the checkpoint")
    roles = common.input_roles(request)
    by_role = {role: name for name, role in roles.items()}
    if "attention_mask" not in by_role:
        raise UserError("the GECToR core model needs an attention mask input: name one attention_mask "
                        "or set pipeline option input_roles")
    if set(roles.values()) - {"input_ids", "attention_mask"}:
        raise UserError("the GECToR pipeline sends only input_ids and attention_mask: serve the core model "
                        "without other inputs (--triton-inputs)")
    ids_spec, mask_spec = request.io.input(by_role["input_ids"]), request.io.input(by_role["attention_mask"])

    tokenizer = common.load_tokenizer(common.tokenizer_source(request), split_words=True)
    config_max = label_config.get("max_length")
    max_length, fixed = common.sequence_length(request, tokenizer, default_max=int(config_max) if config_max else None)
    official = common.bool_option(request, "official_grammarly", bool(label_config.get("is_official_model", False)))
    batch_size = common.int_option(request, "batch_size", request.max_batch_size, minimum=1)

    verb_tags = [name for name in labels.id2label if name.startswith("$TRANSFORM_VERB_")]
    if verb_path is None and verb_tags:
        warnings.warn(f"the GECToR labels include {len(verb_tags)} $TRANSFORM_VERB_* tags but no verb-form "
                      "dictionary was given: those tags will leave words unchanged; pass "
                      "--pipeline-option verb_forms_path=verb-form-vocab.txt", UserWarning, stacklevel=2)

    data_files = {"config.json": Path(label_config_path)}
    if verb_path is not None:
        data_files[VERB_FORMS_FILE] = Path(verb_path)
    version = common.new_python_model(request, request.pipeline_name, "gector_pipeline", data_files)
    tokenizer.save_pretrained(str(version / common.TOKENIZER_FOLDER))

    text, corrected = text_input_name(request), renamed_outputs(request, ["corrected"])["corrected"]
    config = common.python_model_config(request, request.pipeline_name, role="entry", parameters={
        "text_input": text,
        "corrected_output": corrected,
        "core_model": request.core_model_name,
        "input_ids_input": ids_spec.name,
        "attention_mask_input": mask_spec.name,
        "ids_dtype": ids_spec.numpy_dtype,
        "mask_dtype": mask_spec.numpy_dtype,
        "labels_output": labels_output.name,
        "detect_output": detect_output.name,
        "iterations": str(common.int_option(request, "iterations", 5, minimum=1)),
        "min_error_prob": str(common.float_option(request, "min_error_prob", 0.0)),
        "keep_confidence": str(common.float_option(request, "keep_confidence", 0.0)),
        "add_special_tokens": "false" if official else "true",
        "max_length": str(max_length),
        "pad_to_length": str(max_length if fixed else 0),
        "batch_size": str(min(batch_size, request.max_batch_size)),
    })
    common.add_tensor(config.input, text, "TYPE_STRING", [1])
    common.add_tensor(config.output, corrected, "TYPE_STRING", [1])
    common.write_config(version.parent, config)
    return common.written_files(version.parent)


def _label_config_path(request: PipelineRequest) -> Path:
    given = common.option(request, "label_config_path")
    if given:
        return Path(given)
    if request.checkpoint_dir is None:
        raise UserError("the GECToR pipeline needs the checkpoint's config.json (label2id): put it beside "
                        "the checkpoint or pass pipeline option label_config_path")
    return Path(request.checkpoint_dir) / "config.json"


def _output(request: PipelineRequest, key: str, default_name: str, position: int) -> TensorSpec:
    name = common.option(request, key)
    outputs = {s.name: s for s in request.io.outputs}
    if name is not None:
        if name not in outputs:
            raise UserError(f"pipeline option {key}={name!r} is not a core output ({', '.join(outputs)})")
        return outputs[name]
    if default_name in outputs:
        return outputs[default_name]
    if len(request.io.outputs) == 2:
        return request.io.outputs[position]
    raise UserError(f"cannot tell which core output is {default_name}: set pipeline option {key}")


def read_gector_config(path: Path) -> dict:
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"GECToR config {path} not found: put the checkpoint's config.json "
                        "(with label2id) in the checkpoint folder") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"GECToR config {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise UserError(f"GECToR config {path} must hold a JSON object with label2id")
    return config
