"""Fixtures shared by every test folder: the tiny test models, their checkpoints, and a CLI runner."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
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


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """state_dict checkpoints of the tiny models, in the formats users bring."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("tiny_models_for_checkpoints", TINY_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    paths = {"mlp": folder / "mlp.pt", "cnn": folder / "cnn.pth", "text": folder / "text.bin"}
    torch.save(module.TinyMLP().state_dict(), paths["mlp"])
    torch.save({"model": module.TinyCNN().state_dict(), "epoch": 3}, paths["cnn"])  # a training checkpoint
    torch.save({f"module.{k}": v for k, v in module.TinyTextModel().state_dict().items()}, paths["text"])
    return paths


def model_flags(kind: str, checkpoints: dict[str, Path]) -> list[str]:
    classes = {"mlp": "TinyMLP", "cnn": "TinyCNN", "text": "TinyTextModel"}
    io = {"mlp": MLP_IO, "cnn": CNN_IO, "text": TEXT_IO}[kind]
    return ["--ckpt-path", str(checkpoints[kind]), "--model-script-path", str(TINY_MODELS),
            "--model-class-name", classes[kind], "--model-io-config", json.dumps(io), "--model-name", kind]


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


@pytest.fixture
def run_cli():
    """Runs `trt-convert` in-process and returns exit code, stdout and stderr."""
    from click.testing import CliRunner

    from trt_converters.cli import main

    def run(args: list[str]) -> CliResult:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with its mode and (files) content hash: compare before and after to
    prove nothing changed."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): f"{p.stat().st_mode:o} "
            + (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder")
            for p in sorted(folder.rglob("*"))}


def triton_infer(protocol: str, url: str, model: str, inputs: dict, output: str):
    """One request to a real Triton server over "http" or "grpc"; returns the named output as numpy."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    client_module = grpcclient if protocol == "grpc" else httpclient
    tensors = []
    for name, array in inputs.items():
        tensor = client_module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return client_module.InferenceServerClient(url).infer(model, tensors).as_numpy(output)
