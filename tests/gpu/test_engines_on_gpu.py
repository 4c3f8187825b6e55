"""TensorRT engines run on a GPU, compared with PyTorch within the precision budgets; Triton serves them.

Everything here is marked `gpu` and skips, with the reason, where there is no CUDA GPU or no runnable
TensorRT (this CPU-only development machine; TensorRT-RTX builds there but cannot run engines).

Two sources of engines:
- always: tiny fixture models (tests/fixtures/tiny_models.py) converted here with the real `trt-convert`
  (`--generate-trt`, FP32 and FP16) by whatever TensorRT is installed;
- with `TRTC_GPU_CI_OUT=<dir>` (set by scripts/gpu_ci.sh): every `<dir>/**/report.json` that lists an engine,
  i.e. the tiny variants of configs/*.yaml that the CI runner converted with `--trt-backend tensorrt`.
With `TRTC_TRITONSERVER=<path to tritonserver with the tensorrt backend>` and `TRTC_GPU_CI_REPO=<repo>`,
the repository of tensorrt_plan models is served and queried.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tiny_models.py"

pytestmark = pytest.mark.gpu


def _gpu_skip_reason() -> str:
    from trt_converters.bench_runners import tensorrt_runtime_status

    trt, reason = tensorrt_runtime_status()
    return "" if trt is not None else reason


SKIP_REASON = _gpu_skip_reason()
requires_gpu = pytest.mark.skipif(bool(SKIP_REASON), reason=SKIP_REASON or "GPU present")

FIXTURE_MODELS = {
    "tiny_mlp": ("TinyMLP", {"inputs": [{"name": "features", "dtype": "float32", "shape": [16]}],
                             "outputs": [{"name": "out", "dtype": "float32", "shape": [4]}]}),
    "tiny_text": ("TinyTextModel", {
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1], "opt_shape": [16],
                    "max_shape": [32], "value_range": [0, 50]},
                   {"name": "input_mask", "dtype": "float32", "shape": [-1]}],  # padded rows
        "outputs": [{"name": "scores", "dtype": "float32", "shape": [3]}]}),
    "tiny_cnn": ("TinyCNN", {
        "inputs": [{"name": "images", "dtype": "float32", "shape": [3, 32, 32]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [5]},
                    {"name": "features", "dtype": "float32", "shape": [8, 16, 16]}]}),
}


def _convert_fixture(work: Path, name: str, precision: str) -> Path:
    import torch

    sys.path.insert(0, str(FIXTURES.parent))
    import tiny_models

    class_name, io = FIXTURE_MODELS[name]
    torch.manual_seed(0)
    ckpt = work / f"{name}.pt"
    torch.save(getattr(tiny_models, class_name)().state_dict(), ckpt)
    model_name = f"{name}_{precision}"
    flags = ["--model-script-path", FIXTURES, "--model-class-name", class_name, "--model-io-config", json.dumps(io),
             "--ckpt-path", ckpt, "--model-name", model_name, "--generate-onnx", "--generate-trt",
             "--trt-backend", os.environ.get("TRTC_TRT_BACKEND", "auto"), "--device", "cuda",
             "--max-batch-size", "8", "--output-dir", work / "out", "--overwrite"]
    if precision == "fp16":
        flags.append("--use-fp16")
    proc = subprocess.run([sys.executable, "-m", "trt_converters.cli", *map(str, flags)], capture_output=True,
                          text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return work / "out" / model_name / "report.json"


def _ci_reports() -> list[Path]:
    folder = os.environ.get("TRTC_GPU_CI_OUT")
    if not folder:
        return []
    return sorted(p for p in Path(folder).rglob("report.json")
                  if json.loads(p.read_text()).get("stages", {}).get("build"))


def _check_engine_against_pytorch(report_path: Path, script: Path | None = None) -> list[str]:
    """Runs the report's engine and the PyTorch model on 3 shape sets; returns failure lines (empty: passed)."""
    import torch

    from trt_converters.bench_runners import TensorRTRunner, tensorrt_runtime_status
    from trt_converters.loading import load_model
    from trt_converters.shapes import ShapeProfile, synthetic_inputs, verification_shapes
    from trt_converters.spec import parse_io_config
    from trt_converters.synthetic_inputs import vocabulary_of
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets

    report = json.loads(report_path.read_text())
    io = parse_io_config(report["io"])
    profiles = {name: ShapeProfile(tuple(p["min"]), tuple(p["opt"]), tuple(p["max"]))
                for name, p in report["profiles"].items()}
    model_info = report["model"]
    if script is None:  # scripts/gpu_ci.sh writes ci.json beside each run's output folder
        script = Path(json.loads((report_path.parent.parent / "ci.json").read_text())["model_script_path"])
    checkpoint = model_info.get("checkpoint", {}).get("path")
    model, _ = load_model(script, model_info["class"], checkpoint, model_kwargs=model_info.get("kwargs"),
                          device="cuda")
    trt, _ = tensorrt_runtime_status()
    runner = TensorRTRunner(Path(report["stages"]["build"]["path"]), trt, label=report["precision"])
    shapes_sets = verification_shapes(profiles, {n: p.opt for n, p in profiles.items()})
    references, candidates = [], []
    for index, shapes in enumerate(shapes_sets):
        inputs = synthetic_inputs(io, shapes, seed=200 + index, vocabulary=vocabulary_of(checkpoint))
        with torch.no_grad():
            outputs = model(*[torch.from_numpy(inputs[t.name]).cuda() for t in io.inputs])
        outputs = outputs if isinstance(outputs, (tuple, list)) else (outputs,)
        references.append({t.name: o.float().cpu().numpy() for t, o in zip(io.outputs, outputs)})
        got = runner.infer(inputs)
        candidates.append({name: got[name] for name in references[-1] if name in got})
    key = "int8" if report["precision"].startswith("int8") else report["precision"]
    comparisons = compare_output_sets(references, candidates, DEFAULT_TOLERANCES[key])
    return [f"{report_path}: {c.name} max rel {c.max_rel_error:.2e} cos {c.cosine:.6f}"
            for c in comparisons if not c.passed]


@requires_gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
@pytest.mark.parametrize("name", sorted(FIXTURE_MODELS))
def test_fixture_engine_matches_pytorch(tmp_path, name, precision):
    report = _convert_fixture(tmp_path, name, precision)
    assert _check_engine_against_pytorch(report, FIXTURES) == []


@requires_gpu
def test_ci_engines_match_pytorch():
    reports = _ci_reports()
    if not reports:
        pytest.skip("TRTC_GPU_CI_OUT is not set or holds no engines (scripts/gpu_ci.sh sets it)")
    failures = [line for report in reports for line in _check_engine_against_pytorch(report)]
    assert failures == [], "\n".join(failures)


@requires_gpu
def test_trt_bench_times_an_engine(tmp_path):
    from trt_converters.bench import BenchSettings, ModelArtifacts, artifacts_from_report, bench_model
    from trt_converters.spec import parse_io_config

    report = _convert_fixture(tmp_path, "tiny_text", "fp16")
    found = artifacts_from_report(report)
    artifacts = ModelArtifacts(io=parse_io_config(found["io"]), model_script=FIXTURES, class_name="TinyTextModel",
                               engines=found["engines"])
    result = bench_model(artifacts, BenchSettings(batch_sizes=(1, 8), lengths=(16,), warmup=2, iterations=5),
                         device="cuda", runtimes=("torch", "trt"), torch_fp16=True, show_progress=False)
    engine_rows = [r for r in result["rows"] if r["runtime"].startswith("tensorrt")]
    assert engine_rows and all("median_ms" in r and "gpu_compute" in r for r in engine_rows), engine_rows


@requires_gpu
def test_triton_serves_tensorrt_plans():
    server_binary = os.environ.get("TRTC_TRITONSERVER") or shutil.which("tritonserver")
    repo = os.environ.get("TRTC_GPU_CI_REPO")
    if not server_binary or not repo:
        pytest.skip("needs TRTC_GPU_CI_REPO and a tritonserver with the tensorrt backend (TRTC_TRITONSERVER or PATH)")
    import tritonclient.http as httpclient

    from trt_converters.spec import parse_io_config
    from trt_converters.shapes import synthetic_inputs

    port = 18000 + os.getpid() % 1000
    log = open(Path(repo).parent / "tritonserver.log", "wb")
    process = subprocess.Popen([server_binary, f"--model-repository={repo}", "--http-address=127.0.0.1",
                                f"--http-port={port}", "--grpc-port=0", "--allow-metrics=false",
                                "--exit-timeout-secs=10"], stdout=log, stderr=subprocess.STDOUT)
    try:
        client = httpclient.InferenceServerClient(url=f"127.0.0.1:{port}")
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if client.is_server_ready():
                    break
            except Exception:
                pass
            assert process.poll() is None, "tritonserver exited while starting; see tritonserver.log"
            time.sleep(1)
        else:
            pytest.fail("tritonserver was not ready within 300 s")
        queried = 0
        for report_path in _ci_reports():
            report = json.loads(report_path.read_text())
            triton = report["stages"].get("triton")
            if not triton or triton.get("backend") != "tensorrt_plan":
                continue
            assert client.is_model_ready(triton["model"]), f"{triton['model']} is not ready"
            io = parse_io_config(report["io"]).with_inputs(triton["inputs"])
            shapes = {name: tuple(p["opt"]) for name, p in report["profiles"].items() if name in triton["inputs"]}
            arrays = synthetic_inputs(io, shapes, seed=7)
            inputs = []
            for tensor in io.inputs:
                item = httpclient.InferInput(tensor.name, list(arrays[tensor.name].shape),
                                             tensor.triton_dtype.removeprefix("TYPE_"))
                item.set_data_from_numpy(arrays[tensor.name])
                inputs.append(item)
            result = client.infer(triton["model"], inputs)
            for tensor in io.outputs:
                output = result.as_numpy(tensor.name)
                assert output is not None and np.isfinite(output.astype(np.float32)).all(), tensor.name
            queried += 1
        assert queried, "no tensorrt_plan model found in the CI reports"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@requires_gpu
@pytest.mark.parametrize("batch", [8, 32])
def test_deberta_caption_fp16_engine_matches_pytorch_on_padded_masks(tmp_path, batch):
    """NVIDIA's original command on a DeBERTa-v3 caption classifier with realistic weights: the FP16 engine,
    run on padded masks (a full row, a short row, random lengths), stays within the FP16 budget."""
    sys.path.insert(0, str(ROOT))
    from tests.fixtures.deberta_caption import write_caption_checkpoint

    checkpoint = write_caption_checkpoint(tmp_path / "ckpt")
    io = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [128]},
                     {"name": "input_mask", "dtype": "float32", "shape": [128]},
                     {"name": "input_token_type_ids", "dtype": "float32", "shape": [128]}],
          "outputs": [{"name": "output", "dtype": "float32", "shape": [1]}]}
    script = ROOT / "model_scripts" / "deberta.py"
    flags = ["--ckpt-path", checkpoint, "--model-script-path", script, "--model-class-name", "DebertaLargeModel",
             "--model-io-config", json.dumps(io), "--model-name", "deberta_large", "--generate-onnx",
             "--generate-trt", "--trt-backend", os.environ.get("TRTC_TRT_BACKEND", "auto"), "--device", "cuda",
             "--input-size", str(batch), "128", "--max-batch-size", str(batch), "--triton-inputs",
             "input_ids,input_mask", "--use-fp16", "--output-dir", tmp_path / "out"]
    proc = subprocess.run([sys.executable, "-m", "trt_converters.cli", *map(str, flags)], capture_output=True,
                          text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _check_engine_against_pytorch(tmp_path / "out" / "deberta_large" / "report.json", script) == []
