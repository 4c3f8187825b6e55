"""Memory: the per-stage peak measurement (VmHWM, children), the up-front estimate and its inputs, and the refusal
of a run estimated not to fit (one line, exit 2, no files, before the model loads)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.helpers.cli import snapshot
from tests.helpers.models import MLP_IO, model_flags
from trt_converters import memory

STATUS = """Name:\tpython
VmPeak:\t 2000000 kB
VmHWM:\t  524288 kB
VmRSS:\t  262144 kB
"""


def test_vmhwm_reader_parses_proc_status():
    assert memory.vmhwm_mb(STATUS) == 512.0
    assert memory.vmhwm_mb(STATUS, field="VmRSS") == 256.0
    assert memory.vmhwm_mb("Name:\tpython\n") is None


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="Linux /proc")
def test_stage_peak_sees_an_allocation_and_the_reset_forgets_it():
    peaks = memory.StagePeaks()
    with peaks.measure("big"):
        block = bytearray(256 * 2**20)
        block[::4096] = b"x" * len(block[::4096])  # touched: resident
    before = memory.vmhwm_mb(field="VmRSS")
    del block
    with peaks.measure("small"):
        pass
    if not peaks.resettable:
        pytest.skip("this kernel does not let the process reset VmHWM")
    assert peaks.peaks["big"] >= before - 0.1 and before >= 256  # peaks are rounded to 0.1 MiB
    assert peaks.peaks["small"] < peaks.peaks["big"] - 200
    assert peaks.marked({"x": {"a": 1}}, "big") == {"x": {"a": 1, "peak_rss_mb": peaks.peaks["big"]}}


def test_the_verification_child_reports_its_own_peak(tmp_path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from trt_converters.onnx_runner import run_onnx_model

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9), path)
    reported = len(memory._child_peaks_mb)
    peaks = memory.StagePeaks()
    with peaks.measure("verify"):
        (outputs,) = run_onnx_model(path, [{"x": -np.ones((2, 4), np.float32)}])
    assert (outputs["y"] == 0).all()
    child = memory._child_peaks_mb[reported:]
    assert len(child) == 1 and child[0] > 10  # a Python with ONNX Runtime loaded
    assert peaks.peaks["verify"] >= child[0] - 0.1  # rounded to 0.1 MiB


def _options(**values):
    defaults = dict(generate_onnx=True, ckpt_path=None, precision_mode="fp32", onnx_int8=None, generate_trt=False,
                    onnx_path=None)
    return SimpleNamespace(**{**defaults, **values}, resolved_onnx_path=lambda: Path(values.get("onnx_path") or "x"))


def test_stages_asked_follow_the_flags():
    assert memory.stages_asked(_options()) == ["load", "export"]
    assert memory.stages_asked(_options(precision_mode="fp16", generate_trt=True)) == \
        ["load", "export", "lower_fp16", "build"]
    assert memory.stages_asked(_options(precision_mode="auto")) == ["load", "export", "lower_int8", "lower_fp16"]
    assert memory.stages_asked(_options(onnx_int8="dynamic"), openvino=True) == \
        ["load", "export", "ort_int8_dynamic", "openvino"]
    assert memory.stages_asked(_options(generate_onnx=False, generate_trt=True)) == ["build"]


def test_the_estimate_grows_with_the_checkpoint_and_the_stages(tmp_path):
    small, large = tmp_path / "small.pt", tmp_path / "large.pt"
    small.write_bytes(b"\0" * 2**20)
    large.write_bytes(b"\0" * 100 * 2**20)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"\0" * 3 * 2**20)
    (folder / "config.json").write_text("{}")
    assert memory.weights_megabytes(_options(ckpt_path=small)) == 1.0
    assert 3.0 < memory.weights_megabytes(_options(ckpt_path=folder)) < 3.01
    graph = tmp_path / "model.onnx"
    graph.write_bytes(b"\0" * 2**20)
    Path(f"{graph}.data").write_bytes(b"\0" * 2**20)
    assert memory.weights_megabytes(_options(generate_onnx=False, onnx_path=graph)) == 2.0
    fp32 = memory.estimate_peak(_options(ckpt_path=large))
    fp16 = memory.estimate_peak(_options(ckpt_path=large, precision_mode="fp16"))
    assert memory.estimate_peak(_options(ckpt_path=small)).peak_mb < fp32.peak_mb <= fp16.peak_mb
    assert set(fp16.stages) == set(fp32.stages) | {"lower_fp16"} and fp16.weights_mb == 100.0


def test_available_memory_is_the_smallest_known(tmp_path):
    assert memory.available_memory(3 * 2**30) == (3072.0, "--memory-limit")
    mb, source = memory.available_memory()
    assert mb > 0 and source in ("MemAvailable", "the cgroup's memory limit", "unknown")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 100 kB\nMemAvailable:   2048 kB\n")
    assert memory._mem_available(meminfo) == 2 * 2**20
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "memory.max").write_text("max\n")
    (v2 / "memory.current").write_text("5\n")
    assert memory._cgroup_room(v2, cgroups=tmp_path / "none") is None
    (v2 / "memory.max").write_text(f"{8 * 2**30}\n")
    (v2 / "memory.current").write_text(f"{2**30}\n")
    assert memory._cgroup_room(v2, cgroups=tmp_path / "none") == 7 * 2**30
    v1 = tmp_path / "v1"
    (v1 / "memory").mkdir(parents=True)
    (v1 / "memory" / "memory.limit_in_bytes").write_text(f"{4 * 2**30}\n")
    (v1 / "memory" / "memory.usage_in_bytes").write_text(f"{2**30}\n")
    assert memory._cgroup_room(v1, cgroups=tmp_path / "none") == 3 * 2**30
    nested = v2 / "user.slice" / "job"
    nested.mkdir(parents=True)
    (nested / "memory.max").write_text(f"{2 * 2**30}\n")
    (nested / "memory.current").write_text(f"{2**29}\n")
    (tmp_path / "cgroup").write_text("0::/user.slice/job\n")
    assert memory._cgroup_room(v2, cgroups=tmp_path / "cgroup") == 3 * 2**29


def test_refusal_names_need_availability_and_the_flags_that_lower_it():
    estimate = memory.Estimate(476.0, {"load": 1600.0, "export": 2400.0, "lower_fp16": 8200.0, "build": 4600.0})
    assert memory.refusal(estimate, 9000.0, "MemAvailable") is None
    line = memory.refusal(estimate, 4096.0, "--memory-limit")
    assert "\n" not in line
    assert "needs about 8.0 GiB" in line and "4.0 GiB is available (--memory-limit)" in line
    assert "without --use-fp16 about 4.5 GiB" in line and "without --use-fp16 and --generate-trt about 2.3 GiB" in line
    assert "its export alone" in memory.refusal(memory.Estimate(476.0, {"load": 1600.0, "export": 2400.0}), 1000.0,
                                                "MemAvailable")


def test_a_run_over_the_memory_limit_stops_before_loading_the_model(tmp_path, run_cli, tiny_checkpoints):
    """A model whose construction fails shows that nothing was loaded: the refusal comes first."""
    script = tmp_path / "exploding.py"
    script.write_text("import torch\n\nclass Exploding(torch.nn.Module):\n    def __init__(self):\n"
                      "        raise RuntimeError('the model was constructed')\n")
    out = tmp_path / "out"
    result = run_cli(["--ckpt-path", tiny_checkpoints["mlp"], "--model-script-path", script, "--model-class-name",
                      "Exploding", "--model-io-config", json.dumps(MLP_IO), "--model-name", "mlp", "--output-dir", out,
                      "--generate-onnx", "--use-fp16", "--generate-trt", "--memory-limit", "64M"])
    assert result.exit_code == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: this conversion needs about"), result.stderr
    assert "(--memory-limit)" in lines[0] and "without --generate-trt about" in lines[0]
    assert snapshot(out) == {}


def test_every_stage_of_a_real_conversion_reports_its_peak(tmp_path, run_cli, tiny_checkpoints):
    out = tmp_path / "out"
    result = run_cli(model_flags("mlp", tiny_checkpoints) + ["--output-dir", out, "--generate-onnx", "--use-fp16",
                                                            "--memory-limit", "64G"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((out / "mlp" / "report.json").read_text())
    assert set(report["stages"]) >= {"export", "verify_fp32", "lower_fp16"}
    for name, entry in report["stages"].items():
        assert entry["peak_rss_mb"] > 0, name
    assert report["model"]["peak_rss_mb"] > 0
    assert report["memory"]["available_from"] == "--memory-limit"
    assert set(report["memory"]["estimate_mb"]) == {"load", "export", "lower_fp16"}
    header = next(line for line in result.stdout.splitlines() if line.startswith("stage "))
    assert "peak RSS" in header
    assert any(line.startswith("load ") and "MiB" in line for line in result.stdout.splitlines())
