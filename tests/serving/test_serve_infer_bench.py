"""trt-serve, trt-infer and trt-bench --triton against the real tritonserver, as users run them.

One repository (a tiny E5 embedder converted by trt-convert with its text pipeline, served on CPU, plus one
model the wheel's server cannot load) and one `trt-serve` process serve every test of this module.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=30522,
            max_position_embeddings=130)
IO = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1], "opt_shape": [16],
                  "max_shape": [128], "value_range": [0, 30522]},
                 {"name": "attention_mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
      "outputs": [{"name": "embeddings", "dtype": "float32", "shape": [32]}]}
SENTENCES = ["The weather is lovely today.", "A man is eating food in a small restaurant."]
# A model whose backend the wheel's server lacks: it fails to load, the others keep serving.
UNLOADABLE = 'name: "needs_ort"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n' \
             'input { name: "x" data_type: TYPE_FP32 dims: [4] }\noutput { name: "y" data_type: TYPE_FP32 dims: [4] }\n'

pytestmark = pytest.mark.triton


def _invoke(main, args):
    from click.testing import CliRunner

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    import importlib.util

    import torch

    from trt_converters.cli import main
    from trt_converters.errors import UserError
    from trt_converters.text.minilm import minilm_checkpoint_dir
    from trt_converters.triton.server import find_triton_distribution

    try:
        find_triton_distribution()
    except UserError as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("serving")
    spec = importlib.util.spec_from_file_location("serving_e5", ROOT / "model_scripts" / "e5.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    (work / "ckpt").mkdir()
    torch.save(module.E5Embedder(**TINY).eval().state_dict(), work / "ckpt" / "model.pt")
    code, out, err = _invoke(main, [
        "--config", ROOT / "configs" / "e5_small_v2.yaml", "--ckpt-path", work / "ckpt" / "model.pt",
        "--model-name", "e5", "--model-kwargs", json.dumps(TINY), "--model-io-config", json.dumps(IO),
        "--triton-repo", work / "repo", "--output-dir", work / "out", "--generate-onnx", "--generate-triton-config",
        "--triton-backend", "python_onnxruntime", "--instance-kind", "cpu", "--max-batch-size", "8",
        "--input-size", "2", "16", "--tokenizer-path", minilm_checkpoint_dir(), "--pipeline-option", "max_length=128",
        "--response-cache"])
    assert code == 0, err + out
    (work / "repo" / "needs_ort" / "1").mkdir(parents=True)
    (work / "repo" / "needs_ort" / "config.pbtxt").write_text(UNLOADABLE)
    return work


@pytest.fixture(scope="module")
def served(converted):
    """`trt-serve` in a child process, as a user starts it; stopped with SIGINT (Ctrl-C) at the end."""
    http, grpc, metrics = free_ports(3)
    log = converted / "triton.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "trt_converters.serve_cli", converted / "repo", "--http-port", str(http),
         "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--log-file", log],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    lines: list[str] = []
    ready = threading.Event()

    def read():
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Ready."):
                ready.set()
        ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    ready.wait(timeout=400)
    if process.poll() is not None or not ready.is_set():
        process.kill()
        pytest.fail(f"trt-serve did not come up: {''.join(lines)} {process.stderr.read()[-2000:]}")
    output = "".join(lines)
    yield {"url": f"http://127.0.0.1:{http}", "output": output, "work": converted, "ports": (http, grpc, metrics),
           "process": process}
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    reader.join(timeout=10)
    stderr = process.stderr.read()
    assert code == 0, stderr
    assert "stopped" in stderr
    server_pid = int(output.split(", pid ")[1].split()[0])
    assert not Path(f"/proc/{server_pid}").exists() or "zombie" in Path(f"/proc/{server_pid}/status").read_text()


def _reference_embeddings(work: Path, texts) -> np.ndarray:
    """The exported ONNX graph run directly on the tokenizer's output ("query: " prefix, as the YAML sets)."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    from trt_converters.text.minilm import minilm_checkpoint_dir

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_checkpoint_dir()))
    session = ort.InferenceSession(str(work / "out" / "e5" / "model.onnx"), providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:
        batch = tokenizer(["query: " + text], truncation=True, max_length=128, return_tensors="np")
        rows.append(session.run(None, {"input_ids": batch["input_ids"].astype(np.int64),
                                       "attention_mask": batch["attention_mask"].astype(np.int64)})[0][0])
    return np.stack(rows)


def test_serve_lists_models_urls_and_a_working_curl(served):
    output = served["output"]
    http, grpc, metrics = served["ports"]
    states = dict(line.split(None, 1) for line in output.splitlines()
                  if line.split(None, 1)[:1] and line.split()[0] in ("e5", "e5_e5", "e5_e5_tokenizer", "needs_ort"))
    assert states["e5"].strip() == states["e5_e5"].strip() == states["e5_e5_tokenizer"].strip() == "READY"
    assert states["needs_ort"].startswith("UNAVAILABLE") and "onnxruntime" in states["needs_ort"]
    assert f"http://127.0.0.1:{http}" in output and f"127.0.0.1:{grpc}" in output
    assert f"http://127.0.0.1:{metrics}/metrics" in output
    assert "cache    local response cache, 64 MiB" in output  # the entry model asks for the response cache
    curls = [line for line in output.splitlines() if line.startswith("curl ")]
    assert len(curls) == 1 and "/v2/models/e5_e5/infer" in curls[0]  # steps of the ensemble are not entry points
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run(["bash", "-c", curls[0]], capture_output=True, text=True, timeout=120)
    response = json.loads(done.stdout)
    texts = json.loads(curls[0].split(" -d ", 1)[1].strip("'"))["inputs"][0]["data"]
    (output_tensor,) = response["outputs"]
    got = np.array(output_tensor["data"], dtype=np.float32).reshape(output_tensor["shape"])
    np.testing.assert_allclose(got, _reference_embeddings(served["work"], texts), atol=1e-5)
    again = subprocess.run(["bash", "-c", curls[0]], capture_output=True, text=True, timeout=120)
    assert json.loads(again.stdout)["outputs"] == response["outputs"]
    assert _cache_hits(f"http://127.0.0.1:{http}/v2/models/e5_e5/stats") >= 1


def _cache_hits(stats_url: str) -> int:
    """The entry model's response-cache hits, waited for (bounded): statistics may lag the responses."""
    import urllib.request

    deadline = time.monotonic() + 120
    while True:
        with urllib.request.urlopen(stats_url, timeout=30) as reply:
            stats = json.loads(reply.read())
        hits = int(stats["model_stats"][0]["inference_stats"]["cache_hit"]["count"])
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.2)


def test_infer_prints_the_answer_and_raw_json(served):
    from trt_converters.infer_cli import main

    code, out, err = _invoke(main, ["--url", served["url"], "--model", "e5_e5", *SENTENCES])
    assert code == 0, err
    assert "embeddings: FP32 [2, 32]" in out and f"[{SENTENCES[0]}]" in out
    assert "cosine similarity between rows" in out
    code, out, err = _invoke(main, ["--url", served["url"], "--model", "e5_e5", "--json", *SENTENCES])
    assert code == 0, err
    (output_tensor,) = json.loads(out)["outputs"]
    got = np.array(output_tensor["data"], dtype=np.float32).reshape(output_tensor["shape"])
    np.testing.assert_allclose(got, _reference_embeddings(served["work"], SENTENCES), atol=1e-5)


@pytest.mark.parametrize("args, status, message", [
    (["--model", "nope", "x"], 2, "model 'nope' is not served there (models: e5, e5_e5, e5_e5_tokenizer, needs_ort)"),
    (["--model", "e5_e5", "--input", "text_input", "x"], 2, "model 'e5_e5' has no input 'text_input'; its inputs: text"),
    (["--model", "e5", "x"], 2, "model 'e5' has no text input"),
    (["--model", "needs_ort", "x"], 1, "model 'needs_ort' is not ready (UNAVAILABLE: "),
    (["--model", "e5_e5"], 2, "give texts or --image files"),
])
def test_infer_errors_are_one_line(served, args, status, message):
    from trt_converters.infer_cli import main

    code, out, err = _invoke(main, ["--url", served["url"], "--wait", "1", *args])
    assert code == status, out + err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1


def test_infer_gives_up_on_an_unreachable_server():
    from trt_converters.infer_cli import main

    (port,) = free_ports(1)
    code, _, err = _invoke(main, ["--url", f"http://127.0.0.1:{port}", "--model", "m", "--wait", "1", "x"])
    assert code == 1
    assert err.startswith(f"error: cannot reach Triton at http://127.0.0.1:{port} within 1 s")


def test_convert_writes_input_data_for_each_entry_model(converted):
    report = json.loads((converted / "out" / "e5" / "report.json").read_text())
    paths = report["stages"]["triton"]["input_data"]
    assert sorted(paths) == ["e5", "e5_e5"]
    pipeline = json.loads(Path(paths["e5_e5"]).read_text())["data"]
    assert all(list(entry) == ["text"] and len(entry["text"]) == 1 for entry in pipeline)
    assert len({len(entry["text"][0].split()) for entry in pipeline}) > 3  # sentences of several lengths
    # the core model's token inputs: the same sentences tokenized as the pipeline does ("query: " aside)
    from transformers import AutoTokenizer

    from trt_converters.text.minilm import minilm_checkpoint_dir

    tokenizer = AutoTokenizer.from_pretrained(str(minilm_checkpoint_dir()))
    core = json.loads(Path(paths["e5"]).read_text())["data"]
    for entry, text in zip(core, (e["text"][0] for e in pipeline)):
        expected = tokenizer(text)["input_ids"]
        assert entry["input_ids"] == {"content": expected, "shape": [len(expected)]}
        assert entry["attention_mask"] == {"content": [1] * len(expected), "shape": [len(expected)]}


def test_bench_triton_table_json_and_plot(served, tmp_path):
    from trt_converters.bench_cli import main

    input_data = served["work"] / "out" / "e5" / "e5_e5.input_data.json"
    code, out, err = _invoke(main, ["--triton", served["url"], "--model", "e5_e5", "--concurrency", "1,2",
                                    "--measurement-seconds", "1", "--input-data", input_data,
                                    "--plot", tmp_path / "load.png", "--json", tmp_path / "load.json"])
    assert code == 0, err
    header = next(line for line in out.splitlines() if line.strip().startswith("concurrency"))
    assert header.split() == ["concurrency", "requests", "errors", "infer/s", "p50", "ms", "p90", "ms", "p99", "ms",
                              "avg", "ms"]
    rows = json.loads((tmp_path / "load.json").read_text())["rows"]
    assert [r["concurrency"] for r in rows] == [1, 2]
    for row in rows:
        assert row["requests"] > 0 and row["errors"] == 0
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the core model with its own input data (token ids of real sentences)
    code, out, err = _invoke(main, ["--triton", served["url"], "--model", "e5", "--concurrency", "1",
                                    "--measurement-seconds", "0.5", "--json", tmp_path / "core.json",
                                    "--input-data", served["work"] / "out" / "e5" / "e5.input_data.json"])
    assert code == 0, err
    (row,) = json.loads((tmp_path / "core.json").read_text())["rows"]
    assert row["requests"] > 0 and row["errors"] == 0


@pytest.mark.parametrize("args, status, message", [
    (["--model", "e5_e5", "--input-data", "BAD"], 2, "input data names 'text_input', which e5_e5 does not take"),
    (["--model", "nope"], 2, "model 'nope' is not served there"),
    (["--model", "e5_e5", "--onnx", "model.onnx"], 2, "--onnx does not apply with --triton"),
])
def test_bench_triton_errors(served, tmp_path, args, status, message):
    from trt_converters.bench_cli import main

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"text_input": ["a sentence"]}]}))
    args = [bad if a == "BAD" else a for a in args]
    code, out, err = _invoke(main, ["--triton", served["url"], "--concurrency", "1", "--measurement-seconds", "1",
                                    *args])
    assert code == status, out + err
    assert message in err


def test_serve_refuses_a_port_in_use(served, tmp_path):
    from trt_converters.serve_cli import main

    http, _, _ = served["ports"]
    grpc, metrics = free_ports(2)
    code, out, err = _invoke(main, [served["work"] / "repo", "--http-port", http, "--grpc-port", grpc,
                                    "--metrics-port", metrics])
    assert code == 1
    assert err == f"error: HTTP port {http} on 127.0.0.1 is in use or not available (Address already in use): " \
                  "stop the other server or pass --http-port\n"


def test_serve_refuses_a_broken_repository(tmp_path):
    from trt_converters.serve_cli import main

    code, _, err = _invoke(main, [tmp_path / "missing"])
    assert code == 1 and "is not a directory" in err
    code, _, err = _invoke(main, [tmp_path])
    assert code == 1 and "holds no model" in err
    broken = tmp_path / "repo" / "broken"
    (broken / "1").mkdir(parents=True)
    (broken / "config.pbtxt").write_text('name: "broken"\nplatform: "onnxruntime_onnx"\nmax_batch_size: [4]\n')
    ports = free_ports(3)
    code, _, err = _invoke(main, [tmp_path / "repo", "--http-port", ports[0], "--grpc-port", ports[1],
                                  "--metrics-port", ports[2], "--startup-timeout", "120"])
    assert code == 1
    assert err.startswith("error: no model of ") and "broken: CONFIG_ERROR:" in err and err.count("\n") == 1
    # explicit model control: only the model asked for is loaded (and reported)
    (tmp_path / "repo" / "needs_ort" / "1").mkdir(parents=True)
    (tmp_path / "repo" / "needs_ort" / "config.pbtxt").write_text(UNLOADABLE)
    code, _, err = _invoke(main, [tmp_path / "repo", "--model", "needs_ort", "--http-port", ports[0],
                                  "--grpc-port", ports[1], "--metrics-port", ports[2], "--startup-timeout", "120"])
    assert code == 1
    assert err.startswith("error: no model of ") and "; needs_ort: UNAVAILABLE: " in err and "broken:" not in err
    assert "more failed" not in err


def test_serve_refuses_a_model_not_in_the_repository(converted):
    from trt_converters.serve_cli import main

    code, _, err = _invoke(main, [converted / "repo", "--model", "e5_e5", "--model", "nope"])
    assert code == 2
    assert err == f"error: --model 'nope' is not in {converted / 'repo'} (models: e5, e5_e5, e5_e5_tokenizer, needs_ort)\n"


def test_bench_triton_gives_up_on_an_unreachable_server():
    from trt_converters.bench_cli import main

    (port,) = free_ports(1)
    code, _, err = _invoke(main, ["--triton", f"http://127.0.0.1:{port}", "--model", "m", "--timeout", "1"])
    assert code == 1
    assert err.startswith(f"error: cannot reach Triton at http://127.0.0.1:{port} within 1 s")
