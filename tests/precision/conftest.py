"""Tiny random-weight models exported to FP32 ONNX once per session, and a TensorRT-RTX build helper."""

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))



@dataclass
class ExportedModel:
    name: str
    module: object
    io: object
    profiles: dict
    onnx_path: Path

    def torch_outputs(self, input_sets: list[dict]) -> list[dict]:
        import torch

        results = []
        with torch.no_grad():
            for inputs in input_sets:
                outputs = self.module(*(torch.from_numpy(inputs[t.name]) for t in self.io.inputs))
                outputs = outputs if isinstance(outputs, tuple) else (outputs,)
                results.append({t.name: o.numpy() for t, o in zip(self.io.outputs, outputs)})
        return results

    def verification_inputs(self) -> list[dict]:
        """Inputs at the profiles' min, a middle and the max shapes, different from the calibration data's seed."""
        from trt_converters.shapes import export_sample_shapes, synthetic_inputs, verification_shapes

        shape_sets = verification_shapes(self.profiles, export_sample_shapes(self.profiles, None))
        return [synthetic_inputs(self.io, shapes, seed=100 + i) for i, shapes in enumerate(shape_sets)]


class TinyBert:
    """transformers BertModel, hidden 32, 2 layers; returns (last_hidden_state, pooler_output)."""

    def __new__(cls):
        import torch
        from transformers import BertConfig, BertModel

        config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=64, max_position_embeddings=64, attn_implementation="eager")

        class Wrapped(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.bert = BertModel(config, add_pooling_layer=True)

            def forward(self, input_ids, attention_mask):
                out = self.bert(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
                return out.last_hidden_state, out.pooler_output

        return Wrapped()


def _text_tensor(name: str, dtype: str, high=None) -> dict:
    spec = {"name": name, "dtype": dtype, "shape": [-1], "min_shape": [4], "opt_shape": [16], "max_shape": [32]}
    if high is not None:
        spec["value_range"] = [0, high] if dtype != "float32" else [0.0, high]
    return spec


def _build_model(name: str):
    import torch

    from tests.fixtures.tiny_models import OutlierMLP, TinyCNN, TinyMLP, TinyTextModel

    torch.manual_seed(0)
    if name == "mlp":
        module = TinyMLP(16, 32, 4)
        io = {"inputs": [{"name": "features", "dtype": "float32", "shape": [16]}],
              "outputs": [{"name": "logits", "dtype": "float32", "shape": [4]}]}
    elif name == "outlier":
        module = OutlierMLP()
        io = {"inputs": [{"name": "features", "dtype": "float32", "shape": [32]}],
              "outputs": [{"name": "logits", "dtype": "float32", "shape": [4]}]}
    elif name == "cnn":
        module = TinyCNN(num_classes=5, channels=8)
        io = {"inputs": [{"name": "images", "dtype": "float32", "shape": [3, 32, 32]}],
              "outputs": [{"name": "logits", "dtype": "float32", "shape": [5]},
                          {"name": "feature_map", "dtype": "float32", "shape": [8, 16, 16]}]}
    elif name == "text":
        module = TinyTextModel(vocab_size=50, hidden=16, num_labels=3)
        # The float mask is 0/1 like a real attention mask: value_range [0, 2) for ints, cast below.
        io = {"inputs": [_text_tensor("input_ids", "int64", 50), _text_tensor("input_mask", "float32", 1.0)],
              "outputs": [{"name": "scores", "dtype": "float32", "shape": [3]}]}
    else:
        module = TinyBert()
        if name == "bert_outlier":  # one residual channel 40x the others, as real BERTs have a few
            import torch

            with torch.no_grad():
                module.bert.encoder.layer[1].attention.output.LayerNorm.weight[5] = 40.0
        io = {"inputs": [_text_tensor("input_ids", "int64", 100), _text_tensor("attention_mask", "int64", 2)],
              "outputs": [{"name": "last_hidden_state", "dtype": "float32", "shape": [-1, 32]},
                          {"name": "pooler_output", "dtype": "float32", "shape": [32]}]}
    return module.eval(), io


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """name -> ExportedModel, exported lazily with the project's exporter (opset 17)."""
    from trt_converters.export import export_onnx
    from trt_converters.shapes import export_sample_shapes, profiles_for, synthetic_inputs
    from trt_converters.spec import IOSpec

    cache: dict = {}
    root = tmp_path_factory.mktemp("fp32")

    def get(name: str) -> ExportedModel:
        if name not in cache:
            module, io_dict = _build_model(name)
            io = IOSpec.model_validate(io_dict)
            profiles = profiles_for(io, max_batch_size=8, input_size=(4,))
            sample = synthetic_inputs(io, export_sample_shapes(profiles, (4,)), seed=0)
            result = export_onnx(module, io, sample, profiles, root / f"{name}.onnx", exporter="legacy", opset=17)
            cache[name] = ExportedModel(name, module, io, profiles, result.path)
        return cache[name]

    return get


@pytest.fixture(scope="session")
def rtx_build(tmp_path_factory):
    """Builds a serialized TensorRT-RTX engine with the project's build_engine; skips where tensorrt_rtx is absent."""
    pytest.importorskip("tensorrt_rtx")
    from trt_converters.build import BuildOptions, build_engine

    engines = tmp_path_factory.mktemp("engines")
    options = BuildOptions(backend="tensorrt-rtx", memory_pool_limit=256 << 20, progress=False)

    def build(onnx_path: Path, profiles: dict):
        result = build_engine(onnx_path, engines / (onnx_path.stem + ".plan"), profiles, options)
        assert result.engine_bytes > 0
        return result

    return build


@pytest.fixture()
def calibration_npz(tmp_path):
    return lambda model, samples=32: write_calibration_npz(model, tmp_path / f"{model.name}-calib.npz", samples)


def write_calibration_npz(model: ExportedModel, path: Path, samples: int = 32) -> Path:
    from trt_converters.shapes import synthetic_inputs

    shapes = {name: (samples, *p.opt[1:]) for name, p in model.profiles.items()}
    np.savez(path, **synthetic_inputs(model.io, shapes, seed=7))
    return path
