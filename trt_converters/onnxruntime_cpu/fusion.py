"""ONNX Runtime's transformer optimizer (fused Attention, SkipLayerNormalization, BiasGelu) for the CPU path.

The export form decides what fuses. Measured with transformers 5.2x, torch 2.13, onnxruntime 1.31 on
RoBERTa and BERT classifiers: the default SDPA attention exports (either exporter) as a pattern the
optimizer does not recognize, so only SkipLayerNormalization and BiasGelu fuse; with eager attention
and the legacy (TorchScript) exporter at opset 14 or 17, Attention fuses too (one per layer). The
dynamo exporter never fused Attention. EmbedLayerNormalization does not fuse for RoBERTa (position
ids from a cumulative sum over the input ids) and is not needed: the embedding LayerNormalization runs once.
Fused graphs are com.microsoft operators, so they are marked as ONNX Runtime graphs.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import StageError, UserError
from trt_converters.memory import release

FUSION_KEY = "trt_converters.onnxruntime_fusions"
EXPORTER = "legacy"
OPSET = 14
WANTED = ("Attention", "SkipLayerNormalization")  # a graph without these gained little from fusing


@dataclass(frozen=True)
class FusionResult:
    path: Path
    statistics: dict[str, int]  # fused operator -> count (only those found)
    num_heads: int
    hidden_size: int

    @property
    def attention_fused(self) -> bool:
        return self.statistics.get("Attention", 0) + self.statistics.get("MultiHeadAttention", 0) > 0


def transformer_dims(model) -> tuple[int, int]:
    """(num_heads, hidden_size) from the first Hugging Face config found on the module tree; (0, 0) if none."""
    for module in model.modules():
        config = getattr(module, "config", None)
        heads, hidden = getattr(config, "num_attention_heads", None), getattr(config, "hidden_size", None)
        if isinstance(heads, int) and isinstance(hidden, int):
            return heads, hidden
    return 0, 0


@contextlib.contextmanager
def eager_attention(model):
    """Switches every Hugging Face config on the module tree to eager attention, restored afterwards."""
    changed = []
    for module in model.modules():
        config = getattr(module, "config", None)
        if config is not None and hasattr(config, "_attn_implementation") and id(config) not in {id(c) for c, _ in changed}:
            changed.append((config, config._attn_implementation))
            config._attn_implementation = "eager"
    try:
        yield bool(changed)
    finally:
        for config, previous in changed:
            config._attn_implementation = previous


def export_fusable(model, io, sample_inputs: dict, profiles: dict, out_path: Path):
    """The export form the transformer optimizer fuses: eager attention, legacy exporter, opset 14."""
    from trt_converters.export import export_onnx

    with eager_attention(model):
        return export_onnx(model, io, sample_inputs, profiles, out_path, exporter=EXPORTER, opset=OPSET)


def fuse_for_onnxruntime(onnx_path: Path, out_path: Path, *, num_heads: int = 0, hidden_size: int = 0,
                         model_type: str = "bert") -> FusionResult:
    """Runs onnxruntime.transformers.optimizer (no ORT session-level passes) and writes the fused graph atomically.

    num_heads/hidden_size 0 lets the optimizer read them from the graph's Reshape constants.
    """
    import onnx

    from trt_converters.onnxruntime_cpu.targets import mark_onnxruntime_target, set_metadata

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if not onnx_path.is_file():
        raise UserError(f"ONNX file {onnx_path} does not exist; pass the path of a .onnx graph")
    try:
        optimized = _optimize_by_fusion(onnx.load(str(onnx_path)), model_type, num_heads, hidden_size)
    except Exception as exc:  # the optimizer raises many types; its message is what helps
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"ONNX Runtime's transformer optimizer failed on {onnx_path.name}: {first}") from exc
    statistics = {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}
    model = optimized.model
    del optimized  # the fusions' objects (reference cycles), freed before the save
    release()
    if not any(o.domain == "com.microsoft" for o in model.opset_import):  # save_model_to_file adds it too
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    mark_onnxruntime_target(model, "fused-transformer")
    set_metadata(model, {FUSION_KEY: json.dumps(statistics, sort_keys=True)})
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ort-fuse-", dir=out_path.parent) as tmp:
        staged = Path(tmp) / out_path.name
        onnx.save_model(model, str(staged))
        os.replace(staged, out_path)
    del model
    release()
    return FusionResult(out_path, statistics, num_heads, hidden_size)


def _optimize_by_fusion(model, model_type: str, num_heads: int, hidden_size: int):
    """onnxruntime.transformers.optimizer.optimize_model at opt_level 0 (its Python fusions alone, the steps of its
    optimize_by_fusion), with symbolic shape inference on a weightless skeleton.

    The library's fusions (Attention, SkipLayerNormalization, ...) call symbolic shape inference several times and
    each keeps a whole copy of the model: on RoBERTa-base 2.9 GB above the 0.5 GB graph. Shape inference reads the
    weights' types and dims, and the values only of small tensors, so it gets the skeleton; the fusions themselves
    run on the real model. optimize_model itself would also load the graph twice (once to look for external data).
    """
    import onnxruntime
    from onnxruntime.transformers import optimizer
    from onnxruntime.transformers.shape_infer_helper import SymbolicShapeInferenceHelper

    base = optimizer.MODEL_TYPES[model_type][0]

    class WeightlessShapes(base):
        def infer_runtime_shape(self, dynamic_axis_mapping=None, update=False):
            if self.enable_shape_infer and (self.shape_infer_helper is None or update):
                self.shape_infer_helper = SymbolicShapeInferenceHelper(weightless(self.model))
            return super().infer_runtime_shape(dynamic_axis_mapping or {}, update=False)

    fused = WeightlessShapes(model, num_heads, hidden_size)
    fused.optimize(optimizer.FusionOptions(model_type))
    fused.topological_sort()
    fused.model.producer_name = "onnxruntime.transformers"
    fused.model.producer_version = onnxruntime.__version__
    return fused


def weightless(model):
    """A copy of `model` without its large initializers' data, for symbolic shape inference: those are declared as
    typed graph inputs instead (precision/graph_shapes.py), which it treats as the values it does not know, as a
    weight is to it (it reads values only to compute shapes); nodes, value_info and small initializers are kept."""
    from trt_converters.precision.graph_shapes import weightless_skeleton

    return weightless_skeleton(model, value_info=True)[0]
