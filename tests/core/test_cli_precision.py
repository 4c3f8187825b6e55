"""--use-fp16 / --use-int8 through the CLI: lowered graph verified against PyTorch, then a real TensorRT-RTX build."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest

from tests.helpers.models import model_flags

pytest.importorskip("tensorrt_rtx")
pytest.importorskip("modelopt")

PRECISION_FLAGS = {"fp16": ["--use-fp16"], "int8": ["--use-int8"], "int8_fp16": ["--use-int8", "--use-fp16"]}


@pytest.mark.parametrize("precision", ["fp16", "int8", "int8_fp16"])
@pytest.mark.parametrize("kind", ["mlp", "cnn", "text"])
def test_lowered_engine_within_budget(tmp_path, run_cli, tiny_checkpoints, kind, precision):
    extra = ["--calib-samples", "16"] if precision.startswith("int8") else []
    result = run_cli(model_flags(kind, tiny_checkpoints) + ["--generate-onnx", "--generate-trt", "--output-dir",
                                                           tmp_path, *PRECISION_FLAGS[precision], *extra])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / kind / "report.json").read_text())
    assert report["precision"] == precision
    lowered = report["stages"][f"lower_{precision}"]
    assert all(o["passed"] for o in lowered["verify"]["outputs"])
    assert lowered["path"].endswith(f"model.{precision}.onnx")
    assert report["stages"]["build"]["bytes"] > 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / kind / "model.plan").stat().st_mode) == 0o666 & ~umask  # readable by a server
    # library log lines and the fallback's rejected candidates go to the report, not the terminal
    assert "[modelopt]" not in result.stdout + result.stderr and "graph rejected" not in result.stderr
    if precision == "fp16":  # GraphSurgeon's warnings while AutoCast infers types
        assert any(" WARNING: " in line or " INFO: " in line for line in lowered["library_log"])
        assert "[W] " not in result.stdout + result.stderr
    if precision.startswith("int8"):
        assert "warning: synthetic calibration data" in result.stderr


def test_calibration_from_npz_and_cache_reuse(tmp_path, run_cli, tiny_checkpoints):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "calib.npz", input_ids=rng.integers(0, 50, size=(32, 128)).astype(np.int64),
             input_mask=np.ones((32, 128), dtype=np.float32))
    args = model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path / "out", "--use-int8",
                                                   "--calib-data", tmp_path / "calib.npz",
                                                   "--calibration-cache", tmp_path / "calib.cache"]
    first = run_cli(args)
    assert first.exit_code == 0, first.stderr
    assert "warning: synthetic" not in first.stderr
    assert "on 8 samples of" in first.stderr and "held back from calibration" in first.stderr
    cache = (tmp_path / "calib.cache").read_text()
    (tmp_path / "calib.npz").unlink()  # a rebuild with the cache must not need the data again
    second = run_cli(args + ["--overwrite"])
    assert second.exit_code == 0, second.stderr
    assert (tmp_path / "calib.cache").read_text() == cache


def test_too_tight_budget_names_worst_output_and_first_divergence(tmp_path, run_cli, tiny_checkpoints):
    result = run_cli(model_flags("cnn", tiny_checkpoints) + ["--generate-onnx", "--generate-trt", "--output-dir",
                                                            tmp_path, "--use-fp16", "--rtol", "0", "--atol", "0"])
    assert result.exit_code == 1
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: fp16 graph does not match the reference: worst output '")
    assert "first divergence at tensor" in error
    assert not (tmp_path / "cnn").exists()


def test_bad_calibration_source_is_a_usage_error(tmp_path, run_cli, tiny_checkpoints):
    np.savez(tmp_path / "calib.npz", wrong_name=np.zeros((4, 128), dtype=np.int64))
    result = run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path / "out",
                                                             "--use-int8", "--calib-data", tmp_path / "calib.npz"])
    assert result.exit_code == 2
    assert "input_ids" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_unknown_calibration_method(tmp_path, run_cli, tiny_checkpoints):
    result = run_cli(model_flags("mlp", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path, "--use-int8",
                                                            "--calib-samples", "8", "--calib-method", "median"])
    assert result.exit_code == 2 and "median" in result.stderr.strip().splitlines()[-1]


def test_fp16_of_an_lstm_model_survives_onnx_runtime_crashes(tmp_path, run_cli):
    """FP16 LSTM graphs crash ONNX Runtime (SIGSEGV) in a child process; the lowering moves on to a graph that runs."""
    import importlib.util

    import torch

    from tests.helpers.models import ROOT

    spec = importlib.util.spec_from_file_location("crnn_script", ROOT / "model_scripts" / "ocr_crnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    kwargs = {"hidden_size": 32, "channels": [8, 16, 16, 16]}
    torch.manual_seed(0)
    torch.save(module.CRNN(num_classes=37, **kwargs).state_dict(), tmp_path / "crnn.pt")
    result = run_cli(["--config", ROOT / "configs" / "crnn_line.yaml", "--ckpt-path", tmp_path / "crnn.pt",
                      "--model-kwargs", json.dumps(kwargs), "--generate-onnx", "--generate-trt", "--use-fp16",
                      "--output-dir", tmp_path / "out"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "out" / "crnn_line" / "report.json").read_text())
    lowered = report["stages"]["lower_fp16"]
    assert all(o["passed"] for o in lowered["verify"]["outputs"])
    assert "LSTM" in lowered["notes"][-1] and report["stages"]["build"]["bytes"] > 0


def test_precision_applies_to_an_existing_onnx_graph(tmp_path, run_cli, tiny_checkpoints):
    """--use-fp16 with an existing --onnx-path (no --generate-onnx) must still lower before building."""
    assert run_cli(model_flags("mlp", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path]).exit_code == 0
    build_only = model_flags("mlp", tiny_checkpoints) + ["--generate-trt", "--use-fp16", "--output-dir", tmp_path]
    refused = run_cli(build_only)
    assert refused.exit_code == 2 and "report.json already exists" in refused.stderr
    result = run_cli(build_only + ["--overwrite"])
    assert result.exit_code == 0, result.stderr
    assert "warning: the lowered graph is not verified" in result.stderr
    report = json.loads((tmp_path / "mlp" / "report.json").read_text())
    assert report["stages"]["lower_fp16"]["path"].endswith("model.fp16.onnx")
    assert (tmp_path / "mlp" / "model.fp16.onnx").is_file() and report["stages"]["build"]["bytes"] > 0
