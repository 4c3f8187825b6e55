"""Unit tests of the core modules: spec, shapes, comparison, staging, loading, options, exporter choice."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trt_converters.errors import StageError, UserError
from trt_converters.shapes import export_sample_shapes, profiles_for, synthetic_inputs, verification_shapes
from trt_converters.spec import parse_byte_size, parse_io_config

TEXT = {"inputs": [{"name": "ids", "dtype": "int64", "shape": [-1], "min_shape": [4], "max_shape": [256],
                    "value_range": [0, 40]},
                   {"name": "mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [3]}]}
IMAGE = {"inputs": [{"name": "images", "dtype": "float32", "shape": [3, 64, 64], "value_range": [0, 255]}],
         "outputs": [{"name": "boxes", "dtype": "float32", "shape": [-1, 6]}]}


@pytest.mark.parametrize("text, expected", [("1073741824", 1 << 30), ("1<<30", 1 << 30), ("2G", 2 << 30),
                                            ("512M", 512 << 20), ("64 KiB", 64 << 10), (4096, 4096)])
def test_byte_sizes(text, expected):
    assert parse_byte_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1", "0", "1.5X"])
def test_bad_byte_sizes(text):
    with pytest.raises(UserError):
        parse_byte_size(text)


def test_original_tool_json_and_yaml_file(tmp_path):
    original = ('{"inputs":[{"name":"input_ids","dtype":"int64","shape":[128]},{"name":"input_mask","dtype":"float32",'
                '"shape":[128]}],"outputs":[{"name":"output","dtype":"float32","shape":[1]}]}')
    spec = parse_io_config(original)
    assert [t.name for t in spec.inputs] == ["input_ids", "input_mask"] and spec.outputs[0].triton_dtype == "TYPE_FP32"
    (tmp_path / "io.yaml").write_text("inputs:\n  - {name: x, dtype: uint8, shape: [3, 8, 8]}\n"
                                      "outputs:\n  - {name: y, dtype: bool, shape: [1]}\n")
    from_file = parse_io_config(str(tmp_path / "io.yaml"))
    assert from_file.inputs[0].triton_dtype == "TYPE_UINT8" and from_file.outputs[0].triton_dtype == "TYPE_BOOL"


def test_text_profiles_share_ranges_and_follow_input_size():
    profiles = profiles_for(parse_io_config(TEXT), max_batch_size=16, input_size=(4, 64))
    assert profiles["ids"].min == (1, 4) and profiles["ids"].opt == (4, 64) and profiles["ids"].max == (16, 256)
    assert profiles["mask"] == profiles["ids"]


def test_fixed_image_profile_and_default_opt_batch():
    profile = profiles_for(parse_io_config(IMAGE), max_batch_size=8)["images"]
    assert profile.min == (1, 3, 64, 64) and profile.opt == (8, 3, 64, 64) and profile.max == (8, 3, 64, 64)


def test_input_size_contradicting_a_fixed_length_is_refused():
    spec = parse_io_config({"inputs": [{"name": "ids", "dtype": "int64", "shape": [128]}],
                            "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}]})
    with pytest.raises(UserError, match="contradicts input 'ids' of fixed shape"):
        profiles_for(spec, max_batch_size=8, input_size=(8, 256))
    with pytest.raises(UserError, match="larger than --max-batch-size"):
        profiles_for(spec, max_batch_size=8, input_size=(16, 128))


def test_dynamic_image_dims_need_explicit_ranges():
    spec = parse_io_config({"inputs": [{"name": "img", "dtype": "float32", "shape": [3, -1, -1]}],
                            "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}]})
    with pytest.raises(UserError, match="give min_shape, opt_shape and max_shape"):
        profiles_for(spec, max_batch_size=4)


def test_verification_shapes_differ_from_the_export_sample():
    spec = parse_io_config(TEXT)
    profiles = profiles_for(spec, max_batch_size=8, input_size=(None, 64))
    sample = export_sample_shapes(profiles, None)
    sets = verification_shapes(profiles, sample)
    assert sample["ids"] == (2, 64)
    assert [s["ids"] for s in sets] == [(1, 4), (5, 130), (8, 256)]
    assert all(s["ids"] == s["mask"] for s in sets)


def test_synthetic_inputs_respect_value_ranges_and_dtypes():
    spec = parse_io_config(TEXT)
    arrays = synthetic_inputs(spec, {"ids": (3, 7), "mask": (3, 7)}, seed=1)
    assert arrays["ids"].dtype == np.int64 and arrays["ids"].min() >= 0 and arrays["ids"].max() < 40
    assert (arrays["mask"] == 1).all()
    image = synthetic_inputs(parse_io_config(IMAGE), {"images": (2, 3, 64, 64)})["images"]
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() < 255


def test_comparison_rule_and_worst_output_message():
    from trt_converters.verify import Tolerance, compare_output_sets, failure_message

    reference = [{"a": np.array([1.0, -2.0, 4.0]), "b": np.array([10.0, 0.0])}]
    candidate = [{"a": np.array([1.0, -2.0, 4.001]), "b": np.array([10.0, 3.0])}]
    tolerance = Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.999)
    results = {c.name: c for c in compare_output_sets(reference, candidate, tolerance)}
    assert results["a"].passed and results["a"].max_rel_error == pytest.approx(0.001 / 4)
    assert not results["b"].passed and results["b"].cosine < 0.96
    assert "worst output 'b'" in failure_message("fp16 graph", list(results.values()), tolerance)
    nan = compare_output_sets(reference, [{"a": np.array([np.nan, 0, 0]), "b": np.zeros(2)}], tolerance)
    assert not nan[0].passed


def test_comparison_refuses_shape_differences():
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets

    with pytest.raises(StageError, match="shape"):
        compare_output_sets([{"a": np.zeros((2, 3))}], [{"a": np.zeros((3, 2))}], DEFAULT_TOLERANCES["fp32"])


def test_staging_commits_everything_or_nothing(tmp_path):
    from trt_converters.atomic import Staging

    existing = tmp_path / "repo" / "model"
    existing.mkdir(parents=True)
    (existing / "old.txt").write_text("old")
    with Staging() as staging:
        folder = staging.path_for(existing)
        folder.mkdir()
        (folder / "config.pbtxt").write_text("new")
        staging.path_for(tmp_path / "out" / "model.onnx").write_bytes(b"onnx")
        assert not (tmp_path / "out").exists()
        staging.commit()
    assert sorted(p.name for p in existing.iterdir()) == ["config.pbtxt"]
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx"
    with Staging() as staging:
        staging.path_for(tmp_path / "out" / "model.onnx").write_bytes(b"never committed")
    assert (tmp_path / "out" / "model.onnx").read_bytes() == b"onnx"
    assert not staging.root.exists()


def test_checkpoint_formats(tmp_path):
    import torch
    from safetensors.torch import save_file

    from trt_converters.loading import read_checkpoint

    state = {"layer.weight": torch.ones(2, 2), "layer.bias": torch.zeros(2)}
    save_file(state, str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {"model": {f"module.{k}": v for k, v in state.items()}}, "step": 7}, tmp_path / "w.ckpt")
    for name in ("w.safetensors", "w.ckpt"):
        loaded = read_checkpoint(tmp_path / name)
        assert sorted(loaded) == ["layer.bias", "layer.weight"]
    (tmp_path / "bad.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(UserError, match="not a readable safetensors file"):
        read_checkpoint(tmp_path / "bad.safetensors")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UserError, match="holds a list, not a state_dict"):
        read_checkpoint(tmp_path / "list.pt")


def test_model_kwargs_precedence(tmp_path):
    """--model-kwargs > the hook's reading of config.json > the YAML's model_kwargs, key by key."""
    from trt_converters.options import build_options

    (tmp_path / "script.py").write_text(
        "class WithHook:\n"
        "    @classmethod\n"
        "    def hf_config_to_kwargs(cls, hf_config):\n"
        "        return {'hidden': hf_config['hidden_size'], 'layers': hf_config['num_hidden_layers']}\n")
    (tmp_path / "config.json").write_text(json.dumps({"hidden_size": 64, "num_hidden_layers": 6}))
    yaml = {"model_script_path": str(tmp_path / "script.py"), "model_class_name": "WithHook",
            "model_kwargs": {"hidden": 32, "layers": 12, "vocab": 9}}
    options = build_options(yaml, {"ckpt_path": str(tmp_path / "model.bin"), "model_kwargs": '{"layers": 2}'})
    assert options.model_kwargs == {"hidden": 64, "layers": 2, "vocab": 9}
    sources = options.option_sources()
    assert [sources[f"model_kwargs.{k}"] for k in ("hidden", "layers", "vocab")] == ["checkpoint", "flag", "yaml"]


def test_model_script_is_imported_without_touching_sys_path():
    import sys

    from tests.helpers.models import TINY_MODELS
    from trt_converters.loading import import_model_class

    before = list(sys.path)
    model_class = import_model_class(TINY_MODELS, "TinyMLP")
    assert model_class.__name__ == "TinyMLP" and sys.path == before


def test_script_that_fails_to_import(tmp_path):
    from trt_converters.loading import import_model_class

    script = tmp_path / "broken.py"
    script.write_text("import no_such_module_here\n")
    with pytest.raises(UserError, match="failed to import: ModuleNotFoundError"):
        import_model_class(script, "Anything")


def test_exporter_falls_back_to_dynamo_on_evidence(tmp_path, run_cli):
    """nn.TransformerEncoder's fast path is not exportable by the legacy exporter; auto must fall back."""
    import torch

    from tests.helpers.models import ROOT

    script = ROOT / "tests" / "fixtures" / "transformer_encoder.py"
    import importlib.util
    spec = importlib.util.spec_from_file_location("encoder_fixture", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.EncoderClassifier().eval().state_dict(), tmp_path / "encoder.pt")
    io = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "max_shape": [24], "value_range": [0, 40]},
                     {"name": "attention_mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
          "outputs": [{"name": "logits", "dtype": "float32", "shape": [3]}]}
    result = run_cli(["--ckpt-path", tmp_path / "encoder.pt", "--model-script-path", script,
                      "--model-class-name", "EncoderClassifier", "--model-io-config", json.dumps(io),
                      "--model-name", "encoder", "--generate-onnx", "--output-dir", tmp_path / "out",
                      "--input-size", "2", "16"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "out" / "encoder" / "report.json").read_text())
    export = report["stages"]["export"]
    assert export["exporter"] == "dynamo" and "legacy:" in export["why"], export
    assert all(o["passed"] for o in report["stages"]["verify_fp32"]["outputs"])


def test_build_reports_an_unparsable_graph(tmp_path):
    pytest.importorskip("tensorrt_rtx")
    from trt_converters.build import build_engine

    (tmp_path / "broken.onnx").write_bytes(b"\x08\x01garbage")
    with pytest.raises(StageError, match="cannot parse broken.onnx"):
        build_engine(tmp_path / "broken.onnx", tmp_path / "x.plan", {})
    assert not (tmp_path / "x.plan").exists()


def test_weak_typing_is_opt_in_and_refused_where_absent(tmp_path):
    trt = pytest.importorskip("tensorrt_rtx")
    from trt_converters.build import BuildOptions, _network_flags

    assert _network_flags(trt, BuildOptions()) == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    if not hasattr(trt.BuilderFlag, "FP16"):
        with pytest.raises(UserError, match="strongly typed only"):
            _network_flags(trt, BuildOptions(weak_typing_fp16=True))


def test_default_preferred_batch_sizes():
    from trt_converters.triton.config import default_preferred_batch_sizes

    assert default_preferred_batch_sizes(8) == [1, 2, 4, 8]
    assert default_preferred_batch_sizes(12) == [1, 2, 4, 8]
    assert default_preferred_batch_sizes(1) == [1]


def test_graphs_over_the_protobuf_limit_use_external_data(tmp_path, run_cli, tiny_checkpoints, monkeypatch):
    """Above 2 GiB the graph is saved with external data; the threshold is lowered here to exercise the path."""
    import onnx

    import trt_converters.export as export
    from tests.helpers.models import model_flags

    monkeypatch.setattr(export, "TWO_GIB", 0)
    result = run_cli(model_flags("mlp", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path / "out"])
    assert result.exit_code == 0, result.stderr
    model_path = tmp_path / "out" / "mlp" / "model.onnx"
    assert (tmp_path / "out" / "mlp" / "model.onnx.data").stat().st_size > 0
    graph = onnx.load(str(model_path), load_external_data=False)
    assert any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.graph.initializer)


def test_non_finite_reference_fails_unless_matching_values_are_allowed():
    """Outputs: a NaN/inf reference has nothing to verify against. Intermediate tensors (first_divergence): an
    overflow both sides reproduce, e.g. an -inf attention mask, is not a divergence."""
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_arrays

    tolerance = DEFAULT_TOLERANCES["fp32"]
    reference = np.array([1.0, np.inf, 3.0, np.nan])
    same = compare_arrays("x", reference, reference.copy(), tolerance)
    assert not same.passed and same.reference_non_finite == 2 and same.candidate_non_finite == 0
    assert compare_arrays("x", reference, reference.copy(), tolerance, matching_non_finite_ok=True).passed
    assert not compare_arrays("x", reference, np.array([1.0, 2.0, 3.0, np.nan]), tolerance,
                              matching_non_finite_ok=True).passed
    assert not compare_arrays("x", np.array([1.0, 2.0]), np.array([1.0, np.inf]), tolerance).passed
