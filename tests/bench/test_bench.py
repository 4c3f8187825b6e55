"""trt-bench on tiny fixture models: well-formed statistics (no timing thresholds) and one-line CLI errors."""

import json
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "tiny_models.py"

TEXT_IO = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "value_range": [0, 50]},
                      {"name": "input_mask", "dtype": "float32", "shape": [-1], "value_range": [1, 2]}],
           "outputs": [{"name": "scores", "dtype": "float32", "shape": [3]}]}
CNN_IO = {"inputs": [{"name": "images", "dtype": "float32", "shape": [3, -1, -1],
                      "min_shape": [3, 8, 8], "opt_shape": [3, 16, 16], "max_shape": [3, 32, 32]}],
          "outputs": [{"name": "logits", "dtype": "float32", "shape": [5]},
                      {"name": "features", "dtype": "float32", "shape": [8, -1, -1]}]}
MLP_IO = {"inputs": [{"name": "features", "dtype": "float32", "shape": [16]}],
          "outputs": [{"name": "out", "dtype": "float32", "shape": [4]}]}


def _io(mapping):
    from trt_converters.spec import parse_io_config

    return parse_io_config(mapping)


@pytest.fixture(scope="module")
def mlp_onnx(tmp_path_factory):
    import torch

    sys.path.insert(0, str(FIXTURES.parent))
    from tiny_models import TinyMLP

    path = tmp_path_factory.mktemp("bench") / "model.onnx"
    torch.onnx.export(TinyMLP().eval(), (torch.zeros(2, 16),), str(path), input_names=["features"],
                      output_names=["out"], dynamic_axes={"features": {0: "batch"}, "out": {0: "batch"}},
                      dynamo=False)
    return path


def _check_stats(row, runs_at_most):
    assert 1 <= row["count"] <= runs_at_most
    ordered = [row[k] for k in ("min_ms", "p10_ms", "median_ms", "p90_ms", "p95_ms", "p99_ms", "max_ms")]
    assert all(math.isfinite(v) and v >= 0 for v in ordered)
    assert ordered == sorted(ordered)
    assert row["qps"] > 0 and math.isclose(row["samples_per_s"], row["qps"] * row["batch"])
    assert row["metric"].startswith("host latency")


def test_latency_stats_percentiles():
    from trt_converters.bench import latency_stats, percentile

    samples = [float(v) for v in range(1, 101)]
    stats = latency_stats(samples, batch=4, wall_seconds=2.0)
    assert stats["count"] == 100
    assert stats["median_ms"] == pytest.approx(50.5)
    assert stats["p99_ms"] == pytest.approx(percentile(sorted(samples), 99))
    assert stats["qps"] == pytest.approx(50.0) and stats["samples_per_s"] == pytest.approx(200.0)


def test_grid_shapes_fill_dynamic_dims():
    from trt_converters.bench import grid_shapes

    assert grid_shapes(_io(TEXT_IO), 8, 64) == {"input_ids": (8, 64), "input_mask": (8, 64)}
    assert grid_shapes(_io(CNN_IO), 2, 16) == {"images": (2, 3, 16, 16)}
    assert grid_shapes(_io(CNN_IO), 2, 16, {"images": (3, 8, 24)}) == {"images": (2, 3, 8, 24)}


def test_bench_text_fixture_torch_over_grid():
    from trt_converters.bench import BenchSettings, ModelArtifacts, bench_model

    artifacts = ModelArtifacts(io=_io(TEXT_IO), model_script=FIXTURES, class_name="TinyTextModel")
    settings = BenchSettings(batch_sizes=(1, 3), lengths=(4, 9), warmup=1, iterations=5, max_seconds=30)
    result = bench_model(artifacts, settings, runtimes=("torch", "trt"), show_progress=False)
    timed = [r for r in result["rows"] if "median_ms" in r]
    assert {(r["batch"], r["length"]) for r in timed} == {(1, 4), (1, 9), (3, 4), (3, 9)}
    for row in timed:
        _check_stats(row, 5)
        assert row["shapes"]["input_ids"] == [row["batch"], row["length"]]
        assert row["speedup_vs_baseline"] == pytest.approx(1.0)
    skipped = [r for r in result["rows"] if "skipped" in r]
    assert skipped and all(r["runtime"].startswith("tensorrt") and r["skipped"] for r in skipped)
    assert result["machine"]["logical_cpus"] >= 1 and result["machine"]["versions"]["torch"]
    json.dumps(result, default=str)


def test_bench_mlp_torch_and_onnxruntime_side_by_side(mlp_onnx):
    from trt_converters.bench import BenchSettings, ModelArtifacts, bench_model, render_table

    artifacts = ModelArtifacts(io=_io(MLP_IO), model_script=FIXTURES, class_name="TinyMLP", onnx={"fp32": mlp_onnx})
    settings = BenchSettings(batch_sizes=(1, 8), lengths=(128,), warmup=1, iterations=4)
    result = bench_model(artifacts, settings, runtimes=("torch", "ort"), show_progress=False)
    rows = result["rows"]
    assert [r["runtime"] for r in rows] == ["pytorch fp32 (cpu)", "onnxruntime fp32 (CPU EP)"] * 2
    assert all(r["length"] is None for r in rows)  # no dynamic dims: the length axis collapses
    for row in rows:
        _check_stats(row, 4)
        assert row["baseline"] == "pytorch fp32 (cpu)" and row["speedup_vs_baseline"] > 0
    table = render_table(rows)
    assert "median ms" in table and "onnxruntime fp32" in table


def test_bench_cnn_fixture_dynamic_image_dims():
    from trt_converters.bench import BenchSettings, ModelArtifacts, bench_model

    artifacts = ModelArtifacts(io=_io(CNN_IO), model_script=FIXTURES, class_name="TinyCNN")
    result = bench_model(artifacts, BenchSettings(batch_sizes=(2,), lengths=(16,), warmup=0, iterations=3),
                         runtimes=("torch",), show_progress=False)
    (row,) = result["rows"]
    _check_stats(row, 3)
    assert row["shapes"] == {"images": [2, 3, 16, 16]}


def test_failing_runtime_is_reported_not_raised():
    from trt_converters.bench import BenchSettings, Runner, time_cell

    class Broken(Runner):
        name = "broken"

        def prepare(self, inputs):
            pass

        def __call__(self):
            raise RuntimeError("boom\nsecond line")

    class Fine(Runner):
        name = "fine"

        def prepare(self, inputs):
            pass

        def __call__(self):
            pass

    results = time_cell([Broken(), Fine()], {}, BenchSettings(warmup=0, iterations=3), batch=1)
    assert results[0] == {"failed": "RuntimeError: boom"}
    assert results[1]["count"] == 3


def test_precision_labels_and_report(tmp_path, mlp_onnx):
    from trt_converters.bench import artifacts_from_report, precision_label

    assert precision_label(Path("a/model.onnx")) == "fp32"
    assert precision_label(Path("model.fp16.onnx")) == "fp16"
    assert precision_label(Path("model.ort-int8-dynamic.onnx")) == "ort-int8-dynamic"
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"x")
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"precision": "int8", "io": MLP_IO, "stages": {
        "export": {"path": str(mlp_onnx)}, "build": {"path": str(engine)}, "triton": {"repository": "r"}}}))
    found = artifacts_from_report(report)
    assert found["onnx"] == {"fp32": mlp_onnx} and found["engines"] == {"int8": engine}


def test_report_is_the_weakest_option_layer(tmp_path, mlp_onnx):
    """--report fills what neither the flags nor --config give; flags and --config win over it."""
    from trt_converters.bench_cli import resolve_artifacts

    report = tmp_path / "report.json"
    report.write_text(json.dumps({"io": MLP_IO, "model": {"class": "TinyMLP", "kwargs": {"width": 8, "depth": 2}},
                                  "stages": {"export": {"path": str(mlp_onnx)}}}))
    config = tmp_path / "model.yaml"
    config.write_text(f"model_script_path: {FIXTURES}\nmodel_kwargs: {{depth: 3}}\n")
    found = resolve_artifacts({"config_path": str(config)}, report, (), ())
    assert (found.class_name, found.model_kwargs) == ("TinyMLP", {"width": 8, "depth": 3})
    assert [t.name for t in found.io.inputs] == ["features"] and found.onnx == {"fp32": mlp_onnx}
    flagged = resolve_artifacts({"config_path": str(config), "model_class_name": "TinyCNN",
                                 "model_kwargs": '{"width": 4}'}, report, (), ())
    assert (flagged.class_name, flagged.model_kwargs) == ("TinyCNN", {"width": 4, "depth": 3})


@pytest.mark.parametrize("args, fragment", [
    (["--config", "does/not/exist.yaml"], "does not exist"),
    (["--model-io-config", json.dumps(MLP_IO), "--batch-sizes", "0"], "--batch-sizes"),
    (["--model-io-config", json.dumps(MLP_IO), "--runtimes", "tensorflow"], "--runtimes"),
    (["--model-io-config", json.dumps(MLP_IO), "--shape", "images=3x640x640"], "--shape"),
    (["--model-io-config", json.dumps(MLP_IO), "--onnx", "missing.onnx"], "missing.onnx"),
    (["--model-io-config", json.dumps(MLP_IO), "--runtimes", "torch"], "nothing to time"),
    (["--report", "nope.json"], "--report"),
])
def test_cli_bad_input_one_line_exit_2(args, fragment):
    from click.testing import CliRunner

    from trt_converters.bench_cli import main

    result = CliRunner().invoke(main, args + ["--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert "Traceback" not in result.output


def test_cli_json_output(tmp_path, mlp_onnx):
    from click.testing import CliRunner

    from trt_converters.bench_cli import main

    out = tmp_path / "bench.json"
    result = CliRunner().invoke(main, ["--model-io-config", json.dumps(MLP_IO), "--onnx", f"fp32={mlp_onnx}",
                                       "--batch-sizes", "1,2", "--iterations", "3", "--warmup", "0",
                                       "--no-progress", "--json", str(out)])
    assert result.exit_code == 0, result.output
    saved = json.loads(out.read_text())
    assert [r["batch"] for r in saved["rows"] if "median_ms" in r] == [1, 2]
    assert "pytorch" in result.output and "skipped" in result.output  # no model script: PyTorch is skipped
