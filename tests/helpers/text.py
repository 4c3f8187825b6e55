"""Text-pipeline test helpers: the tiny transformer sizes, sample sentences, the model scripts, requests to a
served pipeline and PyTorch's answers to compare with."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
SENTENCES = ["I has a apple .", "she go to school yesterday", "This is a test sentence with some words .",
             "the well-known cats is sleeping on the mat"]


def import_script(name):
    spec = importlib.util.spec_from_file_location(f"text_pipeline_test_{name}", ROOT / "model_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def infer(server, protocol, model, texts, outputs, text_input="text"):
    if protocol == "http":
        import tritonclient.http as client_lib

        client = client_lib.InferenceServerClient(url=server.http_url)
    else:
        import tritonclient.grpc as client_lib

        client = client_lib.InferenceServerClient(url=server.grpc_url)
    text = client_lib.InferInput(text_input, [len(texts), 1], "BYTES")
    text.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    result = client.infer(model, [text], outputs=[client_lib.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def torch_rows(model, tokenizer, texts, prefix="", max_length=128):
    """PyTorch outputs one text at a time (no padding), stacked."""
    import torch

    rows = []
    with torch.no_grad():
        for text in texts:
            enc = tokenizer([prefix + text], truncation=True, max_length=max_length, return_tensors="pt")
            rows.append(model(enc["input_ids"], enc["attention_mask"]).numpy()[0])
    return np.stack(rows)
