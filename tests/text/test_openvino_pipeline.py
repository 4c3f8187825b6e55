"""The e5 text pipeline unchanged around a core model served by OpenVINO (python_openvino) in the real Triton
server: FP32 answers as PyTorch does; INT8 (NNCF, calibrated on a text file) stays close to it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.text import ROOT, SENTENCES, TINY, import_script, infer, torch_rows

pytest.importorskip("openvino")
pytest.importorskip("nncf")
pytestmark = pytest.mark.triton

CALIBRATION_TEXT = ["A man is eating food.", "The weather is lovely today.", "Triton serves models over HTTP.",
                    "She reads a book in the garden every morning.", "Two dogs run across the field.",
                    "The market closed higher after the announcement.", "Please send me the report by Friday.",
                    "Quantization keeps the model small and fast."] * 2


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    import torch
    from click.testing import CliRunner

    from trt_converters.cli import main
    from trt_converters.text.minilm import minilm_checkpoint_dir
    from trt_converters.triton.server import LocalTritonServer

    work = tmp_path_factory.mktemp("openvino_e5")
    checkpoint = work / "ckpt" / "model.pt"
    checkpoint.parent.mkdir()
    kwargs = dict(TINY, vocab_size=30522, max_position_embeddings=130)
    torch.manual_seed(0)
    model = import_script("e5").E5Embedder(**kwargs).eval()
    torch.save(model.state_dict(), checkpoint)
    calibration = work / "calibration.txt"
    calibration.write_text("\n".join(CALIBRATION_TEXT) + "\n", encoding="utf-8")
    io = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1], "opt_shape": [16],
                      "max_shape": [128], "value_range": [0, 30522]},
                     {"name": "attention_mask", "dtype": "int64", "shape": [-1], "value_range": [1, 2]}],
          "outputs": [{"name": "embeddings", "dtype": "float32", "shape": [32]}]}
    reports = {}
    for name, precision in (("e5_fp32", "fp32"), ("e5_int8", "int8")):
        args = ["--config", ROOT / "configs" / "e5_small_v2.yaml", "--ckpt-path", checkpoint, "--model-name", name,
                "--model-kwargs", json.dumps(kwargs), "--triton-repo", work / "repo", "--output-dir", work / "out",
                "--generate-onnx", "--generate-triton-config", "--cpu-runtime", "openvino", "--openvino-precision",
                precision, "--max-batch-size", "8", "--input-size", "2", "16", "--dynamic-batching",
                "--tokenizer-path", minilm_checkpoint_dir(), "--pipeline-option", "max_length=128",
                "--calib-data", calibration, "--model-io-config", json.dumps(io)]
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        assert result.exit_code == 0, result.stderr + result.stdout
        reports[name] = json.loads((work / "out" / name / "report.json").read_text())
    with LocalTritonServer(work / "repo", log_path=work / "triton.log", startup_timeout=180) as server:
        yield {"server": server, "model": model, "reports": reports, "tokenizer": minilm_checkpoint_dir(),
               "work": work}


def test_fp32_core_on_openvino_answers_as_pytorch(served):
    from transformers import AutoTokenizer

    report = served["reports"]["e5_fp32"]
    assert report["stages"]["triton"]["backend"] == "python_openvino"
    assert report["stages"]["openvino"]["chosen"] == "fp32"
    assert report["option_sources"]["cpu_runtime"] == "flag"
    tokenizer = AutoTokenizer.from_pretrained(str(served["tokenizer"]))
    expected = torch_rows(served["model"], tokenizer, SENTENCES, prefix="query: ")
    got = infer(served["server"], "grpc", "e5_fp32_e5", SENTENCES, ["embeddings"])["embeddings"]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_int8_core_calibrated_on_text_stays_close_to_pytorch(served):
    from transformers import AutoTokenizer

    report = served["reports"]["e5_int8"]
    stage = report["stages"]["openvino"]
    from trt_converters.verification_data import HELD_BACK

    held_back = min(HELD_BACK, len(CALIBRATION_TEXT) // 4)  # verify INT8 instead of calibrating it
    assert stage["chosen"] == "int8" and stage["int8"]["samples"] == len(CALIBRATION_TEXT) - held_back
    assert stage["precisions"]["int8"]["met_budget"]
    assert "held back from calibration" in stage["precisions"]["int8"]["inputs"]
    assert (served["work"] / "repo" / "e5_int8" / "1" / "model.xml").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(served["tokenizer"]))
    expected = torch_rows(served["model"], tokenizer, SENTENCES, prefix="query: ")
    got = infer(served["server"], "http", "e5_int8_e5", SENTENCES, ["embeddings"])["embeddings"]
    cosines = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosines.min() > 0.97, cosines
