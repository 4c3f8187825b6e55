"""Text pipelines (classifier, GECToR, E5): files and configs they write, and end to end on the
real Triton server against PyTorch, with the core model converted by `trt-convert` and served as
python_onnxruntime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.text import SENTENCES, TINY, import_script, infer, torch_rows
from tests.text.conftest import GECTOR_LABELS, ROOT, gector_config, write_json
from trt_converters.errors import UserError
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.spec import IOSpec

# Longer than GECTOR_MAX_LENGTH tokens: the tagger sees only their beginning.
LONG_SENTENCES = ["the well-known cats is sleeping on the mat and she go to school yesterday with a apple .",
                  "Triton serves models over HTTP and gRPC quickly , are they well known  cats ?"]
GECTOR_MAX_LENGTH = 16


def read_config(path: Path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def text_io(length=-1, mask="attention_mask", mask_dtype="int64", outputs=None):
    inputs = [{"name": "input_ids", "dtype": "int64", "shape": [length]},
              {"name": mask, "dtype": mask_dtype, "shape": [length]}]
    return IOSpec.model_validate({"inputs": inputs, "outputs": outputs or [
        {"name": "logits", "dtype": "float32", "shape": [3]}]})


def request_for(tmp_path, io, pipeline="p", **options):
    repo = tmp_path / "repo"
    repo.mkdir(exist_ok=True)
    return PipelineRequest(repo=repo, core_model_name="core", pipeline_name=pipeline, io=io,
                           max_batch_size=8, instance_kind="cpu", options=options,
                           checkpoint_dir=options.pop("checkpoint_dir", None))


# -- what the writers write ------------------------------------------------------------------
def test_classifier_writes_tokenizer_core_postprocess_ensemble(tmp_path, roberta_tokenizer_dir):
    from trt_converters.pipelines import write_pipeline

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_json(ckpt / "config.json", {"id2label": {"0": "neg", "1": "neu", "2": "pos"}})
    request = request_for(tmp_path, text_io(), tokenizer_path=str(roberta_tokenizer_dir), checkpoint_dir=ckpt,
                          max_length="64")
    written = write_pipeline("classifier", request)
    repo = request.repo
    assert repo / "p_tokenizer" / "1" / "tokenizer" / "tokenizer.json" in written
    ensemble = read_config(repo / "p" / "config.pbtxt")
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 8
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == ["p_tokenizer", "core", "p_postprocess"]
    assert [o.name for o in ensemble.output] == ["label", "score", "probabilities"]
    tokenizer = read_config(repo / "p_tokenizer" / "config.pbtxt")
    params = {k: v.string_value for k, v in tokenizer.parameters.items()}
    assert params["padding"] == "longest" and params["max_length"] == "64"
    assert json.loads(params["length_buckets"]) == []  # default: pad to the longest (measured faster)
    assert json.loads(params["roles"]) == {"input_ids": "input_ids", "attention_mask": "attention_mask"}
    post = read_config(repo / "p_postprocess" / "config.pbtxt")
    post_params = {k: v.string_value for k, v in post.parameters.items()}
    assert json.loads(post_params["labels"]) == ["neg", "neu", "pos"] and post_params["activation"] == "softmax"
    assert (repo / "p_postprocess" / "1" / "model.py").is_file()


def test_classifier_fixed_length_float_masks_and_one_logit_head(tmp_path, roberta_tokenizer_dir):
    from trt_converters.pipelines.classifier import write_pipeline

    io = text_io(length=128, mask="input_mask", mask_dtype="float32",
                 outputs=[{"name": "output", "dtype": "float32", "shape": [1]}])
    request = request_for(tmp_path, io, tokenizer_path=str(roberta_tokenizer_dir), labels="caption")
    write_pipeline(request)
    tokenizer = read_config(request.repo / "p_tokenizer" / "config.pbtxt")
    params = {k: v.string_value for k, v in tokenizer.parameters.items()}
    assert params["padding"] == "max_length" and params["max_length"] == "128"
    assert json.loads(params["length_buckets"]) == []  # fixed length: nothing to bucket
    mask = next(o for o in tokenizer.output if o.name == "input_mask")
    assert list(mask.dims) == [128] and mask.data_type == 11  # TYPE_FP32
    post = read_config(request.repo / "p_postprocess" / "config.pbtxt")
    assert post.parameters["activation"].string_value == "sigmoid"


@pytest.mark.parametrize("given, expected", [("none", []), ("8,24,200", [8, 24, 64]), ("[32]", [32]),
                                             ("16,32,64,128", [16, 32, 64])])
def test_classifier_length_buckets_option(tmp_path, roberta_tokenizer_dir, given, expected):
    from trt_converters.pipelines.classifier import write_pipeline

    request = request_for(tmp_path, text_io(), tokenizer_path=str(roberta_tokenizer_dir), max_length="64",
                          length_buckets=given)
    write_pipeline(request)
    params = read_config(request.repo / "p_tokenizer" / "config.pbtxt").parameters
    assert json.loads(params["length_buckets"].string_value) == expected


def test_classifier_user_errors_write_nothing(tmp_path, roberta_tokenizer_dir):
    from trt_converters.pipelines.classifier import write_pipeline

    with pytest.raises(UserError, match="2 labels given but core output 'logits' has 3"):
        write_pipeline(request_for(tmp_path, text_io(), tokenizer_path=str(roberta_tokenizer_dir), labels="a,b"))
    with pytest.raises(UserError, match="length_buckets='16,x' must list token lengths"):
        write_pipeline(request_for(tmp_path, text_io(), tokenizer_path=str(roberta_tokenizer_dir), length_buckets="16,x"))
    with pytest.raises(UserError, match="needs tokenizer files"):
        write_pipeline(request_for(tmp_path, text_io()))
    with pytest.raises(UserError, match="no tokenizer role"):
        io = IOSpec.model_validate({"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1]},
                                               {"name": "pixels", "dtype": "float32", "shape": [-1]}],
                                    "outputs": [{"name": "logits", "dtype": "float32", "shape": [3]}]})
        write_pipeline(request_for(tmp_path, io, tokenizer_path=str(roberta_tokenizer_dir)))
    assert list((tmp_path / "repo").iterdir()) == []


def test_e5_prefix_option_and_alias(tmp_path, minilm_tokenizer):
    from trt_converters.pipelines.e5 import write_pipeline
    from trt_converters.text.minilm import minilm_checkpoint_dir

    io = text_io(outputs=[{"name": "embeddings", "dtype": "float32", "shape": [384]}])
    request = request_for(tmp_path, io, tokenizer_path=str(minilm_checkpoint_dir()), query_prefix="passage: ")
    write_pipeline(request)
    tokenizer = read_config(request.repo / "p_tokenizer" / "config.pbtxt")
    assert tokenizer.parameters["prefix"].string_value == "passage: "
    ensemble = read_config(request.repo / "p" / "config.pbtxt")
    assert [list(o.dims) for o in ensemble.output] == [[384]]


def gector_io(n_labels=len(GECTOR_LABELS) - 1):
    return IOSpec.model_validate({
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1]},
                   {"name": "attention_mask", "dtype": "int64", "shape": [-1]}],
        "outputs": [{"name": "logits_labels", "dtype": "float32", "shape": [-1, n_labels]},
                    {"name": "logits_d", "dtype": "float32", "shape": [-1, 2]}]})


def test_gector_writes_bls_model_with_labels_and_verb_forms(tmp_path, roberta_tokenizer_dir):
    from trt_converters.pipelines.gector import write_pipeline

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_json(ckpt / "config.json", gector_config(is_official_model=True, max_length=40))
    verbs = tmp_path / "verbs.txt"
    verbs.write_text("go_goes:VB_VBZ\n", encoding="utf-8")
    request = request_for(tmp_path, gector_io(), tokenizer_path=str(roberta_tokenizer_dir), checkpoint_dir=ckpt,
                          verb_forms_path=str(verbs), iterations="3", min_error_prob="0.4")
    write_pipeline(request)
    version = request.repo / "p" / "1"
    assert json.loads((version / "config.json").read_text())["label2id"]["$KEEP"] == 0
    assert (version / "verb-form-vocab.txt").read_text() == "go_goes:VB_VBZ\n"
    config = read_config(request.repo / "p" / "config.pbtxt")
    params = {k: v.string_value for k, v in config.parameters.items()}
    assert params["core_model"] == "core" and params["iterations"] == "3"
    assert params["add_special_tokens"] == "false"  # official checkpoints: no special tokens
    assert params["max_length"] == "40" and params["pad_to_length"] == "0"
    assert float(params["min_error_prob"]) == 0.4
    assert [i.name for i in config.input] == ["text"] and [o.name for o in config.output] == ["corrected"]


def test_gector_warns_when_verb_tags_have_no_dictionary(tmp_path, roberta_tokenizer_dir):
    from trt_converters.pipelines.gector import write_pipeline

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    write_json(ckpt / "config.json", gector_config())
    with pytest.warns(UserWarning, match=r"1 \$TRANSFORM_VERB_\* tags .* leave words unchanged"):
        write_pipeline(request_for(tmp_path, gector_io(), tokenizer_path=str(roberta_tokenizer_dir),
                                   checkpoint_dir=ckpt))
    verbs = tmp_path / "verbs.txt"
    verbs.write_text("go_goes:VB_VBZ\n", encoding="utf-8")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        write_pipeline(request_for(tmp_path, gector_io(), pipeline="q", tokenizer_path=str(roberta_tokenizer_dir),
                                   checkpoint_dir=ckpt, verb_forms_path=str(verbs)))


def test_gector_user_errors(tmp_path, roberta_tokenizer_dir):
    from trt_converters.pipelines.gector import write_pipeline

    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    with pytest.raises(UserError, match="config.json"):
        write_pipeline(request_for(tmp_path, gector_io(), tokenizer_path=str(roberta_tokenizer_dir),
                                   checkpoint_dir=ckpt))
    write_json(ckpt / "config.json", gector_config())
    with pytest.raises(UserError, match="has 99 label logits"):
        write_pipeline(request_for(tmp_path, gector_io(99), tokenizer_path=str(roberta_tokenizer_dir),
                                   checkpoint_dir=ckpt))
    bad = tmp_path / "verbs.txt"
    bad.write_text("nonsense\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 1"):
        write_pipeline(request_for(tmp_path, gector_io(), tokenizer_path=str(roberta_tokenizer_dir),
                                   checkpoint_dir=ckpt, verb_forms_path=str(bad)))
    assert list((tmp_path / "repo").iterdir()) == []


# -- end to end on the real Triton server ----------------------------------------------------
def convert(run_cli, work: Path, name: str, config: str, ckpt: Path, kwargs: dict, *extra,
            input_size=("2", "16")) -> None:
    result = run_cli([
        *(["--config", ROOT / "configs" / config] if config else []), "--ckpt-path", ckpt, "--model-name", name,
        "--model-kwargs", json.dumps(kwargs), "--triton-repo", work / "repo", "--output-dir", work / "out",
        "--generate-onnx", "--generate-triton-config", "--triton-backend", "python_onnxruntime",
        "--instance-kind", "cpu", "--max-batch-size", "8", "--input-size", *input_size, "--dynamic-batching",
        *extra])
    assert result.exit_code == 0, result.stderr + result.stdout


@pytest.fixture(scope="module")
def served(tmp_path_factory, roberta_tokenizer_dir):
    """Three tiny random-weight models converted by trt-convert with their pipelines, one server."""
    import torch
    from transformers import AutoTokenizer

    from trt_converters.text.minilm import minilm_checkpoint_dir
    from trt_converters.triton.server import LocalTritonServer

    from click.testing import CliRunner
    from trt_converters.cli import main

    def run_cli(args):
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return result

    work = tmp_path_factory.mktemp("text_pipelines")
    vocab = len(AutoTokenizer.from_pretrained(str(roberta_tokenizer_dir)))
    torch.manual_seed(0)
    models = {}

    # Classifier: RoBERTa with 4 labels, named by the YAML's pipeline_options.
    cls_dir = work / "classifier_ckpt"
    cls_dir.mkdir()
    cls_kwargs = dict(TINY, vocab_size=vocab, num_labels=4, max_position_embeddings=130)
    models["classifier"] = import_script("roberta_classifier").RobertaClassifier(**cls_kwargs).eval()
    torch.save(models["classifier"].state_dict(), cls_dir / "model.pt")
    convert(run_cli, work, "emotion", "roberta_emotion.yaml", cls_dir / "model.pt", cls_kwargs,
            "--tokenizer-path", roberta_tokenizer_dir, "--pipeline-option", "max_length=128",
            "--pipeline-option", "top_k=2", "--model-io-config", json.dumps({
                "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1],
                            "opt_shape": [16], "max_shape": [128], "value_range": [0, vocab]},
                           {"name": "attention_mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [4]}]}))

    # GECToR in gotutiyan's format: RoBERTa tagger over GECTOR_LABELS; beside the checkpoint its tokenizer
    # (with the $START token its training adds) and config.json, whose max_length (not the YAML's 80)
    # truncates the longest sentences.
    gector_dir = work / "gector_ckpt"
    start_tokenizer = AutoTokenizer.from_pretrained(str(roberta_tokenizer_dir))
    start_tokenizer.add_special_tokens({"additional_special_tokens": ["$START"]})
    start_tokenizer.save_pretrained(str(gector_dir))
    write_json(gector_dir / "config.json", gector_config(max_length=GECTOR_MAX_LENGTH))
    n_labels = len(GECTOR_LABELS) - 1
    gector_kwargs = dict(TINY, encoder_type="roberta", vocab_size=vocab, num_labels=n_labels,
                         num_detect_labels=2, max_position_embeddings=130)
    gector = import_script("gector").GectorModel(**gector_kwargs).eval()
    with torch.no_grad():  # decisive tags: random logits would often tie within float error
        gector.label_proj_layer.weight.mul_(20.0)
        gector.d_proj_layer.weight.mul_(20.0)
    models["gector"] = gector
    torch.save(gector.state_dict(), gector_dir / "model.pt")
    verbs = work / "verb-form-vocab.txt"
    verbs.write_text("go_goes:VB_VBZ\nhas_have:VBZ_VB\n", encoding="utf-8")
    convert(run_cli, work, "gector", "gector_roberta.yaml", gector_dir / "model.pt", gector_kwargs,
            "--pipeline-option", f"verb_forms_path={verbs}", "--pipeline-option", "iterations=3",
            "--model-io-config", json.dumps({
                "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1],
                            "opt_shape": [16], "max_shape": [64], "value_range": [0, vocab]},
                           {"name": "attention_mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
                "outputs": [{"name": "logits_labels", "dtype": "float32", "shape": [-1, n_labels]},
                            {"name": "logits_d", "dtype": "float32", "shape": [-1, 2]}]}))

    # E5: BERT encoder with the real MiniLM (BERT uncased) tokenizer, "query: " prefix.
    e5_dir = work / "e5_ckpt"
    e5_dir.mkdir()
    e5_kwargs = dict(TINY, vocab_size=30522, max_position_embeddings=130)
    models["e5"] = import_script("e5").E5Embedder(**e5_kwargs).eval()
    torch.save(models["e5"].state_dict(), e5_dir / "model.pt")
    convert(run_cli, work, "e5", "e5_small_v2.yaml", e5_dir / "model.pt", e5_kwargs,
            "--tokenizer-path", minilm_checkpoint_dir(), "--pipeline-option", "max_length=128", "--model-warmup",
            "--model-io-config", json.dumps({
                "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1],
                            "opt_shape": [16], "max_shape": [128], "value_range": [0, 30522]},
                           {"name": "attention_mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
                "outputs": [{"name": "embeddings", "dtype": "float32", "shape": [32]}]}))

    # Caption scorer: DeBERTa, fixed length 128, float masks, one logit (sigmoid), as the
    # original deployment serves it (no YAML: its use_fp16 would lower the graph).
    caption_dir = work / "caption_ckpt"
    caption_dir.mkdir()
    caption_kwargs = dict(TINY, vocab_size=vocab, max_position_embeddings=128, position_buckets=16,
                          pooling="mean", num_outputs=1)
    models["caption"] = import_script("deberta").DebertaLargeModel(**caption_kwargs).eval()
    torch.save(models["caption"].state_dict(), caption_dir / "model.pt")
    fixed = {"dtype": "float32", "shape": [128], "value_range": [1, 2]}
    convert(run_cli, work, "caption", None, caption_dir / "model.pt", caption_kwargs,
            "--model-script-path", ROOT / "model_scripts" / "deberta.py", "--model-class-name", "DebertaLargeModel",
            "--triton-inputs", "input_ids,input_mask", "--pipeline", "classifier", "--pipeline-option",
            "labels=good caption", "--tokenizer-path", roberta_tokenizer_dir,
            # seed 003's client names: "text_input" in, the label as "class_name"; and the production fields
            "--pipeline-option", "text_input=text_input", "--pipeline-option", "output_names={label: class_name}",
            "--model-warmup", "--pipeline-instance-count", "tokenizer=2", "--response-cache",
            "--max-queue-size", "64", "--queue-timeout", "5000000", "--priority-levels", "2",
            "--version-policy", "latest:1", "--triton-parameter", "served_by=trt-converters-test",
            "--model-io-config", json.dumps({
                "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [128], "value_range": [0, vocab]},
                           {"name": "input_mask", **fixed},
                           {"name": "input_token_type_ids", **fixed, "value_range": [0, 1]}],
                "outputs": [{"name": "output", "dtype": "float32", "shape": [1]}]}),
            input_size=("2", "128"))

    server = LocalTritonServer(work / "repo", log_path=work / "triton.log", startup_timeout=180)
    with server:
        yield {"server": server, "models": models, "work": work, "verbs": verbs,
               "tokenizers": {"classifier": roberta_tokenizer_dir, "gector": gector_dir,
                              "e5": minilm_checkpoint_dir()}}
    assert not server.is_running()


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_classifier_matches_pytorch(served, protocol):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(served["tokenizers"]["classifier"]))
    logits = torch_rows(served["models"]["classifier"], tokenizer, SENTENCES)
    expected = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    got = infer(served["server"], protocol, "emotion_classifier", SENTENCES, ["label", "score", "probabilities"])
    np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-4, atol=1e-5)
    labels = ["anger", "joy", "optimism", "sadness"]  # the YAML's labels
    top2 = np.argsort(-expected, axis=1)[:, :2]
    assert got["label"].shape == (len(SENTENCES), 2)
    assert [[v.decode() for v in row] for row in got["label"]] == [[labels[i] for i in row] for row in top2]
    np.testing.assert_allclose(got["score"], np.take_along_axis(expected, top2, axis=1), rtol=1e-4, atol=1e-5)


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_e5_matches_pytorch(served, protocol):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(served["tokenizers"]["e5"]))
    expected = torch_rows(served["models"]["e5"], tokenizer, SENTENCES, prefix="query: ")
    got = infer(served["server"], protocol, "e5_e5", SENTENCES, ["embeddings"])["embeddings"]
    assert got.shape == (len(SENTENCES), 32)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # The prefix matters: without it the embeddings differ.
    plain = torch_rows(served["models"]["e5"], tokenizer, SENTENCES)
    assert np.abs(plain - got).max() > 1e-3


def reference_gector(model, tokenizer, config: dict, sentences, verb_lines: str, iterations: int,
                     keep_confidence=0.0, min_error_prob=0.0):
    """gotutiyan/gector's `predict` (gector 1.2.0) restated independently for the test, on PyTorch:
    rows padded to max_length, probabilities in torch, edits on the space-joined words."""
    import torch

    verbs = {}
    for line in verb_lines.splitlines():
        words, tags = line.split(":")
        key = f"{words.split('_')[0]}_{tags.strip()}"
        verbs.setdefault(key, words.split("_")[1])
    id2label = {int(i): name for i, name in config["id2label"].items()}
    keep = config["label2id"]["$KEEP"]
    no_correction = [config["label2id"][name] for name in ("$KEEP", "<OOV>", "<PAD>")]

    def transform(token, label):
        simple = {"$TRANSFORM_CASE_LOWER": str.lower, "$TRANSFORM_CASE_UPPER": str.upper,
                  "$TRANSFORM_CASE_CAPITAL": str.capitalize, "$TRANSFORM_AGREEMENT_PLURAL": lambda t: t + "s",
                  "$TRANSFORM_AGREEMENT_SINGULAR": lambda t: t[:-1],
                  "$TRANSFORM_SPLIT_HYPHEN": lambda t: " ".join(t.split("-")),
                  "$TRANSFORM_CASE_CAPITAL_1": lambda t: t if len(t) <= 1 else t[0] + t[1:].capitalize()}
        if label in simple:
            return simple[label](token)
        return verbs.get(token + "_" + label[len("$TRANSFORM_VERB_"):], token)

    def one(token, label):
        if "$APPEND_" in label:
            return f"{token} {label.replace('$APPEND_', '')}"
        if token == "$START" or label in ("<PAD>", "<OOV>", "$KEEP"):
            return token
        if "$TRANSFORM_" in label:
            return transform(token, label)
        if "$REPLACE_" in label:
            return label.replace("$REPLACE_", "")
        if label == "$DELETE":
            return label
        return f"{token} {label}" if "$MERGE_" in label else token

    def edit(tokens, labels):
        out = " ".join([one(t, lab) for t, lab in zip(tokens, labels)] + tokens[len(labels):])
        for old, new in ((" $MERGE_HYPHEN ", "-"), (" $MERGE_SPACE ", ""), (" $DELETE", ""), ("$DELETE ", "")):
            out = out.replace(old, new)
        return out.split(" ")

    sources = [["$START"] + text.split(" ") for text in sentences]
    pending = list(range(len(sources)))
    for _ in range(iterations):
        if not pending:
            break
        batch = tokenizer([sources[i] for i in pending], return_tensors="pt", max_length=config["max_length"],
                          padding="max_length", truncation=True, is_split_into_words=True)
        masks = []
        for row in range(len(pending)):
            previous, mask = 0, []
            for word in batch.word_ids(row):
                mask.append(int(word is not None and word != previous))
                previous = word
            masks.append(mask)
        with torch.no_grad():
            logits_labels, logits_d = model(batch["input_ids"], batch["attention_mask"])
        probs = torch.softmax(logits_labels, dim=-1)
        probs[:, :, keep] += keep_confidence
        ids = probs.argmax(dim=-1)
        max_error = (torch.softmax(logits_d, dim=-1)[:, :, 1] * torch.tensor(masks)).max(dim=-1).values
        ids[max_error < min_error_prob, :] = keep
        ids[probs.max(dim=-1).values < min_error_prob] = keep
        still = []
        for row, index in enumerate(pending):
            labels, corrects, previous = [], False, None
            for position, word in enumerate(batch.word_ids(row)):
                if word is not None and word != previous:
                    labels.append(id2label[int(ids[row, position])])
                    corrects |= int(ids[row, position]) not in no_correction
                previous = word
            if corrects:
                sources[index] = edit(sources[index], labels)
                still.append(index)
        pending = still
    return [" ".join(words).replace("$START ", "") for words in sources]


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_gector_reproduces_the_reference_implementation(served, protocol):
    """Served through the real server: the corrections gotutiyan's predict makes, with config.json's max_length."""
    from transformers import AutoTokenizer

    folder = served["tokenizers"]["gector"]
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    config = json.loads((folder / "config.json").read_text())
    sentences = SENTENCES + LONG_SENTENCES + [""]
    lengths = [len(tokenizer(["$START"] + s.split(" "), is_split_into_words=True)["input_ids"]) for s in sentences]
    assert max(lengths) > GECTOR_MAX_LENGTH >= max(lengths[:len(SENTENCES)])  # the long ones are truncated
    expected = reference_gector(served["models"]["gector"], tokenizer, config, sentences,
                                served["verbs"].read_text(encoding="utf-8"), iterations=3)
    assert expected[:-1] != sentences[:-1]  # the random tagger does edit: the comparison means something
    got = infer(served["server"], protocol, "gector_gector", sentences, ["corrected"])["corrected"]
    assert got.shape == (len(sentences), 1)
    assert [row[0].decode() for row in got] == expected


@pytest.mark.triton
def test_gector_runtime_decoding_matches_the_server(served):
    """The converter-side import of the serving runtime decodes PyTorch logits as the served copy does."""
    import torch

    from trt_converters.pipelines._text_common import load_tokenizer
    from trt_converters.serving_runtime.gector_decoding import Decoding, GectorLabels, correct_sentences
    from trt_converters.serving_runtime.verb_forms import load_verb_forms

    model = served["models"]["gector"]

    def predict(input_ids, attention_mask):
        with torch.no_grad():
            labels, detect = model(torch.from_numpy(input_ids), torch.from_numpy(attention_mask))
        return labels.numpy(), detect.numpy()

    folder = served["tokenizers"]["gector"]
    labels = GectorLabels.from_config(json.loads((folder / "config.json").read_text()))
    sentences = SENTENCES + LONG_SENTENCES
    expected = correct_sentences(sentences, predict, load_tokenizer(folder, split_words=True), labels,
                                 Decoding(iterations=3, max_length=GECTOR_MAX_LENGTH, batch_size=8),
                                 verb_forms=load_verb_forms(served["verbs"]))
    got = infer(served["server"], "grpc", "gector_gector", sentences, ["corrected"])["corrected"]
    assert [row[0].decode() for row in got] == expected


def test_repository_requirements_cover_the_text_pipelines(served):
    from tests.helpers.served_models import constraint_pins

    text = (served["work"] / "repo" / "requirements.txt").read_text()
    pins = dict(line.split("==") for line in text.splitlines() if not line.startswith("#"))
    # tokenizer/GECToR models: numpy, tokenizers, transformers; python_onnxruntime core models: onnxruntime
    assert sorted(pins) == ["numpy", "onnxruntime", "tokenizers", "transformers"]
    assert pins == {name: constraint_pins()[name] for name in pins}


@pytest.mark.triton
def test_fixed_length_float_mask_one_logit_classifier_matches_pytorch(served):
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(served["tokenizers"]["classifier"]))
    enc = tokenizer(SENTENCES, padding="max_length", max_length=128, truncation=True, return_tensors="pt")
    with torch.no_grad():
        logits = served["models"]["caption"](enc["input_ids"], enc["attention_mask"].float()).numpy()
    expected = 1.0 / (1.0 + np.exp(-logits))
    got = infer(served["server"], "grpc", "caption_classifier", SENTENCES, ["class_name", "score", "probabilities"],
                text_input="text_input")
    np.testing.assert_allclose(got["probabilities"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got["score"], expected, rtol=1e-4, atol=1e-5)
    assert {row[0].decode() for row in got["class_name"]} == {"good caption"}


@pytest.mark.triton
def test_seed_003_curl_body_reaches_the_renamed_entry_input(served):
    """The v2 JSON body of seed 003's curl, sent as is; the configs carry warmup, cache and queue settings."""
    import urllib.request

    from trt_converters.triton.config import read_config

    body = {"inputs": [{"name": "text_input", "shape": [1, 1], "datatype": "BYTES", "data": [SENTENCES[0]]}]}
    request = urllib.request.Request(f"http://{served['server'].http_url}/v2/models/caption_classifier/infer",
                                     data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(request, timeout=60) as response:
        answer = json.loads(response.read())
    assert {o["name"] for o in answer["outputs"]} == {"class_name", "score", "probabilities"}
    repo = served["work"] / "repo"
    core, tokenizer = read_config(repo / "caption" / "config.pbtxt"), read_config(
        repo / "caption_classifier_tokenizer" / "config.pbtxt")
    ensemble = read_config(repo / "caption_classifier" / "config.pbtxt")
    assert [(w.batch_size, list(w.inputs["input_ids"].dims)) for w in core.model_warmup] == [(1, [128]), (8, [128])]
    assert core.dynamic_batching.default_queue_policy.max_queue_size == 64
    assert core.dynamic_batching.priority_levels == 2 and core.version_policy.latest.num_versions == 1
    assert core.parameters["served_by"].string_value == "trt-converters-test"
    assert [w.batch_size for w in tokenizer.model_warmup] == [1, 8] and tokenizer.instance_group[0].count == 2
    assert ensemble.response_cache.enable and not core.response_cache.enable
    e5_core = read_config(repo / "e5" / "config.pbtxt")  # dynamic length: warmup at the profile's opt length
    assert [list(w.inputs["input_ids"].dims) for w in e5_core.model_warmup] == [[16], [16]]


@pytest.mark.triton
@pytest.mark.parametrize("model, output", [("emotion_classifier", "probabilities"), ("e5_e5", "embeddings"),
                                           ("gector_gector", "corrected")])
def test_bad_requests_get_400_with_a_clear_message_and_the_server_keeps_serving(served, model, output):
    from tests.helpers.bad_requests import BadRequest, assert_battery, http_infer

    server = served["server"]

    def send(tensors):
        return lambda: http_infer(server, model, tensors, [output])

    def texts(rows):
        return np.array([[t.encode()] for t in rows], dtype=np.object_)

    cases = [
        BadRequest("unknown input name", send({"sentence": (texts(SENTENCES), "BYTES")}),
                   "unexpected inference input 'sentence'"),
        BadRequest("numbers for text", send({"text": (np.ones((2, 1), dtype=np.int32), "INT32")}),
                   f"input 'text' data-type is 'INT32', but model '{model}' expects 'BYTES'"),
        BadRequest("wrong shape", send({"text": (texts(SENTENCES[:2]).reshape(1, 2), "BYTES")}),
                   "unexpected shape for input 'text'"),
        BadRequest("batch above max_batch_size", send({"text": (texts(["a sentence"] * 9), "BYTES")}),
                   f"batch-size must be <= 8 for '{model}'"),
        BadRequest("no input", send({}), "expected 1 inputs but got 0 inputs"),
    ]
    assert_battery(server, cases, send({"text": (texts(SENTENCES), "BYTES")}))
