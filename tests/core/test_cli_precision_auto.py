"""--precision auto through the CLI: each of its outcomes on a tiny model, and precision options checked up front."""

from __future__ import annotations

import json

import pytest

from tests.helpers.models import TINY_MODELS, model_flags

pytest.importorskip("modelopt")

OUTLIER_IO = {"inputs": [{"name": "features", "dtype": "float32", "shape": [32]}],
              "outputs": [{"name": "scores", "dtype": "float32", "shape": [4]}]}


@pytest.fixture(scope="module")
def outlier_flags(tmp_path_factory) -> list[str]:
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("tiny_models_outlier", TINY_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("outlier") / "outlier.pt"
    torch.save(module.OutlierMLP().state_dict(), path)
    return ["--ckpt-path", str(path), "--model-script-path", str(TINY_MODELS), "--model-class-name", "OutlierMLP",
            "--model-io-config", json.dumps(OUTLIER_IO), "--model-name", "outlier"]


def _auto(run_cli, flags, tmp_path, *extra) -> dict:
    result = run_cli(flags + ["--generate-onnx", "--output-dir", tmp_path, "--precision", "auto",
                              "--calib-samples", "16", *extra])
    assert result.exit_code == 0, result.stderr
    name = flags[flags.index("--model-name") + 1]
    report = json.loads((tmp_path / name / "report.json").read_text())
    assert report["precision"] == "auto" and "[precision auto] chose" in result.stderr
    return report


def test_auto_keeps_plain_int8_when_it_meets_the_budget(tmp_path, run_cli, tiny_checkpoints):
    report = _auto(run_cli, model_flags("mlp", tiny_checkpoints), tmp_path)
    choice = report["precision_choice"]
    assert choice["label"] == "int8" and [s["precision"] for s in choice["steps"]] == ["int8"]
    assert "excluded_nodes" not in report["stages"]["lower_int8"]["int8"]


def test_auto_keeps_int8_with_exclusions_and_builds_it(tmp_path, run_cli, outlier_flags):
    pytest.importorskip("tensorrt_rtx")
    report = _auto(run_cli, outlier_flags, tmp_path, "--generate-trt")
    assert report["precision_choice"]["label"] == "int8 with exclusions", report["precision_choice"]
    lowered = report["stages"]["lower_int8"]
    assert lowered["int8"]["excluded_nodes"] == ["/middle/Gemm"] and lowered["int8"]["error_over_budget"] > 1
    assert all(o["passed"] for o in lowered["verify"]["outputs"])
    assert report["stages"]["build"]["bytes"] > 0


def test_auto_falls_back_to_fp16_when_int8_cannot_meet_the_budget(tmp_path, run_cli, tiny_checkpoints):
    report = _auto(run_cli, model_flags("mlp", tiny_checkpoints), tmp_path, "--atol", "0", "--rtol", "0.005",
                   "--min-cosine", "0.99999")
    choice = report["precision_choice"]
    assert choice["chosen"] == "fp16", choice
    assert choice["steps"][0]["precision"] == "int8" and not choice["steps"][0]["met_budget"]
    assert "lower_fp16" in report["stages"] and "lower_int8" not in report["stages"]
    assert not (tmp_path / "mlp" / "model.int8.onnx").exists()


def test_auto_falls_back_to_fp32_when_no_lowered_graph_meets_the_budget(tmp_path, run_cli, tiny_checkpoints):
    report = _auto(run_cli, model_flags("mlp", tiny_checkpoints), tmp_path, "--atol", "0", "--rtol", "1e-5")
    choice = report["precision_choice"]
    assert choice["chosen"] == "fp32", choice
    assert [s["met_budget"] for s in choice["steps"]][-1] and "fp16" in [s["precision"] for s in choice["steps"]]
    assert not any(stage.startswith("lower_") for stage in report["stages"])


@pytest.mark.parametrize("flags, message", [
    (["--use-int8", "--calib-method", "median"], "--calib-method 'median' is unknown"),
    (["--precision", "int8", "--use-fp16"], "--precision replaces --use-fp16/--use-int8"),
    (["--use-int8", "--calib-method", "percentile", "--calib-percentile", "30"], "--calib-percentile 30"),
    (["--use-int8", "--calib-percentile", "99.9"], "applies to --calib-method percentile"),
    (["--onnx-int8", "static", "--calib-method", "auto"], "not available for --onnx-int8"),
    (["--use-int8", "--min-cosine", "2"], "--min-cosine 2.0 must be between -1 and 1"),
    (["--use-fp16", "--no-int8-outlier-channels"], "apply to --use-int8 or --precision int8|auto"),
    (["--onnx-int8", "dynamic", "--int8-outlier-channels"], "apply to --use-int8 or --precision int8|auto"),
])
def test_precision_options_are_checked_before_the_model_is_loaded(tmp_path, run_cli, flags, message):
    result = run_cli(["--ckpt-path", tmp_path / "missing.pt", "--model-script-path", TINY_MODELS,
                      "--model-class-name", "TinyMLP", "--model-io-config", json.dumps(OUTLIER_IO),
                      "--model-name", "m", "--generate-onnx", "--output-dir", tmp_path / "out", *flags])
    assert result.exit_code == 2
    assert message in result.stderr.strip().splitlines()[-1], result.stderr
    assert not (tmp_path / "out").exists()


def test_precision_int8_with_onnx_int8_is_refused_like_use_int8(tmp_path, run_cli):
    """--precision int8 is --use-int8 by another name: with --onnx-int8 both are refused with the same line,
    before any work (neither lowering runs)."""
    lines = []
    for flags in (["--use-int8"], ["--precision", "int8"], ["--use-int8", "--use-fp16"]):
        result = run_cli(["--ckpt-path", tmp_path / "missing.pt", "--model-script-path", TINY_MODELS,
                          "--model-class-name", "TinyMLP", "--model-io-config", json.dumps(OUTLIER_IO),
                          "--model-name", "m", "--generate-onnx", "--output-dir", tmp_path / "out", *flags,
                          "--onnx-int8", "dynamic"])
        assert result.exit_code == 2, result.stderr
        lines.append(result.stderr.strip().splitlines()[-1])
    assert "--use-int8 (TensorRT Q/DQ) and --onnx-int8 (ONNX Runtime integer kernels) target different runtimes" \
        in lines[0]
    assert lines[1] == lines[0] == lines[2]
    assert not (tmp_path / "out").exists()
