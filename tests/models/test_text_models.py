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
    for batch, seq in ((5, 9), (3, 64)):
        ids, mask = text_batch(batch, seq, 120, seed=batch)
        (logits,) = run_onnx(path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            assert_close(logits, model(ids, mask))
