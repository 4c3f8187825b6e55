"""Every tiny model through every stage via the CLI: verified ONNX, real TensorRT-RTX engine, Triton repository."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.models import model_flags
from tests.helpers.triton import triton_infer

pytest.importorskip("tensorrt_rtx", reason="the real builder comes from `pip install tensorrt-rtx`")


@pytest.fixture(scope="module")
def converted(tmp_path_factory, tiny_checkpoints):
    """Converts each tiny model once (all stages) and returns kind -> (work folder, report)."""
    from click.testing import CliRunner

    from trt_converters.cli import main

    results = {}
    for kind, extra in (("mlp", ["--max-batch-size", "32"]), ("cnn", ["--max-batch-size", "4"]),
                        ("text", ["--input-size", "4", "64", "--triton-inputs", "input_ids,input_mask"])):
        work = tmp_path_factory.mktemp(kind)
        args = model_flags(kind, tiny_checkpoints) + [
            "--triton-repo", work / "repo", "--output-dir", work / "out", "--generate-onnx", "--generate-trt",
            "--generate-triton-config", "--triton-backend", "tensorrt_plan", "--dynamic-batching",
            "--timing-cache", work / "timing.cache", *extra]
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr
        results[kind] = (work, json.loads((work / "out" / kind / "report.json").read_text()), result.stderr)
    return results


@pytest.mark.parametrize("kind", ["mlp", "cnn", "text"])
def test_every_stage_writes_its_artifact(converted, kind):
    work, report, _ = converted[kind]
    stages = report["stages"]
    assert stages["export"]["opset"] == 18
    assert all(o["passed"] for o in stages["verify_fp32"]["outputs"])
    assert stages["build"]["backend"] == "tensorrt-rtx"
    engine = work / "out" / kind / "model.plan"
    assert engine.stat().st_size == stages["build"]["bytes"] > 0
    assert (work / "repo" / kind / "1" / "model.plan").read_bytes() == engine.read_bytes()
    assert (work / "timing.cache").stat().st_size > 0


@pytest.mark.parametrize("kind", ["mlp", "cnn", "text"])
def test_every_stage_reports_its_peak_resident_memory(converted, kind):
    _, report, _ = converted[kind]
    assert set(report["stages"]) >= {"export", "verify_fp32", "build", "triton"}
    assert all(entry["peak_rss_mb"] > 0 for entry in report["stages"].values())
    assert report["model"]["peak_rss_mb"] > 0
    assert set(report["memory"]["stages_peak_rss_mb"]) == {"load", "export", "build", "package"}


@pytest.mark.parametrize("kind", ["mlp", "cnn", "text"])
def test_verification_used_shapes_other_than_the_export_sample(converted, kind):
    _, report, _ = converted[kind]
    shapes = report["stages"]["verify_fp32"]["input_shapes"]
    batches = {next(iter(s.values()))[0] for s in shapes}
    assert len(batches) >= 2 and 1 in batches


def test_report_hashes_match_the_files(converted):
    import hashlib

    work, report, _ = converted["mlp"]
    onnx_entry = report["stages"]["export"]
    digest = hashlib.sha256((work / "out" / "mlp" / "model.onnx").read_bytes()).hexdigest()
    assert onnx_entry["sha256"] == digest
    assert report["versions"]["torch"] and report["versions"]["onnx"]


@pytest.mark.parametrize("kind", ["mlp", "cnn", "text"])
def test_config_parses_back_as_model_config(converted, kind):
    from trt_converters.triton.config import read_config

    work, report, _ = converted[kind]
    config = read_config(work / "repo" / kind / "config.pbtxt")
    assert config.name == kind and config.platform == "tensorrt_plan"
    io = report["io"]
    assert [i.name for i in config.input] == [t["name"] for t in io["inputs"]]
    assert [list(o.dims) for o in config.output] == [t["shape"] for t in io["outputs"]]
    assert config.dynamic_batching.max_queue_delay_microseconds == 100
    assert max(config.dynamic_batching.preferred_batch_size) <= config.max_batch_size
    # engines warm up by default, at batch 1 and the max batch, inside the profile
    assert [w.batch_size for w in config.model_warmup] == [1, config.max_batch_size]
    for warmup in config.model_warmup:
        for name, entry in warmup.inputs.items():
            data = (work / "repo" / kind / "warmup" / entry.input_data_file).read_bytes()
            assert len(data) == 4 * np.prod(entry.dims) * (2 if entry.data_type == 9 else 1)  # int64: 8 bytes


def test_terminal_and_report_name_the_builder_and_where_its_plan_loads(converted):
    work, report, stderr = converted["mlp"]
    assert report["stages"]["build"]["loads_in"].startswith("a TensorRT-RTX ")
    assert "not in Triton's tensorrt backend" in report["stages"]["build"]["loads_in"]
    assert "[build] built by tensorrt-rtx " in stderr
    assert "Triton's tensorrt backend cannot load" in stderr  # packaged as tensorrt_plan anyway: warned
    assert report["serving"]["backend"] == "tensorrt_plan" and report["serving"]["instance_kind"] == "gpu"


def test_profiles_follow_input_size_and_max_batch(converted):
    _, report, _ = converted["text"]
    profile = report["profiles"]["input_ids"]
    assert profile["min"] == [1, 1] and profile["opt"] == [4, 64] and profile["max"] == [8, 64]
    _, report, _ = converted["cnn"]
    assert report["profiles"]["images"]["max"] == [4, 3, 48, 48]


def test_onnx_graph_has_dynamic_batch_and_dims(converted):
    import onnx

    work, _, _ = converted["cnn"]
    graph = onnx.load(str(work / "out" / "cnn" / "model.onnx")).graph
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and dims[1].dim_value == 3 and dims[2].dim_param and dims[3].dim_param


@pytest.mark.triton
def test_generated_repository_serves_on_real_triton(tmp_path, run_cli, tiny_checkpoints):
    """The python_onnxruntime repository loads in the real server and answers like PyTorch (HTTP and gRPC)."""
    from trt_converters.loading import load_model
    from trt_converters.triton.server import LocalTritonServer

    from trt_converters.triton.backends import cuda_gpu_count, tensorrt_installed

    backend = [] if not (cuda_gpu_count() and tensorrt_installed()) else ["--triton-backend", "python_onnxruntime"]
    result = run_cli(model_flags("text", tiny_checkpoints) + [
        "--triton-repo", tmp_path / "repo", "--output-dir", tmp_path / "out", "--generate-onnx",
        "--generate-triton-config", "--dynamic-batching", *backend, "--max-queue-delay", "0", "--model-warmup",
        "--max-queue-size", "32", "--queue-timeout", "10000000", "--queue-timeout-action", "delay",
        "--priority-levels", "3", "--default-priority-level", "2", "--version-policy", "all",
        "--response-cache", "--triton-parameter", "intra_op_thread_count=1"])
    assert result.exit_code == 0, result.stderr
    if not backend:  # the default on a machine without GPU: a repository this CPU can serve
        assert "[serve] Triton backend python_onnxruntime, KIND_CPU (auto: " in result.stderr
    config = (tmp_path / "repo" / "text" / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "KIND_CPU" in config and "model_warmup" in config
    import torch

    from tests.helpers.models import TINY_MODELS
    model, _ = load_model(TINY_MODELS, "TinyTextModel", tiny_checkpoints["text"])
    ids = np.random.default_rng(5).integers(0, 50, size=(3, 11)).astype(np.int64)
    mask = np.ones((3, 11), dtype=np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
    with LocalTritonServer(tmp_path / "repo") as server:
        feeds = {"input_ids": ids, "input_mask": mask}
        got_http = triton_infer("http", server.http_url, "text", feeds, "output")
        got_grpc = triton_infer("grpc", server.grpc_url, "text", feeds, "output")
    np.testing.assert_allclose(got_http, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(got_grpc, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.triton
def test_tensorrt_plan_configs_pass_the_real_servers_parser(converted):
    """This server has no TensorRT backend: the model must fail only for that, never for its config."""
    from trt_converters.triton.server import check_repository

    work, _, _ = converted["mlp"]
    states = check_repository(work / "repo")
    assert set(states) == {"mlp"}
    assert states["mlp"].startswith("UNAVAILABLE") and "backend" in states["mlp"], states
