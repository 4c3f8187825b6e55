"""Two `trt-serve` replicas on one s3:// repository (SeaweedFS), as a deployment runs them: both answer, a new
version published with `trt-convert --model-version 2` reaches both by polling with no failed request, and when one
replica is killed the other keeps answering."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers.models import model_flags
from tests.helpers.ports import free_ports

ROOT = Path(__file__).resolve().parents[2]
CONVERT = ["--generate-onnx", "--generate-triton-config", "--triton-backend", "python_onnxruntime"]
BODY = json.dumps({"inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 16],
                               "data": [0.5] * 16}]}).encode()
BOUND_S = 240  # every wait below ends by this bound

pytestmark = [pytest.mark.s3, pytest.mark.triton]


class Replica:
    """`trt-serve URI --model-control-mode poll` in its own process group (killed as a whole by its PID)."""

    def __init__(self, name: str, uri: str, env: dict, log_dir: Path):
        self.name = name
        http, grpc, metrics = free_ports(3)
        self.url = f"http://127.0.0.1:{http}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trt_converters.serve_cli", uri, "--http-port", str(http), "--grpc-port",
             str(grpc), "--metrics-port", str(metrics), "--model-control-mode", "poll", "--repository-poll-secs", "1",
             "--log-file", str(log_dir / f"{name}.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, env=env, start_new_session=True)
        self.lines: list[str] = []
        self.ready = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)
            if line.startswith("Ready."):
                self.ready.set()
        self.ready.set()

    def wait_ready(self):
        self.ready.wait(timeout=BOUND_S)
        if self.process.poll() is not None or not any(line.startswith("Ready.") for line in self.lines):
            raise AssertionError(f"replica {self.name} did not come up: {''.join(self.lines)[-3000:]}")

    def kill(self):
        """SIGKILL to the replica's process group (trt-serve and its tritonserver), as a node failure does."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def stop(self):
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()


def infer(url: str) -> str:
    """One request; the version that answered it."""
    request = urllib.request.Request(f"{url}/v2/models/mlp/infer", data=BODY, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert len(answer["outputs"][0]["data"]) == 4
    return answer["model_version"]


class Traffic:
    """A closed loop per replica in a thread: counts answers per version and failures, until stopped."""

    def __init__(self, replicas):
        self.answers = {r.name: {} for r in replicas}
        self.failures = {r.name: [] for r in replicas}
        self._stop = {r.name: threading.Event() for r in replicas}
        self._threads = [threading.Thread(target=self._loop, args=(r,), name=r.name, daemon=True) for r in replicas]
        for thread in self._threads:
            thread.start()

    def _loop(self, replica):
        while not self._stop[replica.name].is_set():
            try:
                version = infer(replica.url)
                self.answers[replica.name][version] = self.answers[replica.name].get(version, 0) + 1
            except Exception as exc:  # recorded, judged by the test
                self.failures[replica.name].append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)

    def stop(self, name: str | None = None):
        for key, event in self._stop.items():
            if name in (None, key):
                event.set()
        for thread in self._threads:
            if name is None or thread.name == name:
                thread.join(timeout=60)

    def requests(self, name: str) -> int:
        return sum(self.answers[name].values())


def _wait_until(condition, what: str):
    deadline = time.monotonic() + BOUND_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {BOUND_S} s: {what}")
        time.sleep(0.1)


def test_two_replicas_on_one_s3_repository(run_cli, tiny_checkpoints, tmp_path, s3_env, bucket):
    uri = f"s3://{s3_env.endpoint}/{bucket}/prod"
    flags = [*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", uri]
    first = run_cli([*flags, "--output-dir", tmp_path / "v1"])
    assert first.exit_code == 0, first.stderr
    env = {**os.environ, **s3_env.env, "PYTHONPATH": str(ROOT)}
    replicas = [Replica(name, uri, env, tmp_path) for name in ("a", "b")]
    traffic = None
    try:
        for replica in replicas:
            replica.wait_ready()
            output = "".join(replica.lines)
            assert f"serving {uri}" in output and any(line.split() == ["mlp", "READY"] for line in replica.lines)
            assert f"curl -s {replica.url}/v2/models/mlp/infer" in output  # examples from the remote configs
        assert {infer(r.url) for r in replicas} == {"1"}
        traffic = Traffic(replicas)
        _wait_until(lambda: all(traffic.requests(r.name) >= 20 for r in replicas), "20 answers from each replica")

        published = time.monotonic()
        second = run_cli([*flags, "--output-dir", tmp_path / "v2", "--model-version", "2"])
        assert second.exit_code == 0, second.stderr
        _wait_until(lambda: all(traffic.answers[r.name].get("2", 0) >= 5 for r in replicas),
                    "both replicas answering from version 2")
        seen_after = time.monotonic() - published
        assert traffic.failures == {"a": [], "b": []}
        until_kill = {name: dict(answers) for name, answers in traffic.answers.items()}

        load = _bench(replicas, tmp_path / "bench.json")
        per_replica = {p["replica"]: p for p in load["rows"][0]["replicas"]}
        assert sorted(per_replica) == sorted(r.url.removeprefix("http://") for r in replicas)
        assert load["rows"][0]["errors"] == 0 and all(p["requests"] > 0 and p["errors"] == 0
                                                      for p in per_replica.values())
        assert load["rows"][0]["requests"] == sum(p["requests"] for p in per_replica.values())

        replica_a, replica_b = replicas
        before_kill = traffic.requests("a")
        replica_b.kill()
        traffic.stop("b")
        _wait_until(lambda: traffic.requests("a") >= before_kill + 50, "50 more answers from the live replica")
        traffic.stop()
        assert traffic.failures["a"] == []
        assert set(traffic.answers["a"]) <= {"1", "2"}
        with pytest.raises(urllib.error.URLError):
            infer(replica_b.url)
        print(f"\nreplicas: answers per version until the kill {until_kill} (0 failed); version 2 answered by "
              f"both {seen_after:.1f} s after publishing began; after killing b, a answered "
              f"{traffic.requests('a') - before_kill} more (0 failed), b's request in flight failed: "
              f"{len(traffic.failures['b'])}")
    finally:
        if traffic is not None:
            traffic.stop()
        for replica in replicas:
            replica.stop()


def _bench(replicas, json_path: Path) -> dict:
    """`trt-bench --triton URL1,URL2`: the closed loop spread over both replicas, reported per replica."""
    from click.testing import CliRunner

    from trt_converters.bench_cli import main

    urls = ",".join(r.url for r in replicas)
    result = CliRunner().invoke(main, ["--triton", urls, "--model", "mlp", "--concurrency", "4",
                                       "--measurement-seconds", "1", "--json", str(json_path), "--no-progress"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "per replica (concurrency -> replica):" in result.stdout
    return json.loads(json_path.read_text())
