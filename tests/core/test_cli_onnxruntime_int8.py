"""--onnx-int8 through the CLI: an ONNX Runtime integer graph, verified, served by the real Triton on CPU."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.models import model_flags
from tests.helpers.triton import triton_infer


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_onnxruntime_int8_graph_verified_and_marked(tmp_path, run_cli, tiny_checkpoints, mode):
    from trt_converters.onnxruntime_cpu import is_onnxruntime_targeted

    result = run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path,
                                                             "--onnx-int8", mode, "--calib-samples", "16"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "text" / "report.json").read_text())
    stage = report["stages"][f"ort_int8_{mode}"]
    assert all(o["passed"] for o in stage["verify"]["outputs"])
    assert is_onnxruntime_targeted(tmp_path / "text" / f"model.ort-int8-{mode}.onnx")
    from trt_converters.onnxruntime_cpu.targets import detect_cpu_target

    assert stage["cpu_target"] == detect_cpu_target()  # --cpu-target auto
    # A model without transformer layers: nothing worth fusing, so INT8 is made from the plain graph.
    # (static quantization never fuses: its quantizer cannot take fused operators)
    assert report["stages"].get("ort_fusion", {}).get("fused") is not True and stage["fused"] is False
    assert ("ort_fusion" in report["stages"]) == (mode == "dynamic")
    assert not (tmp_path / "text" / "model.ort-fused.onnx").exists()


def test_tensorrt_refuses_an_onnxruntime_int8_graph(tmp_path, run_cli, tiny_checkpoints):
    pytest.importorskip("tensorrt_rtx")
    assert run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path,
                                                           "--onnx-int8", "dynamic"]).exit_code == 0
    result = run_cli(model_flags("text", tiny_checkpoints) + [
        "--generate-trt", "--onnx-path", tmp_path / "text" / "model.ort-int8-dynamic.onnx",
        "--output-dir", tmp_path / "engine"])
    assert result.exit_code == 2
    assert "TensorRT cannot build it" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "engine").exists()
    both = run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--generate-trt", "--onnx-int8",
                                                           "dynamic", "--output-dir", tmp_path / "both"])
    assert both.exit_code == 2 and "TensorRT cannot build" in both.stderr


@pytest.mark.triton
def test_onnxruntime_int8_model_serves_on_real_triton_cpu(tmp_path, run_cli, tiny_checkpoints):
    from trt_converters.onnx_runner import run_onnx_model
    from trt_converters.triton.server import LocalTritonServer

    result = run_cli(model_flags("text", tiny_checkpoints) + [
        "--generate-onnx", "--generate-triton-config", "--output-dir", tmp_path / "out", "--triton-repo",
        tmp_path / "repo", "--onnx-int8", "dynamic", "--triton-backend", "python_onnxruntime", "--instance-kind",
        "cpu", "--intra-op-threads", "1", "--dynamic-batching", "--max-queue-delay", "0"])
    assert result.exit_code == 0, result.stderr
    config = (tmp_path / "repo" / "text" / "config.pbtxt").read_text()
    assert "KIND_CPU" in config and "intra_op_thread_count" in config
    ids = np.random.default_rng(3).integers(0, 50, size=(2, 20)).astype(np.int64)
    mask = np.ones((2, 20), dtype=np.float32)
    expected = run_onnx_model(tmp_path / "out" / "text" / "model.ort-int8-dynamic.onnx",
                              [{"input_ids": ids, "input_mask": mask}])[0]["output"]
    with LocalTritonServer(tmp_path / "repo") as server:
        served = triton_infer("grpc", server.grpc_url, "text", {"input_ids": ids, "input_mask": mask}, "output")
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
