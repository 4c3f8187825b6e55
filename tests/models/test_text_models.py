"""Text model scripts: strict loading of users' checkpoint formats, parity with the Hugging Face
classes, and ONNX export (dynamo exporter, dynamic batch and sequence) run in ONNX Runtime at
shapes other than the export sample. Tiny random models (hidden 32, 2 layers, 2 heads)."""

from __future__ import annotations

import importlib.util
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
MODEL_SCRIPTS = REPO / "model_scripts"
CONFIGS = REPO / "configs"
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)


def load_script(name: str):
    """Import model_scripts/<name>.py by path, as the core does."""
    path = MODEL_SCRIPTS / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"model_script_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def load_strict(model: torch.nn.Module, state_dict: dict) -> torch.nn.Module:
    """What the core does: adapt_state_dict when present, then a strict load."""
    if hasattr(model, "adapt_state_dict"):
        state_dict = model.adapt_state_dict(dict(state_dict))
    model.load_state_dict(state_dict, strict=True)
    return model.eval()


def save_and_reload(state_dict: dict, folder: Path, name: str = "model.pt") -> dict:
    """Round-trip through torch.save / weights_only load, as users' checkpoints arrive."""
    path = folder / name
    torch.save(state_dict, path)
    return torch.load(path, map_location="cpu", weights_only=True)


def export_onnx(model, sample: tuple, input_names, output_names, path: Path) -> Path:
    """Dynamo exporter, batch and sequence dims dynamic, one self-contained file."""
    batch, seq = torch.export.Dim("batch", min=1, max=64), torch.export.Dim("seq", min=2, max=512)
    dynamic_shapes = tuple({0: batch, 1: seq} for _ in sample)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model, sample, dynamo=True, input_names=list(input_names),
            output_names=list(output_names), dynamic_shapes=dynamic_shapes,
            external_data=False, verbose=False,
        )
    program.save(str(path))
    return path


def run_onnx(path: Path, feeds: dict) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})


def assert_tensorrt_builds(path: Path, max_seq: int = 128) -> None:
    """Parse and build the graph with the real TensorRT(-RTX) builder when it is installed."""
    trt = pytest.importorskip("tensorrt_rtx")
    logger = trt.Logger(trt.Logger.ERROR)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    assert parser.parse(path.read_bytes()), [str(parser.get_error(i)) for i in range(parser.num_errors)]
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        profile.set_shape(network.get_input(i).name, (1, 2), (4, 16), (8, max_seq))
    config.add_optimization_profile(profile)
    assert builder.build_serialized_network(network, config) is not None


def text_batch(batch: int, seq: int, vocab: int, seed: int = 0, mask_dtype=torch.int64):
    """Random token ids and a right-padded mask (the first row full, every row >= 2 tokens)."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (batch, seq), generator=generator)
    lengths = torch.randint(2, seq + 1, (batch,), generator=generator)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(mask_dtype)
    return ids, mask


def assert_close(actual, expected, atol=1e-4):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=atol)


def config_io_names(config_name: str) -> tuple[list[str], list[str]]:
    config = yaml.safe_load((CONFIGS / config_name).read_text())
    io = config["model_io_config"]
    return [t["name"] for t in io["inputs"]], [t["name"] for t in io["outputs"]]


# --- RoBERTa sequence classifier -------------------------------------------------------------

def tiny_roberta_hf(num_labels: int = 4):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=120, max_position_embeddings=80, num_labels=num_labels, **TINY)
    return RobertaForSequenceClassification(config).eval(), config


def test_roberta_classifier_loads_hf_checkpoint_and_matches(tmp_path):
    script = load_script("roberta_classifier")
    reference, config = tiny_roberta_hf()
    state_dict = save_and_reload(reference.state_dict(), tmp_path)
    kwargs = script.RobertaClassifier.hf_config_to_kwargs(config.to_dict())
    assert kwargs["num_labels"] == 4 and kwargs["hidden_size"] == 32
    model = load_strict(script.RobertaClassifier(**kwargs), state_dict)
    ids, mask = text_batch(3, 12, 120)
    with torch.no_grad():
        assert_close(model(ids, mask), reference(input_ids=ids, attention_mask=mask).logits)


def test_roberta_classifier_old_checkpoint_buffers_are_dropped_but_real_mismatch_fails(tmp_path):
    script = load_script("roberta_classifier")
    reference, config = tiny_roberta_hf()
    state_dict = dict(reference.state_dict())
    state_dict["roberta.embeddings.position_ids"] = torch.arange(80)[None]
    kwargs = script.RobertaClassifier.hf_config_to_kwargs(config.to_dict())
    load_strict(script.RobertaClassifier(**kwargs), state_dict)
    del state_dict["classifier.out_proj.bias"]
    with pytest.raises(RuntimeError, match="classifier.out_proj.bias"):
        load_strict(script.RobertaClassifier(**kwargs), state_dict)


def test_roberta_classifier_exports_with_dynamic_batch_and_length(tmp_path):
    script = load_script("roberta_classifier")
    reference, config = tiny_roberta_hf()
    model = load_strict(
        script.RobertaClassifier(**script.RobertaClassifier.hf_config_to_kwargs(config.to_dict())),
        reference.state_dict(),
    )
    inputs, outputs = config_io_names("roberta_emotion.yaml")
    path = export_onnx(model, text_batch(2, 16, 120), inputs, outputs, tmp_path / "model.onnx")
    for batch, seq in ((5, 9), (3, 70)):
        ids, mask = text_batch(batch, seq, 120, seed=batch)
        (logits,) = run_onnx(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            assert_close(logits, model(ids, mask))
    assert_tensorrt_builds(path, max_seq=78)


# --- DeBERTa -----------------------------------------------------------------------------------

TINY_DEBERTA_V3 = dict(
    TINY, vocab_size=120, max_position_embeddings=64, position_buckets=16, type_vocab_size=0,
    relative_attention=True, norm_rel_ebd="layer_norm", share_att_key=True,
    pos_att_type=["p2c", "c2p"], position_biased_input=False, max_relative_positions=-1,
)


def tiny_deberta_hf_classifier(num_labels: int = 3):
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    torch.manual_seed(0)
    config = DebertaV2Config(
        **TINY_DEBERTA_V3, id2label={i: f"L{i}" for i in range(num_labels)}, attn_implementation="eager"
    )
    return DebertaV2ForSequenceClassification(config).eval(), config


def test_deberta_sequence_classifier_loads_hf_checkpoint_and_matches(tmp_path):
    script = load_script("deberta")
    reference, config = tiny_deberta_hf_classifier()
    state_dict = save_and_reload(reference.state_dict(), tmp_path)
    kwargs = script.DebertaSequenceClassifier.hf_config_to_kwargs(json.loads(config.to_json_string()))
    assert kwargs["num_labels"] == 3 and kwargs["position_buckets"] == 16
    model = load_strict(script.DebertaSequenceClassifier(**kwargs), state_dict)
    assert model.deberta.config._attn_implementation == "eager"
    ids, mask = text_batch(3, 12, 120)
    with torch.no_grad():
        assert_close(model(ids, mask), reference(input_ids=ids, attention_mask=mask).logits)

    inputs, outputs = config_io_names("deberta_classifier.yaml")
    path = export_onnx(model, text_batch(2, 16, 120), inputs, outputs, tmp_path / "model.onnx")
    ids, mask = text_batch(4, 23, 120, seed=4)
    (logits,) = run_onnx(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        assert_close(logits, model(ids, mask))
    assert_tensorrt_builds(path)


def caption_state_dict(config_kwargs: dict, num_outputs: int = 1) -> dict:
    """A caption checkpoint as its training code writes it: an encoder at `model.`, a head at `fc.`."""
    from transformers import DebertaV2Config, DebertaV2Model

    torch.manual_seed(1)
    encoder = DebertaV2Model(DebertaV2Config(**config_kwargs))
    head = torch.nn.Linear(config_kwargs["hidden_size"], num_outputs)
    state_dict = {f"model.{k}": v for k, v in encoder.state_dict().items()}
    state_dict.update({f"fc.{k}": v for k, v in head.state_dict().items()})
    return {"model": state_dict}


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_deberta_caption_model_loads_and_pools(tmp_path, pooling):
    script = load_script("deberta")
    checkpoint = save_and_reload(caption_state_dict(TINY_DEBERTA_V3), tmp_path)["model"]
    model = load_strict(script.DebertaLargeModel(pooling=pooling, **TINY_DEBERTA_V3), checkpoint)
    ids, mask = text_batch(3, 10, 120, mask_dtype=torch.float32)
    with torch.no_grad():
        hidden = model.model(input_ids=ids, attention_mask=mask.long()).last_hidden_state
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            pooled = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(3)])
        expected = pooled @ checkpoint["fc.weight"].T + checkpoint["fc.bias"]
        output = model(ids, mask, torch.ones_like(mask))
    assert output.shape == (3, 1)
    assert_close(output, expected)


def test_deberta_caption_model_exports_without_token_types(tmp_path):
    """type_vocab_size 0: token types are ignored, so a two-input graph serves the same answers."""
    script = load_script("deberta")
    checkpoint = caption_state_dict(TINY_DEBERTA_V3)["model"]
    model = load_strict(script.DebertaLargeModel(**TINY_DEBERTA_V3), checkpoint)
    ids, mask = text_batch(3, 10, 120, mask_dtype=torch.float32)
    with torch.no_grad():
        assert torch.equal(model(ids, mask, torch.ones_like(mask)), model(ids, mask))

    inputs, outputs = config_io_names("deberta_caption.yaml")
    assert inputs == ["input_ids", "input_mask", "input_token_type_ids"] and outputs == ["output"]
    path = export_onnx(model, text_batch(2, 16, 120, mask_dtype=torch.float32), inputs[:2], outputs,
                       tmp_path / "model.onnx")
    for batch, seq in ((5, 128), (1, 7)):
        ids, mask = text_batch(batch, seq, 120, seed=batch, mask_dtype=torch.float32)
        (output,) = run_onnx(path, {"input_ids": ids.numpy(), "input_mask": mask.numpy()})
        with torch.no_grad():
            assert_close(output, model(ids, mask))
    assert_tensorrt_builds(path)


def test_deberta_caption_model_uses_token_types_when_the_encoder_has_them():
    script = load_script("deberta")
    config = dict(TINY_DEBERTA_V3, type_vocab_size=2)
    model = load_strict(script.DebertaLargeModel(**config), caption_state_dict(config)["model"])
    with torch.no_grad():
        model.model.embeddings.token_type_embeddings.weight[1].add_(1.0)
        ids, mask = text_batch(2, 8, 120, mask_dtype=torch.float32)
        zeros, ones = torch.zeros_like(mask), torch.ones_like(mask)
        assert not torch.allclose(model(ids, mask, zeros), model(ids, mask, ones))


# --- GECToR ------------------------------------------------------------------------------------

TINY_ROBERTA_ENCODER = dict(TINY, vocab_size=120, max_position_embeddings=80, type_vocab_size=1,
                            layer_norm_eps=1e-5, pad_token_id=1)
GECTOR_LABELS = ["$KEEP", "$DELETE", "$APPEND_the", "$REPLACE_a", "$TRANSFORM_CASE_CAPITAL"]


def gotutiyan_config(labels=GECTOR_LABELS, model_id="roberta-base") -> dict:
    """config.json as gotutiyan/gector's GECToRConfig saves it (label ids: <OOV>, $KEEP, ..., <PAD>)."""
    names = ["<OOV>", *labels, "<PAD>"]
    label2id = {name: i for i, name in enumerate(names)}
    return {
        "model_id": model_id, "p_dropout": 0.0, "label_pad_token": "<PAD>", "label_oov_token": "<OOV>",
        "d_pad_token": "<PAD>", "keep_label": "$KEEP", "correct_label": "$CORRECT",
        "incorrect_label": "$INCORRECT", "label_smoothing": 0.0, "has_add_pooling_layer": True,
        "initializer_range": 0.02, "is_official_model": False, "max_length": 80,
        "label2id": label2id, "id2label": {str(i): n for n, i in label2id.items()},
        "d_label2id": {"$CORRECT": 0, "$INCORRECT": 1, "<PAD>": 2},
        "d_id2label": {"0": "$CORRECT", "1": "$INCORRECT", "2": "<PAD>"},
        "architectures": ["GECToR"], "transformers_version": "4.38.2",
    }


class ReferenceGector(torch.nn.Module):
    """gotutiyan's GECToR network at inference, built from transformers' RobertaModel."""

    def __init__(self, num_labels: int, vocab_size: int = 120):
        super().__init__()
        from transformers import RobertaConfig, RobertaModel

        config = RobertaConfig(**dict(TINY_ROBERTA_ENCODER, vocab_size=vocab_size))
        self.bert = RobertaModel(config, add_pooling_layer=False)
        self.bert.resize_token_embeddings(vocab_size + 1, mean_resizing=False)  # + $START
        self.label_proj_layer = torch.nn.Linear(32, num_labels)
        self.d_proj_layer = torch.nn.Linear(32, 2)

    def forward(self, input_ids, attention_mask):
        hidden = self.bert(input_ids, attention_mask=attention_mask).last_hidden_state
        return self.label_proj_layer(hidden), self.d_proj_layer(hidden)


def gector_kwargs(script, hf_config: dict) -> dict:
    """YAML model_kwargs (tiny encoder) < config.json, the core's precedence."""
    return {"encoder_type": "roberta", **TINY_ROBERTA_ENCODER, **script.GectorModel.hf_config_to_kwargs(hf_config)}


def test_gector_hf_config_maps_labels_and_known_encoder():
    script = load_script("gector")
    kwargs = script.GectorModel.hf_config_to_kwargs(gotutiyan_config(["$KEEP"] + [f"$APPEND_{i}" for i in range(4999)]))
    assert kwargs["num_labels"] == 5001 and kwargs["num_detect_labels"] == 2
    assert kwargs["encoder_type"] == "roberta" and kwargs["vocab_size"] == 50265
    assert kwargs["hidden_size"] == 768 and kwargs["num_hidden_layers"] == 12
    unknown = script.GectorModel.hf_config_to_kwargs(gotutiyan_config(model_id="someone/own-encoder"))
    assert unknown == {"num_labels": len(GECTOR_LABELS) + 1, "num_detect_labels": 2}


def test_gector_loads_hf_checkpoint_matches_and_exports(tmp_path):
    script = load_script("gector")
    hf_config = gotutiyan_config(model_id="tiny/roberta")
    torch.manual_seed(0)
    reference = ReferenceGector(num_labels=len(GECTOR_LABELS) + 1).eval()
    (tmp_path / "config.json").write_text(json.dumps(hf_config))
    state_dict = save_and_reload(reference.state_dict(), tmp_path, "pytorch_model.bin")
    assert {k.split(".")[0] for k in state_dict} == {"bert", "label_proj_layer", "d_proj_layer"}
    kwargs = gector_kwargs(script, json.loads((tmp_path / "config.json").read_text()))
    model = load_strict(script.GectorModel(**kwargs), state_dict)
    assert model.bert.embeddings.word_embeddings.num_embeddings == 121
    ids, mask = text_batch(2, 11, 121)
    with torch.no_grad():
        for ours, theirs in zip(model(ids, mask), reference(ids, mask)):
            assert_close(ours, theirs)

    inputs, outputs = config_io_names("gector_roberta.yaml")
    assert outputs == ["logits_labels", "logits_d"]
    path = export_onnx(model, text_batch(2, 16, 121), inputs, outputs, tmp_path / "model.onnx")
    ids, mask = text_batch(4, 37, 121, seed=7)
    logits_labels, logits_d = run_onnx(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    assert logits_labels.shape == (4, 37, len(GECTOR_LABELS) + 1) and logits_d.shape == (4, 37, 2)
    with torch.no_grad():
        expected_labels, expected_d = model(ids, mask)
    assert_close(logits_labels, expected_labels)
    assert_close(logits_d, expected_d)
    assert_tensorrt_builds(path, max_seq=64)


def allennlp_state_dict(reference: ReferenceGector, special_tokens_fix: bool = True) -> dict:
    """Grammarly's layout: AllenNLP names, a pooler, label head + @@PADDING@@ row (last),
    detect head with CORRECT, INCORRECT, @@UNKNOWN@@, @@PADDING@@ rows."""
    prefix = "text_field_embedder.token_embedder_bert.bert_model."
    state_dict = {prefix + k[len("bert."):]: v for k, v in reference.state_dict().items() if k.startswith("bert.")}
    if not special_tokens_fix:
        key = prefix + "embeddings.word_embeddings.weight"
        state_dict[key] = state_dict[key][:-1]
    state_dict[prefix + "pooler.dense.weight"] = torch.randn(32, 32)
    state_dict[prefix + "pooler.dense.bias"] = torch.randn(32)
    state_dict[prefix + "embeddings.position_ids"] = torch.arange(80)[None]
    labels_w, labels_b = reference.label_proj_layer.weight, reference.label_proj_layer.bias
    detect_w, detect_b = reference.d_proj_layer.weight, reference.d_proj_layer.bias
    state_dict["tag_labels_projection_layer._module.weight"] = torch.cat([labels_w, torch.randn(1, 32)])
    state_dict["tag_labels_projection_layer._module.bias"] = torch.cat([labels_b, torch.randn(1)])
    state_dict["tag_detect_projection_layer._module.weight"] = torch.cat([detect_w, torch.randn(2, 32)])
    state_dict["tag_detect_projection_layer._module.bias"] = torch.cat([detect_b, torch.randn(2)])
    return {k: v.detach().clone() for k, v in state_dict.items()}


@pytest.mark.parametrize("special_tokens_fix", [True, False])
def test_gector_loads_grammarly_allennlp_checkpoint(tmp_path, special_tokens_fix):
    script = load_script("gector")
    torch.manual_seed(0)
    reference = ReferenceGector(num_labels=len(GECTOR_LABELS) + 1).eval()
    if not special_tokens_fix:
        with torch.no_grad():
            reference.bert.embeddings.word_embeddings.weight[-1].zero_()
    state_dict = save_and_reload(allennlp_state_dict(reference, special_tokens_fix), tmp_path, "roberta_1_gectorv2.th")
    model = load_strict(script.GectorModel(num_labels=len(GECTOR_LABELS) + 1, **TINY_ROBERTA_ENCODER), state_dict)
    ids, mask = text_batch(2, 9, 121)
    with torch.no_grad():
        for ours, theirs in zip(model(ids, mask), reference(ids, mask)):
            assert_close(ours, theirs)


def test_gector_allennlp_with_wrong_label_count_fails_strict_load(tmp_path):
    script = load_script("gector")
    reference = ReferenceGector(num_labels=len(GECTOR_LABELS) + 1)
    state_dict = allennlp_state_dict(reference)
    with pytest.raises(RuntimeError, match="label_proj_layer"):
        load_strict(script.GectorModel(num_labels=len(GECTOR_LABELS) + 3, **TINY_ROBERTA_ENCODER), state_dict)


def test_convert_allennlp_checkpoint_names_labels_from_vocabulary(tmp_path):
    from trt_converters.errors import UserError
    from trt_converters.text import gector_checkpoint
    from trt_converters.text.gector_checkpoint import convert_allennlp_checkpoint

    script = load_script("gector")
    torch.manual_seed(0)
    official_labels = [*GECTOR_LABELS, "@@UNKNOWN@@", "@@PADDING@@"]
    reference = ReferenceGector(num_labels=len(official_labels) - 1).eval()
    state_dict = allennlp_state_dict(reference)
    # Detection rows listed INCORRECT first: conversion must pick rows by name, not position.
    detect_w = state_dict["tag_detect_projection_layer._module.weight"]
    detect_b = state_dict["tag_detect_projection_layer._module.bias"]
    state_dict["tag_detect_projection_layer._module.weight"] = detect_w[[1, 0, 2, 3]]
    state_dict["tag_detect_projection_layer._module.bias"] = detect_b[[1, 0, 2, 3]]
    torch.save(state_dict, tmp_path / "roberta_1_gectorv2.th")
    vocab = tmp_path / "output_vocabulary"
    vocab.mkdir()
    (vocab / "labels.txt").write_text("\n".join(official_labels) + "\n")
    (vocab / "d_tags.txt").write_text("INCORRECT\nCORRECT\n@@UNKNOWN@@\n@@PADDING@@\n")
    encoder = dict(TINY_ROBERTA_ENCODER, model_type="roberta")
    with pytest.raises(UserError, match="not found"):
        convert_allennlp_checkpoint(tmp_path / "missing.th", vocab, tmp_path / "hf", model_id="roberta-base")
    with pytest.raises(UserError, match="model_id"):
        convert_allennlp_checkpoint(tmp_path / "roberta_1_gectorv2.th", vocab, tmp_path / "hf")
    (tmp_path / "encoder.json").write_text(json.dumps(encoder))
    gector_checkpoint.main([str(tmp_path / "roberta_1_gectorv2.th"), str(vocab), str(tmp_path / "hf"),
                            "--model-id", "roberta-base", "--encoder-config", str(tmp_path / "encoder.json")])
    out = tmp_path / "hf"

    config = json.loads((out / "config.json").read_text())
    assert list(config["label2id"]) == [*GECTOR_LABELS, "<OOV>", "<PAD>"]
    assert config["id2label"]["0"] == "$KEEP" and config["d_label2id"]["$INCORRECT"] == 1
    kwargs = script.GectorModel.hf_config_to_kwargs(config)
    assert kwargs["num_labels"] == len(GECTOR_LABELS) + 1 and kwargs["hidden_size"] == 32
    model = load_strict(script.GectorModel(**kwargs), torch.load(out / "model.pt", weights_only=True))
    ids, mask = text_batch(2, 9, 121)
    with torch.no_grad():
        for ours, theirs in zip(model(ids, mask), reference(ids, mask)):
            assert_close(ours, theirs)


# --- E5 / sentence embeddings ------------------------------------------------------------------

def tiny_bert_hf():
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=120, max_position_embeddings=80, **TINY)
    return BertModel(config).eval(), config


def mean_pooled_normalized(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = [hidden[i, mask[i].bool()].mean(0) for i in range(hidden.shape[0])]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


@pytest.mark.parametrize("prefix", ["", "bert.", "model.", "0.auto_model."])
def test_e5_loads_bert_checkpoints_with_or_without_prefix(tmp_path, prefix):
    script = load_script("e5")
    reference, config = tiny_bert_hf()
    state_dict = {prefix + k: v for k, v in reference.state_dict().items()}  # includes pooler.*
    state_dict[prefix + "embeddings.position_ids"] = torch.arange(80)[None]
    kwargs = script.E5Embedder.hf_config_to_kwargs(config.to_dict())
    model = load_strict(script.E5Embedder(**kwargs), save_and_reload(state_dict, tmp_path))
    ids, mask = text_batch(3, 12, 120)
    with torch.no_grad():
        expected = mean_pooled_normalized(reference(input_ids=ids, attention_mask=mask).last_hidden_state, mask)
        embeddings = model(ids, mask)
    assert embeddings.shape == (3, 32)
    assert_close(embeddings, expected)
    assert_close(embeddings.norm(dim=-1), torch.ones(3))


def test_e5_exports_with_dynamic_batch_and_length(tmp_path):
    script = load_script("e5")
    reference, config = tiny_bert_hf()
    model = load_strict(script.E5Embedder(**script.E5Embedder.hf_config_to_kwargs(config.to_dict())),
                        reference.state_dict())
    inputs, outputs = config_io_names("e5_small_v2.yaml")
    path = export_onnx(model, text_batch(2, 16, 120), inputs, outputs, tmp_path / "model.onnx")
    for batch, seq in ((6, 5), (3, 70)):
        ids, mask = text_batch(batch, seq, 120, seed=seq)
        (embeddings,) = run_onnx(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            assert_close(embeddings, model(ids, mask))
    assert_tensorrt_builds(path)


def test_minilm_checkpoint_matches_sentence_transformers(monkeypatch):
    """The real all-MiniLM-L6-v2 weights, loaded strictly, reproduce sentence-transformers."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    from safetensors.torch import load_file
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from trt_converters.text.minilm import minilm_checkpoint_dir

    folder = minilm_checkpoint_dir()
    script = load_script("e5")
    config = yaml.safe_load((CONFIGS / "minilm_l6.yaml").read_text())
    kwargs = {**config["model_kwargs"],
              **script.E5Embedder.hf_config_to_kwargs(json.loads((folder / "config.json").read_text()))}
    model = load_strict(script.E5Embedder(**kwargs), load_file(str(folder / "model.safetensors")))

    sentences = ["A man is eating food.", "The weather is lovely today.",
                 "TensorRT engines are built from ONNX graphs.", "short"]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        ours = model(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        ours_without_types = model(batch["input_ids"], batch["attention_mask"])
    reference = SentenceTransformer(str(folder), device="cpu")
    theirs = torch.from_numpy(reference.encode(sentences, convert_to_numpy=True))
    cosine = torch.nn.functional.cosine_similarity(ours, theirs, dim=-1)
    assert cosine.min().item() >= 0.9999, cosine
    assert torch.allclose(ours, ours_without_types)
