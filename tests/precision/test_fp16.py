"""FP16 lowering: ModelOpt AutoCast, verified against PyTorch and built with TensorRT-RTX."""

from pathlib import Path

import numpy as np
import pytest

from trt_converters.errors import StageError, UserError
from trt_converters.precision.diagnose import run_like_tensorrt
from trt_converters.precision.options import PrecisionOptions
from trt_converters.precision import lower_graph
from trt_converters.verify import DEFAULT_TOLERANCES, Tolerance, compare_output_sets, failure_message

MODEL_NAMES = ("mlp", "cnn", "text", "bert")


def _io_types(path: Path) -> dict:
    import onnx

    graph = onnx.load(str(path)).graph
    return {v.name: v.type.tensor_type.elem_type for v in list(graph.input) + list(graph.output)}


def _elem_types(path: Path) -> set:
    import onnx

    model = onnx.load(str(path))
    return {i.data_type for i in model.graph.initializer}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fp16_within_budget_and_builds(name, exported, rtx_build, tmp_path):
    import onnx

    model = exported(name)
    result = lower_graph(model.onnx_path, tmp_path / f"{name}.fp16.onnx", PrecisionOptions(mode="fp16"),
                         io=model.io, profiles=model.profiles)
    assert result.path.is_file() and result.precision == "fp16"
    assert result.notes[0] == "FP16 by ModelOpt AutoCast (constants folded first)", result.notes
    assert onnx.TensorProto.FLOAT16 in _elem_types(result.path), "no weight was converted to FP16"
    assert _io_types(result.path) == _io_types(model.onnx_path), "graph IO types changed"

    inputs = model.verification_inputs()
    comparisons = compare_output_sets(model.torch_outputs(inputs), run_like_tensorrt(result.path, inputs),
                                      DEFAULT_TOLERANCES["fp16"])
    assert all(c.passed for c in comparisons), failure_message("fp16", comparisons, DEFAULT_TOLERANCES["fp16"])
    rtx_build(result.path, model.profiles)


def test_sensitive_ops_stay_fp32(exported, tmp_path):
    model = exported("bert")
    result = lower_graph(model.onnx_path, tmp_path / "bert.fp16.onnx", PrecisionOptions(mode="fp16"),
                         io=model.io, profiles=model.profiles)
    kept = next(n for n in result.notes if n.startswith("kept in FP32"))
    assert "Softmax" in kept and "LayerNormalization" in kept
    inputs = model.verification_inputs()[1]
    inputs["attention_mask"][0] = 0  # a fully masked row: float32's lowest mask value is -inf in FP16
    outputs = run_like_tensorrt(result.path, [inputs])[0]
    assert all(np.isfinite(value).all() for value in outputs.values())


def test_too_tight_budget_names_the_worst_output(exported, tmp_path):
    model = exported("bert")
    result = lower_graph(model.onnx_path, tmp_path / "bert.fp16.onnx", PrecisionOptions(mode="fp16"),
                         io=model.io, profiles=model.profiles)
    inputs = model.verification_inputs()
    tight = Tolerance(atol=0.0, rtol=0.0, min_cosine=1.0)
    comparisons = compare_output_sets(model.torch_outputs(inputs), run_like_tensorrt(result.path, inputs), tight)
    assert not any(c.passed for c in comparisons)
    worst = max(comparisons, key=lambda c: c.max_rel_error)
    message = failure_message("fp16 graph", comparisons, tight)
    assert f"worst output {worst.name!r}" in message


def test_autocast_graph_with_non_finite_outputs_is_rejected(exported, tmp_path, monkeypatch):
    from onnx import numpy_helper

    from trt_converters.precision import fp16

    real_autocast = fp16.autocast_fp16

    def overflowing(model, work_dir, reference_inputs=None):
        lowered = real_autocast(model, work_dir, reference_inputs)
        for weight in lowered.graph.initializer:
            if weight.data_type == 10 and weight.dims and len(weight.dims) == 2:  # FLOAT16 matrices overflow
                scaled = (numpy_helper.to_array(weight).astype(np.float32) * 60000).astype(np.float16)
                weight.CopyFrom(numpy_helper.from_array(scaled, weight.name))
        return lowered

    monkeypatch.setattr(fp16, "autocast_fp16", overflowing)
    model = exported("mlp")
    result = lower_graph(model.onnx_path, tmp_path / "mlp.fp16.onnx", PrecisionOptions(mode="fp16"),
                         io=model.io, profiles=model.profiles)
    assert any(n.startswith("ModelOpt AutoCast graph rejected") for n in result.notes), result.notes


def test_every_converter_failing_is_a_stage_error(exported, tmp_path, monkeypatch):
    from trt_converters.precision import fp16

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(fp16, "autocast_fp16", broken)
    model = exported("mlp")
    out = tmp_path / "mlp.fp16.onnx"
    with pytest.raises(StageError, match="failed with every converter: ModelOpt AutoCast failed"):
        lower_graph(model.onnx_path, out, PrecisionOptions(mode="fp16"), io=model.io, profiles=model.profiles)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_float32_min_mask_constant_stays_finite(tmp_path):
    """A DeBERTa-style mask fill with float32's lowest value must not become -inf/NaN in FP16."""
    import torch

    from trt_converters.export import export_onnx
    from trt_converters.shapes import profiles_for, synthetic_inputs
    from trt_converters.spec import IOSpec

    class MaskedAttention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.query = torch.nn.Linear(8, 8)

        def forward(self, hidden, mask):
            scores = self.query(hidden) @ hidden.transpose(1, 2)
            blocked = (1.0 - mask[:, None, :]) * torch.finfo(torch.float32).min
            return torch.softmax(scores + blocked, dim=-1) @ hidden

    torch.manual_seed(0)
    io = IOSpec.model_validate({
        "inputs": [{"name": "hidden", "dtype": "float32", "shape": [6, 8]},
                   {"name": "mask", "dtype": "float32", "shape": [6], "value_range": [0, 1]}],
        "outputs": [{"name": "context", "dtype": "float32", "shape": [6, 8]}]})
    profiles = profiles_for(io, max_batch_size=4)
    module = MaskedAttention().eval()
    sample = synthetic_inputs(io, {"hidden": (2, 6, 8), "mask": (2, 6)})
    fp32 = export_onnx(module, io, sample, profiles, tmp_path / "masked.onnx", exporter="legacy", opset=17).path
    result = lower_graph(fp32, tmp_path / "masked.fp16.onnx", PrecisionOptions(mode="fp16"), io=io, profiles=profiles)
    inputs = synthetic_inputs(io, {"hidden": (3, 6, 8), "mask": (3, 6)}, seed=3)
    inputs["mask"] = np.array([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [1, 0, 1, 0, 1, 0]], dtype=np.float32)
    with torch.no_grad():
        reference = module(*(torch.from_numpy(inputs[k]) for k in ("hidden", "mask"))).numpy()
    candidate = run_like_tensorrt(result.path, [inputs])[0]["context"]
    assert np.isfinite(candidate).all()
    comparisons = compare_output_sets([{"context": reference}], [{"context": candidate}], DEFAULT_TOLERANCES["fp16"])
    assert comparisons[0].passed, comparisons


def test_unknown_precision_and_missing_graph_are_user_errors(exported, tmp_path):
    model = exported("mlp")
    with pytest.raises(UserError, match="precision 'fp8'"):
        lower_graph(model.onnx_path, tmp_path / "x.onnx", PrecisionOptions(mode="fp8"),
                    io=model.io, profiles=model.profiles)
    with pytest.raises(UserError, match="does not exist"):
        lower_graph(tmp_path / "missing.onnx", tmp_path / "x.onnx", PrecisionOptions(mode="fp16"),
                    io=model.io, profiles=model.profiles)


def test_first_divergence_names_the_damaged_layer(exported, tmp_path):
    import onnx
    from onnx import numpy_helper

    from trt_converters.precision.diagnose import first_divergence

    model = exported("mlp")
    inputs = model.verification_inputs()[1]
    assert first_divergence(model.onnx_path, model.onnx_path, inputs) is None

    damaged = onnx.load(str(model.onnx_path))
    second_gemm = [n for n in damaged.graph.node if n.op_type in ("Gemm", "MatMul")][1]
    weight_name = next(i for i in second_gemm.input[1:] if i in {w.name for w in damaged.graph.initializer})
    weight = next(w for w in damaged.graph.initializer if w.name == weight_name)
    weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight_name))
    damaged_path = tmp_path / "damaged.onnx"
    onnx.save(damaged, str(damaged_path))
    report = first_divergence(model.onnx_path, damaged_path, inputs)
    assert report is not None and repr(second_gemm.output[0]) in report and second_gemm.op_type in report


def test_missing_precision_package_is_a_user_error(exported, tmp_path, monkeypatch):
    import importlib.util

    from trt_converters import precision

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lief" else real_find_spec(name, *a))
    model = exported("mlp")
    with pytest.raises(UserError, match="needs lief: pip install 'trt-converters\\[precision\\]'"):
        precision.lower_graph(model.onnx_path, tmp_path / "x.onnx", PrecisionOptions(mode="fp16"),
                              io=model.io, profiles=model.profiles)


def test_fp32_graph_computing_nan_is_refused_before_choosing_a_converter(tmp_path):
    """FP16 candidates are judged against the FP32 graph; one that computes NaN is the model's fault."""
    import onnx
    from onnx import TensorProto, helper

    from trt_converters.shapes import profiles_for
    from trt_converters.spec import IOSpec

    graph = helper.make_graph([helper.make_node("Log", ["x"], ["y"])], "log",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(tmp_path / "log.onnx"))
    io = IOSpec.model_validate({"inputs": [{"name": "x", "dtype": "float32", "shape": [4], "value_range": [-2, -1]}],
                                "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}]})
    with pytest.raises(StageError, match="FP16 lowering: the FP32 graph itself is non-finite: output 'y' holds 8 "
                                         r"NaN/inf value\(s\) on the check inputs"):
        lower_graph(tmp_path / "log.onnx", tmp_path / "log.fp16.onnx", PrecisionOptions(mode="fp16"),
                    io=io, profiles=profiles_for(io, max_batch_size=2))
    assert not (tmp_path / "log.fp16.onnx").exists()
