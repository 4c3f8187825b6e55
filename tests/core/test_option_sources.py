"""One precedence rule for every option: flags > the checkpoint's config.json > the family YAML > defaults.

The checkpoint is a tiny GECToR in gotutiyan's format with random weights: its config.json names a local
encoder folder (as gotutiyan's training writes `model_id`) with a 300-token vocabulary, 66 positions,
`max_length` 48 and 16 labels, against configs/gector_roberta.yaml (roberta-base: 50265 tokens, 5001 labels,
pipeline max_length 80, input_size [8, 64], max_batch_size 32).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GECTOR_YAML = ROOT / "configs" / "gector_roberta.yaml"
LABELS = ["$KEEP", "$DELETE", "<OOV>", "$APPEND_the", "$APPEND_,", "$REPLACE_have", "$REPLACE_a", "$REPLACE_an",
          "$MERGE_SPACE", "$MERGE_HYPHEN", "$TRANSFORM_CASE_CAPITAL", "$TRANSFORM_CASE_LOWER",
          "$TRANSFORM_AGREEMENT_PLURAL", "$TRANSFORM_AGREEMENT_SINGULAR", "$TRANSFORM_SPLIT_HYPHEN", "$APPEND_a"]
ENCODER = {"model_type": "roberta", "vocab_size": 300, "hidden_size": 16, "num_hidden_layers": 1,
           "num_attention_heads": 2, "intermediate_size": 32, "max_position_embeddings": 66, "type_vocab_size": 1,
           "layer_norm_eps": 1e-5, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2,
           "architectures": ["RobertaForMaskedLM"], "transformers_version": "4.46.0"}


@pytest.fixture(scope="module")
def gector_checkpoint(tmp_path_factory) -> Path:
    """model.pt + config.json (gotutiyan's GECToRConfig fields) + encoder/config.json; random weights."""
    import torch

    from trt_converters.loading import import_model_class

    folder = tmp_path_factory.mktemp("gector_small_vocab")
    (folder / "encoder").mkdir()
    (folder / "encoder" / "config.json").write_text(json.dumps(ENCODER))
    label2id = {name: i for i, name in enumerate(LABELS + ["<PAD>"])}
    config = {"model_id": "encoder", "label2id": label2id, "id2label": {str(i): n for n, i in label2id.items()},
              "d_label2id": {"$CORRECT": 0, "$INCORRECT": 1, "<PAD>": 2}, "max_length": 48,
              "keep_label": "$KEEP", "incorrect_label": "$INCORRECT", "is_official_model": False}
    (folder / "config.json").write_text(json.dumps(config))
    model_class = import_model_class(ROOT / "model_scripts" / "gector.py", "GectorModel")
    torch.manual_seed(0)
    kwargs = model_class.hf_config_to_kwargs(config, config_dir=folder)
    torch.save(model_class(**kwargs).state_dict(), folder / "model.pt")
    return folder / "model.pt"


def build(flags: dict, yaml: Path | None = GECTOR_YAML):
    from trt_converters.config_file import read_config_file
    from trt_converters.options import build_options

    return build_options(read_config_file(yaml) if yaml else {}, flags)


def test_checkpoint_beats_yaml(gector_checkpoint):
    options = build({"ckpt_path": str(gector_checkpoint)})
    sources = options.option_sources()
    # the encoder comes from the local model_id folder's config.json, the heads from label2id/d_label2id
    assert options.model_kwargs["hidden_size"] == 16 and options.model_kwargs["vocab_size"] == 300
    assert options.model_kwargs["num_labels"] == len(LABELS) and "architectures" not in options.model_kwargs
    assert sources["model_kwargs.hidden_size"] == sources["model_kwargs.num_labels"] == "checkpoint"
    assert options.pipeline_options["max_length"] == 48 and sources["pipeline_options.max_length"] == "checkpoint"
    # derived values: token ids < 300 + $START, 64 positions (RoBERTa's start after padding), label widths
    ids, mask = options.model_io_config.inputs
    assert ids.value_range == (0, 301) and ids.max_shape == [64]
    assert [o.shape for o in options.model_io_config.outputs] == [[-1, len(LABELS)], [-1, 2]]
    assert sources["model_io_config.inputs.input_ids.value_range"] == "checkpoint"
    assert sources["model_io_config.outputs.logits_labels.shape"] == "checkpoint"
    assert options.derived_values()["model_io_config.inputs.input_ids.max_shape"]["value"] == [64]
    assert sources["model_io_config"] == "yaml"


def test_flag_beats_checkpoint(gector_checkpoint):
    options = build({"ckpt_path": str(gector_checkpoint), "pipeline_options": {"max_length": 32},
                     "model_kwargs": '{"num_hidden_layers": 2, "vocab_size": 200}'})
    sources = options.option_sources()
    assert options.pipeline_options["max_length"] == 32 and sources["pipeline_options.max_length"] == "flag"
    assert options.model_kwargs["num_hidden_layers"] == 2 and sources["model_kwargs.num_hidden_layers"] == "flag"
    assert options.model_kwargs["hidden_size"] == 16 and sources["model_kwargs.hidden_size"] == "checkpoint"
    assert options.model_io_config.inputs[0].value_range == (0, 201)  # follows the flag's vocab_size
    assert sources["model_io_config.inputs.input_ids.value_range"] == "flag"
    # an IO spec typed on the command line is not rewritten
    io = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "max_shape": [256],
                      "value_range": [0, 50266]}, {"name": "attention_mask", "dtype": "int64", "shape": [-1]}],
          "outputs": [{"name": "logits_labels", "dtype": "float32", "shape": [-1, 5001]},
                      {"name": "logits_d", "dtype": "float32", "shape": [-1, 2]}]}
    options = build({"ckpt_path": str(gector_checkpoint), "model_io_config": json.dumps(io)})
    assert options.model_io_config.inputs[0].value_range == (0, 50266)
    assert options.option_sources()["model_io_config"] == "flag" and not options.derived_values()


def test_typed_model_kwargs_set_derived_widths():
    """YOLOX has no config.json: --model-kwargs num_classes sets the detections width the YAML spelled out."""
    options = build({"model_kwargs": '{"num_classes": 3}'}, yaml=ROOT / "configs" / "yolox_nano.yaml")
    assert options.model_kwargs == {"variant": "nano", "num_classes": 3}
    assert options.model_io_config.outputs[0].shape == [3549, 8]
    assert options.option_sources()["model_io_config.outputs.detections.shape"] == "flag"


def test_yaml_beats_default():
    options = build({})
    sources = options.option_sources()
    assert options.max_batch_size == 32 and sources["max_batch_size"] == "yaml"
    assert options.pipeline_options["max_length"] == 80 and sources["pipeline_options.max_length"] == "yaml"
    assert options.opset == 18 and sources["opset"] == "default"
    assert options.model_io_config.inputs[0].value_range == (0, 50266)  # no checkpoint: the YAML's IO spec
    assert build({}, yaml=None).max_batch_size == 8


def test_checkpoint_labels_beat_yaml_labels(tmp_path):
    """configs/roberta_emotion.yaml names 4 labels; a 3-label checkpoint's id2label and width win."""
    id2label = {"0": "negative", "1": "neutral", "2": "positive"}
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "roberta", "id2label": id2label}))
    options = build({"ckpt_path": str(tmp_path / "model.bin")}, yaml=ROOT / "configs" / "roberta_emotion.yaml")
    sources = options.option_sources()
    assert options.model_kwargs["num_labels"] == 3 and sources["model_kwargs.num_labels"] == "checkpoint"
    assert options.pipeline_options["labels"] == id2label and sources["pipeline_options.labels"] == "checkpoint"
    assert options.model_io_config.outputs[0].shape == [3]
    assert options.model_io_config.inputs[0].max_shape == [512]  # 514 positions, the YAML's 512 fits


def test_trocr_decoder_follows_checkpoint_vocabulary(tmp_path):
    """A VisionEncoderDecoder config.json with a 100-token decoder: ids, logits width, special tokens."""
    import yaml

    kwargs = yaml.safe_load((ROOT / "configs" / "trocr_decoder.yaml").read_text())["model_kwargs"]
    decoder = {**kwargs["decoder_config"], "vocab_size": 100, "decoder_start_token_id": 0}
    (tmp_path / "config.json").write_text(json.dumps({"encoder": kwargs["encoder_config"], "decoder": decoder,
                                                      "eos_token_id": 2}))
    options = build({"ckpt_path": str(tmp_path / "model.bin")}, yaml=ROOT / "configs" / "trocr_decoder.yaml")
    sources = options.option_sources()
    assert options.model_io_config.inputs[0].value_range == (0, 100)
    assert options.model_io_config.outputs[0].shape == [1, 100]
    assert options.pipeline_options["start_token_id"] == 0
    assert sources["pipeline_options.start_token_id"] == "checkpoint"
    assert options.pipeline_options["max_length"] == 128 and sources["pipeline_options.max_length"] == "yaml"


def test_typed_max_batch_size_caps_yaml_input_size():
    from trt_converters.errors import UserError

    options = build({"max_batch_size": 4})
    assert options.input_size == (4, 64) and options.option_sources()["input_size"] == "yaml"
    assert options.derived_values()["input_size"] == {"value": [4, 64], "from": "max_batch_size (flag)"}
    with pytest.raises(UserError, match="batch 8 is larger than --max-batch-size 4"):
        from trt_converters.shapes import profiles_for

        both = build({"max_batch_size": 4, "input_size": ("8", "64")})  # both typed: still an error
        profiles_for(both.model_io_config, max_batch_size=4, input_size=both.input_size)


def test_checkpoint_sequence_limit_caps_yaml_shapes(tmp_path):
    """34 positions (32 tokens after RoBERTa's padding offset) cap the YAML's max/opt shapes and input_size."""
    (tmp_path / "encoder").mkdir()
    (tmp_path / "encoder" / "config.json").write_text(json.dumps({**ENCODER, "max_position_embeddings": 34}))
    (tmp_path / "config.json").write_text(json.dumps({"model_id": str(tmp_path / "encoder")}))  # absolute path
    options = build({"ckpt_path": str(tmp_path / "model.pt")})
    ids = options.model_io_config.inputs[0]
    assert (ids.min_shape, ids.opt_shape, ids.max_shape) == ([1], [32], [32])
    assert options.input_size == (8, 32)
    assert options.derived_values()["input_size"]["from"] == "model_io_config max_shape (checkpoint)"


def test_report_records_sources(gector_checkpoint, run_cli, tmp_path):
    """The small-vocabulary checkpoint converts with the YAML (its value_range would index past the
    embeddings) and report.json says where each value came from."""
    result = run_cli(["--config", GECTOR_YAML, "--ckpt-path", gector_checkpoint, "--max-batch-size", "4",
                      "--model-kwargs", '{"num_detect_labels": 2}', "--generate-onnx", "--output-dir", tmp_path])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "gector_roberta" / "report.json").read_text())
    sources = report["option_sources"]
    assert sources["max_batch_size"] == "flag" and sources["model_name"] == "yaml" and sources["opset"] == "default"
    assert sources["model_kwargs.num_detect_labels"] == "flag"
    assert sources["model_kwargs.num_labels"] == sources["pipeline_options.max_length"] == "checkpoint"
    # derived from the checkpoint's vocab_size, though a flag also set (other) model kwargs
    assert sources["model_io_config.inputs.input_ids.value_range"] == "checkpoint"
    assert report["derived_values"]["input_size"]["value"] == [4, 64]
    assert report["derived_values"]["model_io_config.inputs.input_ids.value_range"]["value"] == [0, 301]
    assert report["model"]["kwargs_sources"]["hidden_size"] == "checkpoint"
    assert report["profiles"]["input_ids"]["max"] == [4, 64]
    assert "[options] input_size = [4, 64] (from max_batch_size (flag))" in result.stderr
