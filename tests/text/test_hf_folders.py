"""Hugging Face classifier folders without a model script (configs/hf_sequence_classification.yaml): converted
with the documented command, served by the real tritonserver, and compared with transformers'
`pipeline("text-classification", top_k=None)` on the same folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.hf_folders import LABELS, bpe_tokenizer, wordpiece_tokenizer, write_hf_folder

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = ROOT / "model_scripts" / "hf_sequence_classification.py"
CONFIG = ROOT / "configs" / "hf_sequence_classification.yaml"
TEXTS = ["I has a apple .", "", "Ünïcödé wörds, émojis 🙂 and 中文 ça va ?", "word " * 400,
         "This is a test sentence with some words ."]
SERVED = {"bert": "wordpiece", "roberta": "bpe", "deberta-v2": "wordpiece"}


def _tokenizer(kind: str, bpe_folder: Path):
    return bpe_tokenizer(bpe_folder) if kind == "bpe" else wordpiece_tokenizer()


def _hf_probabilities(folder: Path, texts: list[str]) -> np.ndarray:
    """transformers' own pipeline on the folder: probabilities in label-id order."""
    from transformers import pipeline

    classify = pipeline("text-classification", model=str(folder), tokenizer=str(folder), top_k=None,
                        truncation=True, device="cpu")
    order = {name: index for index, name in LABELS.items()}
    rows = []
    for scores in classify(texts):
        row = np.zeros(len(LABELS))
        for entry in scores:
            row[order[entry["label"]]] = entry["score"]
        rows.append(row)
    return np.stack(rows)


@pytest.mark.parametrize("model_type, tokenizer", [("xlm-roberta", "bpe"), ("distilbert", "wordpiece"),
                                                   ("electra", "wordpiece"), ("bert", "wordpiece")])
def test_script_loads_hf_keys_as_saved_and_matches_transformers(tmp_path, model_type, tokenizer,
                                                                roberta_tokenizer_dir):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from trt_converters.loading import load_model

    folder = write_hf_folder(tmp_path / model_type, model_type, _tokenizer(tokenizer, roberta_tokenizer_dir))
    config = json.loads((folder / "config.json").read_text())
    model, info = load_model(SCRIPT, "HFSequenceClassifier", folder / "model.safetensors",
                             model_kwargs={"hf_config": config}, input_names=["input_ids", "attention_mask"])
    assert set(model.state_dict()) >= set(load_file(folder / "model.safetensors")), "keys as saved"
    reference = AutoModelForSequenceClassification.from_pretrained(str(folder)).eval()
    ids = torch.tensor([[5, 17, 33, 8, 2, 0], [5, 9, 2, 0, 0, 0]])
    mask = (torch.arange(6) < torch.tensor([[5], [3]])).long()
    with torch.no_grad():
        torch.testing.assert_close(model(ids, mask), reference(input_ids=ids, attention_mask=mask).logits)
    assert model.io_from_kwargs({"hf_config": config})["output_widths"] == [len(LABELS)]


def test_unsupported_model_type_and_missing_config_are_named(tmp_path, run_cli):
    from trt_converters.serving_runtime.torch_loading import import_model_class

    classifier = import_model_class(SCRIPT, "HFSequenceClassifier")
    with pytest.raises(ValueError, match="model_type 'gpt2' is not one of bert, roberta"):
        classifier(hf_config={"model_type": "gpt2"})
    folder = write_hf_folder(tmp_path / "bert", "bert", wordpiece_tokenizer())
    (folder / "config.json").unlink()
    result = run_cli(["--config", CONFIG, "--ckpt-path", folder / "model.safetensors", "--generate-onnx",
                      "--output-dir", tmp_path / "out"])
    assert result.exit_code == 2 and "needs the folder's config.json beside --ckpt-path" in result.stderr


@pytest.fixture(scope="module")
def served(tmp_path_factory, roberta_tokenizer_dir):
    """Three architectures (BPE and WordPiece tokenizers) converted with the documented command, one server."""
    from click.testing import CliRunner

    from trt_converters.cli import main
    from trt_converters.triton.server import LocalTritonServer

    work = tmp_path_factory.mktemp("hf_folders")
    folders = {}
    for index, (model_type, tokenizer) in enumerate(SERVED.items()):
        folder = write_hf_folder(work / model_type, model_type, _tokenizer(tokenizer, roberta_tokenizer_dir),
                                 seed=index)
        name = model_type.replace("-", "_")
        result = CliRunner().invoke(main, [str(a) for a in [
            "--config", CONFIG, "--ckpt-path", folder / "model.safetensors", "--generate-onnx",
            "--generate-triton-config", "--triton-repo", work / "repo", "--model-name", name,
            "--output-dir", work / "out", "--triton-backend", "python_onnxruntime", "--max-batch-size", "8",
            "--input-size", "2", "16"]], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr + result.stdout
        folders[name] = folder
    with LocalTritonServer(work / "repo", log_path=work / "triton.log", startup_timeout=180) as server:
        yield server, folders, work


@pytest.mark.triton
@pytest.mark.parametrize("name", [t.replace("-", "_") for t in SERVED])
def test_served_probabilities_match_transformers_pipeline(served, name):
    import tritonclient.http as httpclient

    server, folders, work = served
    client = httpclient.InferenceServerClient(url=server.http_url)
    text = httpclient.InferInput("text", [len(TEXTS), 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode()] for t in TEXTS], dtype=np.object_))
    result = client.infer(f"{name}_classifier", [text],
                          outputs=[httpclient.InferRequestedOutput(o) for o in ("label", "probabilities")])
    expected = _hf_probabilities(folders[name], TEXTS)
    np.testing.assert_allclose(result.as_numpy("probabilities"), expected, atol=1e-4, rtol=0)
    assert [row[0].decode() for row in result.as_numpy("label")] == [LABELS[i] for i in expected.argmax(axis=1)]
    assert expected.std(axis=0).max() > 2e-3, "the texts give different answers"
    report = json.loads((work / "out" / name / "report.json").read_text())
    assert report["model"]["kwargs"]["hf_config"]["id2label"]["1"] == "joy"
