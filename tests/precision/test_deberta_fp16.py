"""NVIDIA's original command (README, "The command") on a DeBERTa-v3 caption classifier with realistic weights:
--use-fp16 passes at batch 1, 8 and 32, with and without configs/deberta_caption.yaml, and the FP16 graph
matches PyTorch on padded masks; a graph that misses its budget names the first diverging tensor."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.deberta_caption import write_caption_checkpoint

ROOT = Path(__file__).resolve().parents[2]
ORIGINAL_IO = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [128]},
                          {"name": "input_mask", "dtype": "float32", "shape": [128]},
                          {"name": "input_token_type_ids", "dtype": "float32", "shape": [128]}],
               "outputs": [{"name": "output", "dtype": "float32", "shape": [1]}]}


@pytest.fixture(scope="module")
def caption_checkpoint(tmp_path_factory) -> Path:
    return write_caption_checkpoint(tmp_path_factory.mktemp("deberta") / "ckpt")


def _command(checkpoint: Path, out: Path, batch: int, with_config: bool) -> list:
    script = ROOT / "model_scripts" / "deberta.py"
    if with_config:
        flags = ["--config", ROOT / "configs" / "deberta_caption.yaml"]
    else:
        flags = ["--model-class-name", "DebertaLargeModel", "--model-io-config", json.dumps(ORIGINAL_IO),
                 "--model-name", "deberta_large", "--triton-inputs", "input_ids,input_mask", "--dynamic-batching"]
    return flags + ["--ckpt-path", checkpoint, "--model-script-path", script, "--input-size", batch, 128,
                    "--max-batch-size", batch, "--generate-onnx", "--use-fp16", "--output-dir", out]


def _padded_check(report: dict, checkpoint: Path, batch: int) -> tuple[float, float]:
    """The FP16 graph against PyTorch on padded masks at the run's batch, outside the run's own verification."""
    import onnxruntime as ort
    import torch

    from trt_converters.loading import load_model
    from trt_converters.spec import parse_io_config
    from trt_converters.synthetic_inputs import synthetic_inputs, vocabulary_of
    from trt_converters.verify import DEFAULT_TOLERANCES, compare_arrays

    io = parse_io_config(report["io"])
    model, _ = load_model(ROOT / "model_scripts" / "deberta.py", "DebertaLargeModel", checkpoint,
                          model_kwargs=report["model"]["kwargs"])
    inputs = synthetic_inputs(io, {t.name: (batch, 128) for t in io.inputs}, seed=77,
                              vocabulary=vocabulary_of(checkpoint))
    lengths = inputs["input_mask"].sum(axis=1)
    assert lengths.min() < 128 or batch == 1, "some rows are padded"
    session = ort.InferenceSession(report["stages"]["lower_fp16"]["path"], providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {i.name: inputs[i.name] for i in session.get_inputs()})
    with torch.no_grad():
        reference = model(*[torch.from_numpy(inputs[t.name]) for t in io.inputs]).numpy()
    result = compare_arrays("output", reference, output, DEFAULT_TOLERANCES["fp16"])
    assert result.passed, result
    return result.max_rel_error, result.cosine


@pytest.mark.parametrize("batch, with_config", [(1, False), (8, False), (32, False), (8, True), (32, True)])
def test_original_command_passes_fp16_on_padded_masks(run_cli, caption_checkpoint, tmp_path, batch, with_config):
    result = run_cli(_command(caption_checkpoint, tmp_path, batch, with_config))
    assert result.exit_code == 0, result.stderr
    assert "WARNING:root" not in result.stderr and "[W]" not in result.stderr + result.stdout, "library lines"
    report = json.loads((tmp_path / "deberta_large" / "report.json").read_text())
    assert any(line.startswith("root WARNING") for line in report["stages"]["lower_fp16"]["library_log"])
    verify = report["stages"]["lower_fp16"]["verify"]
    assert all(o["passed"] for o in verify["outputs"]) and verify["reference_std"]["output"] > 0
    assert "per-row prefixes of ones" in verify["drawn_as"]["input_mask"]
    masks_seen = [np.prod(shape["input_mask"]) for shape in verify["input_shapes"]]
    assert max(masks_seen) >= batch * 128
    effects = report["stages"]["reference_check"]["input_effect"]
    assert effects["input_ids"]["output"] > 0 and effects["input_mask"]["output"] > 0
    assert effects["input_token_type_ids"]["output"] == 0.0, "DeBERTa-v3 has no token types"
    _padded_check(report, caption_checkpoint, batch)


def test_fp16_failure_names_the_first_diverging_tensor(run_cli, caption_checkpoint, tmp_path):
    result = run_cli(_command(caption_checkpoint, tmp_path, 1, False) + ["--rtol", "0", "--atol", "1e-7"])
    assert result.exit_code == 1, result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: fp16 graph does not match the reference") and "first divergence at tensor" in error
