"""The OpenVINO CPU path: IRs and NNCF INT8 verified against PyTorch, the python-backend OpenVINO model in the
real Triton server, Triton's openvino backend config, --cpu-runtime precedence and --tune across runtimes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.ort_cpu.conftest import IO_CONFIG, ROBERTA_SCRIPT, TINY_KWARGS, padded_inputs
from trt_converters.onnxruntime_cpu.accuracy import accuracy_report
from trt_converters.verify import DEFAULT_TOLERANCES

pytest.importorskip("openvino")
pytest.importorskip("nncf")


@pytest.fixture(scope="module")
def irs(tiny_roberta, tmp_path_factory):
    """FP32 IR of the SDPA-attention (dynamo) export and its NNCF INT8 IR, calibrated on padded samples."""
    from trt_converters.openvino_cpu.lower import convert_to_ir, quantize_ir

    work = tmp_path_factory.mktemp("openvino_irs")
    fp32 = convert_to_ir(tiny_roberta.fp32_onnx, work / "model.xml")
    calibration = [padded_inputs(1, 16, 100 + i) for i in range(16)]
    arrays = {name: np.concatenate([c[name] for c in calibration]) for name in calibration[0]}
    return {"fp32": fp32, "int8": quantize_ir(fp32, work / "int8" / "model.xml", arrays)}


def test_nncf_int8_of_the_sdpa_export_compiles_and_meets_the_int8_budget(irs, tiny_roberta):
    from trt_converters.openvino_cpu.runtime import run_ir

    result = irs["int8"]
    # the attention score and context MatMuls of both layers stay out of INT8; without that the CPU plugin
    # failed to compile this export ("convert->constant_fold(...)")
    assert len(result.ignored_matmuls) == 4
    assert result.as_report()["smooth_quant_alpha_matmul"] == 0.95
    candidates = run_ir(result.path, tiny_roberta.check_inputs, "int8")
    report = accuracy_report(tiny_roberta.references, candidates, DEFAULT_TOLERANCES["int8"])
    assert report.passed, [c.as_dict() for c in report.comparisons]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_fp32_ir_meets_each_precision_budget(irs, tiny_roberta, precision):
    from trt_converters.openvino_cpu.runtime import inference_hint, run_ir

    candidates = run_ir(irs["fp32"], tiny_roberta.check_inputs, precision)
    report = accuracy_report(tiny_roberta.references, candidates, DEFAULT_TOLERANCES[precision])
    assert report.passed, [c.as_dict() for c in report.comparisons]
    assert inference_hint(precision) == {"fp32": "f32", "bf16": "bf16"}[precision]
    if precision == "fp32":  # FP32 inference is FP32: the same numbers as PyTorch to rounding
        assert report.worst().max_rel_error < 1e-5


@pytest.mark.triton
def test_python_openvino_model_serves_what_openvino_computes(irs, tiny_roberta, tmp_path):
    from tests.helpers.triton import triton_infer
    from trt_converters.errors import UserError
    from trt_converters.openvino_cpu.runtime import run_ir
    from trt_converters.onnxruntime_cpu.serving import CpuServing
    from trt_converters.openvino_cpu.serving import write_openvino_python_model
    from trt_converters.triton.config import read_config
    from trt_converters.triton.server import LocalTritonServer, find_triton_distribution

    try:
        find_triton_distribution()
    except UserError as exc:
        pytest.skip(str(exc))
    repo = tmp_path / "repo"
    served = {"ov_fp32": ("fp32", irs["fp32"]), "ov_bf16": ("bf16", irs["fp32"]), "ov_int8": ("int8", irs["int8"].path)}
    for name, (precision, xml) in served.items():
        folder = write_openvino_python_model(repo, name, xml, tiny_roberta.io, CpuServing(intra_op_threads=1),
                                             precision=precision)
        assert {p.name for p in (folder / "1").iterdir()} >= {"model.py", "model.xml", "model.bin", "serving_runtime"}
        assert read_config(folder / "config.pbtxt").backend == "python"
    requests = [padded_inputs(1, 16, 11), padded_inputs(3, 9, 12)]
    with LocalTritonServer(repo, log_path=tmp_path / "server.log", startup_timeout=120) as server:
        for name, (precision, xml) in served.items():
            direct = run_ir(xml, requests, precision)
            for request, expected in zip(requests, direct):
                got = triton_infer("grpc", server.grpc_url, name, request, "logits")
                np.testing.assert_allclose(got, expected["logits"], rtol=1e-5, atol=1e-5, err_msg=name)
    pins = dict(line.split("==") for line in (repo / "requirements.txt").read_text().splitlines()
                if not line.startswith("#"))
    assert sorted(pins) == ["numpy", "openvino"]


def test_openvino_backend_config_and_model_files(irs, tiny_roberta, tmp_path):
    """Triton's openvino backend (NVIDIA's container): backend "openvino", model.xml/model.bin in the version
    folder, and only parameters that backend parses."""
    from trt_converters.options import ConvertOptions
    from trt_converters.triton.backends import choose_serving
    from trt_converters.triton.config import read_config
    from trt_converters.triton.repository import package_core_model

    options = ConvertOptions(model_name="tiny", triton_repo=tmp_path / "repo", triton_backend="openvino",
                             instance_kind="cpu", openvino_precision="bf16", intra_op_threads=2, instance_count=2,
                             dynamic_batching=True, generate_triton_config=True)
    folder = package_core_model(tmp_path / "repo", options, tiny_roberta.io, choose_serving(options), engine=None,
                                onnx_graph=None, profiles=tiny_roberta.profiles, openvino_ir=irs["fp32"])
    assert sorted(p.name for p in (folder / "1").iterdir()) == ["model.bin", "model.xml"]
    config = read_config(folder / "config.pbtxt")
    assert config.backend == "openvino" and not config.platform
    assert config.instance_group[0].count == 2 and config.max_batch_size == 8
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    assert parameters == {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": "2",
                          "HINT_BF16": "YES"}
    # the backend has no FP32 hint: an fp32 model is served without HINT_BF16, with a warning
    from trt_converters.openvino_cpu.serving import openvino_parameters, serving_warnings

    assert "HINT_BF16" not in openvino_parameters("openvino", "fp32", None)
    assert "runs this fp32 model in BF16" in serving_warnings("openvino", "fp32")[0]


# -- through the CLI -------------------------------------------------------------------------------
def cli_flags(tmp_path, checkpoint):
    return ["--ckpt-path", checkpoint, "--model-script-path", ROBERTA_SCRIPT, "--model-class-name",
            "RobertaClassifier", "--model-kwargs", json.dumps(TINY_KWARGS), "--model-io-config",
            json.dumps(IO_CONFIG), "--model-name", "tiny", "--output-dir", tmp_path / "out",
            "--triton-repo", tmp_path / "repo", "--generate-onnx", "--generate-triton-config"]


def test_tune_measures_runtimes_and_serves_a_row_within_budget(run_cli, tiny_roberta, tmp_path):
    from trt_converters.triton.config import read_config

    result = run_cli(cli_flags(tmp_path, tiny_roberta.checkpoint) + ["--instance-kind", "cpu", "--tune"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "out" / "tiny" / "report.json").read_text())
    tune = report["stages"]["tune"]
    measured = [row for row in tune["table"] if row["within_budget"]]
    assert {(row["runtime"], row["precision"]) for row in measured} >= {("onnxruntime", "fp32"), ("openvino", "fp32")}
    assert tune["winner"] in measured
    assert set(tune["cpu_features"]["flags"]) >= {"AMX INT8", "AVX-512 VNNI", "AVX-512 BF16", "AVX2"}
    from trt_converters.openvino_cpu.runtime import has_bf16

    verified = report["stages"]["openvino"]["precisions"]
    assert set(verified) == {"fp32", "int8"} | ({"bf16"} if has_bf16() else set())
    assert all(verified[row["precision"]]["met_budget"] for row in measured if row["runtime"] == "openvino")
    config = read_config(tmp_path / "repo" / "tiny" / "config.pbtxt")
    winner = tune["winner"]
    assert config.instance_group[0].count == winner["instances"]
    parameters = {key: value.string_value for key, value in config.parameters.items()}
    if winner["runtime"] == "openvino":
        assert report["stages"]["triton"]["backend"] == "python_openvino"
        assert parameters["inference_num_threads"] == str(winner["threads"])
        assert (tmp_path / "repo" / "tiny" / "1" / "model.xml").is_file()
    else:
        assert report["stages"]["triton"]["backend"] == "python_onnxruntime"
        assert parameters["intra_op_thread_count"] == str(winner["threads"])
    assert report["serving"]["cpu_runtime"] == winner["runtime"]
    assert report["option_sources"]["cpu_runtime"] == "default"


def test_openvino_precision_that_misses_its_budget_fails_and_writes_nothing(run_cli, tiny_roberta, tmp_path):
    result = run_cli(cli_flags(tmp_path, tiny_roberta.checkpoint) + [
        "--cpu-runtime", "openvino", "--openvino-precision", "bf16", "--min-cosine", "0.9999999"])
    assert result.exit_code == 1
    assert "no OpenVINO precision met its budget" in result.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "repo").exists() and not (tmp_path / "out" / "tiny").exists()


def test_cpu_runtime_follows_the_stronger_source(tmp_path):
    from trt_converters.errors import UserError
    from trt_converters.options import build_options

    yaml_values = {"cpu_runtime": "onnxruntime"}
    options = build_options(yaml_values, {"triton_backend": "python_openvino"}, read_checkpoint=False)
    assert options.cpu_runtime == "openvino" and options.derived_values()["cpu_runtime"]["from"] == \
        "triton_backend (flag)"
    options = build_options({"triton_backend": "onnxruntime_onnx"}, {"cpu_runtime": "openvino"}, read_checkpoint=False)
    assert options.triton_backend == "openvino" and options.option_sources()["cpu_runtime"] == "flag"
    with pytest.raises(UserError, match="contradicts"):
        build_options({}, {"cpu_runtime": "onnxruntime", "triton_backend": "openvino"}, read_checkpoint=False)
    with pytest.raises(UserError, match="NNCF"):
        build_options({}, {"cpu_runtime": "openvino", "onnx_int8": "dynamic"}, read_checkpoint=False)
    with pytest.raises(UserError, match="--openvino-precision applies"):
        build_options({}, {"openvino_precision": "int8"}, read_checkpoint=False)
    with pytest.raises(UserError, match="serves on the CPU"):
        build_options({}, {"triton_backend": "openvino", "instance_kind": "gpu"}, read_checkpoint=False)


def test_contradicting_runtime_flags_are_a_usage_error_before_any_work(run_cli, tiny_roberta, tmp_path):
    result = run_cli(cli_flags(tmp_path, tiny_roberta.checkpoint) + ["--cpu-runtime", "onnxruntime",
                                                                     "--triton-backend", "python_openvino"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --cpu-runtime onnxruntime contradicts")
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()
