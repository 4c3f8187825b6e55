"""Verification that exercises the model: inputs drawn by role, and references that must vary."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers.models import MLP_IO, TEXT_IO, TINY_MODELS, model_flags
from trt_converters.spec import parse_io_config
from trt_converters.synthetic_inputs import drawn_as, infer_role, synthetic_inputs

CAPTION_IO = parse_io_config({  # the original tool's README example: a float mask with no value_range
    "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [32], "value_range": [0, 100]},
               {"name": "input_mask", "dtype": "float32", "shape": [32]},
               {"name": "input_token_type_ids", "dtype": "int64", "shape": [32]}],
    "outputs": [{"name": "output", "dtype": "float32", "shape": [1]}]})


def _draw(batch: int, seed: int = 1, special=None) -> dict:
    return synthetic_inputs(CAPTION_IO, {t.name: (batch, 32) for t in CAPTION_IO.inputs}, seed=seed,
                            vocabulary=special)


def test_roles_inferred_from_name_and_dtype_or_given():
    assert [infer_role(t) for t in CAPTION_IO.inputs] == ["ids", "mask", "token_type"]
    io = parse_io_config({"inputs": [{"name": "x", "dtype": "float32", "shape": [3, 8, 8]},
                                     {"name": "m", "dtype": "int64", "shape": [-1], "role": "mask"},
                                     {"name": "position_ids", "dtype": "int64", "shape": [-1]},
                                     {"name": "v", "dtype": "float32", "shape": [4]}],
                          "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}]})
    assert [infer_role(t) for t in io.inputs] == ["image", "mask", "positions", "features"]


def test_masks_are_padded_prefixes_with_a_full_and_a_short_row():
    mask = _draw(8)["input_mask"]
    assert mask.dtype == np.float32 and set(np.unique(mask)) <= {0.0, 1.0}
    lengths = mask.sum(axis=1).astype(int)
    assert lengths[0] == 32 and lengths[1] == 4 and lengths.min() >= 1, "one full, one short, none fully masked"
    for row, length in zip(mask, lengths):
        assert row[:length].all() and not row[length:].any(), "ones form a prefix"
    assert len(set(lengths.tolist())) > 2, "the other rows have varied lengths"


def test_ids_leave_out_special_tokens_and_pad_where_masked():
    inputs = _draw(16, special={"pad": 0, "all": [0, 1, 2, 3]})
    ids, mask = inputs["input_ids"], inputs["input_mask"].astype(bool)
    assert ids[mask].min() >= 4 and ids.max() < 100
    assert (ids[~mask] == 0).all()


def test_token_types_have_a_second_segment_in_some_rows():
    types = _draw(8)["input_token_type_ids"]
    assert set(np.unique(types)) == {0, 1}
    assert not types[0].any() and types.any(axis=1).sum() >= 1
    mask = _draw(8)["input_mask"]
    assert not (types * (1 - mask)).any(), "padding has token type 0"


def test_drawn_as_describes_each_input():
    described = drawn_as(CAPTION_IO, {"pad": 0, "all": [0, 1, 2, 3]})
    assert "without special ids [0, 1, 2, 3]" in described["input_ids"]
    assert "per-row prefixes of ones" in described["input_mask"] and "fully masked" in described["input_mask"]
    assert described["input_token_type_ids"].startswith("token_type")


@pytest.fixture
def constant_model(tmp_path):
    import torch

    from trt_converters.serving_runtime.torch_loading import import_model_class

    model = import_model_class(TINY_MODELS, "IgnoresInput")()
    path = tmp_path / "constant.pt"
    torch.save(model.state_dict(), path)
    return ["--ckpt-path", str(path), "--model-script-path", str(TINY_MODELS), "--model-class-name", "IgnoresInput",
            "--model-io-config", json.dumps(MLP_IO), "--model-name", "constant", "--generate-onnx",
            "--output-dir", str(tmp_path / "out")]


def test_model_that_ignores_its_input_is_refused(run_cli, constant_model, tmp_path):
    result = run_cli(constant_model)
    assert result.exit_code == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "output 'scores' is the same for all" in errors[0], result.stderr
    assert "ignores input(s) features" in errors[0] and "--allow-constant-output scores" in errors[0]
    assert not (tmp_path / "out").exists()


def test_allowed_constant_output_passes_and_is_reported(run_cli, constant_model, tmp_path):
    result = run_cli(constant_model + ["--allow-constant-output", "scores"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "out" / "constant" / "report.json").read_text())
    check = report["stages"]["reference_check"]
    assert check["allowed_constant"] == ["scores"] and check["reference_std"]["scores"] < 1e-6
    assert check["input_effect"]["features"]["scores"] == 0.0


def test_every_verification_entry_has_reference_std(run_cli, tiny_checkpoints, tmp_path):
    result = run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", str(tmp_path)])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "text" / "report.json").read_text())
    entries = [v for k, v in report["stages"].items() if k.startswith("verify")]
    assert entries and all(e["reference_std"]["output"] > 0 for e in entries)
    assert "per-row prefixes" in entries[0]["drawn_as"]["input_mask"]
    effects = report["stages"]["reference_check"]["input_effect"]
    assert effects["input_ids"]["output"] > 0 and effects["input_mask"]["output"] > 0
    assert TEXT_IO["inputs"][1].get("value_range") is None
