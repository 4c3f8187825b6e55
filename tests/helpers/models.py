"""The tiny test models: their script, IO specs and the trt-convert flags that name them."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY_MODELS = ROOT / "tests" / "fixtures" / "tiny_models.py"

MLP_IO = {"inputs": [{"name": "features", "dtype": "float32", "shape": [16]}],
          "outputs": [{"name": "scores", "dtype": "float32", "shape": [4]}]}
CNN_IO = {"inputs": [{"name": "images", "dtype": "float32", "shape": [3, -1, -1], "min_shape": [3, 16, 16],
                      "opt_shape": [3, 32, 32], "max_shape": [3, 48, 48]}],
          "outputs": [{"name": "logits", "dtype": "float32", "shape": [5]},
                      {"name": "feature_map", "dtype": "float32", "shape": [8, -1, -1]}]}
TEXT_IO = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "value_range": [0, 50]},
                      {"name": "input_mask", "dtype": "float32", "shape": [-1]}],
           "outputs": [{"name": "output", "dtype": "float32", "shape": [3]}]}


def model_flags(kind: str, checkpoints: dict[str, Path]) -> list[str]:
    classes = {"mlp": "TinyMLP", "cnn": "TinyCNN", "text": "TinyTextModel"}
    io = {"mlp": MLP_IO, "cnn": CNN_IO, "text": TEXT_IO}[kind]
    return ["--ckpt-path", str(checkpoints[kind]), "--model-script-path", str(TINY_MODELS),
            "--model-class-name", classes[kind], "--model-io-config", json.dumps(io), "--model-name", kind]
