"""A tiny RoBERTa classifier (hidden 32, 2 layers), its checkpoint, and its FP32 ONNX graph (dynamo exporter)."""

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ROBERTA_SCRIPT = ROOT / "model_scripts" / "roberta_classifier.py"
TINY_KWARGS = dict(num_labels=4, vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                   intermediate_size=64, max_position_embeddings=40)
IO_CONFIG = {
    "inputs": [
        {"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [4], "opt_shape": [16],
         "max_shape": [32], "value_range": [3, 1000]},
        {"name": "attention_mask", "dtype": "int64", "shape": [-1], "min_shape": [4], "opt_shape": [16],
         "max_shape": [32], "value_range": [1, 2]},
    ],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [4]}],
}
MAX_BATCH = 8


@dataclass
class TinyRoberta:
    model: object
    io: object
    profiles: dict
    checkpoint: Path
    fp32_onnx: Path
    check_inputs: list  # input sets at shapes other than the export sample, with padding
    references: list  # PyTorch outputs for check_inputs


def padded_inputs(batch: int, length: int, seed: int) -> dict:
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(3, 1000, size=(batch, length)).astype(np.int64)
    mask = np.ones((batch, length), dtype=np.int64)
    for row in range(batch):
        keep = int(rng.integers(max(2, length // 2), length + 1))
        mask[row, keep:] = 0
        ids[row, keep:] = 1  # RoBERTa's pad id
    return {"input_ids": ids, "attention_mask": mask}


def pytorch_outputs(model, input_sets: list) -> list:
    import torch

    with torch.inference_mode():
        return [{"logits": model(torch.from_numpy(s["input_ids"]), torch.from_numpy(s["attention_mask"])).numpy()}
                for s in input_sets]


@pytest.fixture(scope="session")
def tiny_roberta(tmp_path_factory) -> TinyRoberta:
    import torch

    from trt_converters.export import export_onnx
    from trt_converters.loading import import_model_class
    from trt_converters.shapes import export_sample_shapes, profiles_for, synthetic_inputs
    from trt_converters.spec import parse_io_config

    folder = tmp_path_factory.mktemp("tiny_roberta")
    torch.manual_seed(0)
    model = import_model_class(ROBERTA_SCRIPT, "RobertaClassifier")(**TINY_KWARGS).eval()
    checkpoint = folder / "model.pt"
    torch.save(model.state_dict(), checkpoint)
    io = parse_io_config(IO_CONFIG)
    profiles = profiles_for(io, max_batch_size=MAX_BATCH)
    sample = synthetic_inputs(io, export_sample_shapes(profiles, None))
    result = export_onnx(model, io, sample, profiles, folder / "model.onnx", exporter="dynamo")
    check_inputs = [padded_inputs(1, 7, 1), padded_inputs(3, 24, 2), padded_inputs(8, 32, 3)]
    return TinyRoberta(model, io, profiles, checkpoint, result.path, check_inputs,
                       pytorch_outputs(model, check_inputs))


@pytest.fixture(scope="session")
def fused_roberta(tiny_roberta, tmp_path_factory):
    """tiny_roberta re-exported in the fusable form and fused by ONNX Runtime's transformer optimizer."""
    from trt_converters.onnxruntime_cpu.fusion import export_fusable, fuse_for_onnxruntime, transformer_dims
    from trt_converters.shapes import export_sample_shapes, synthetic_inputs

    folder = tmp_path_factory.mktemp("fused_roberta")
    sample = synthetic_inputs(tiny_roberta.io, export_sample_shapes(tiny_roberta.profiles, None))
    fusable = export_fusable(tiny_roberta.model, tiny_roberta.io, sample, tiny_roberta.profiles,
                             folder / "fusable.onnx").path
    heads, hidden = transformer_dims(tiny_roberta.model)
    return fuse_for_onnxruntime(fusable, folder / "fused.onnx", num_heads=heads, hidden_size=hidden)
