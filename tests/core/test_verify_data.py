"""--verify-data: real samples verify every graph; with only --calib-data, a held-back part verifies."""

from __future__ import annotations

import json

import numpy as np

from tests.helpers.models import model_flags


def _text_samples(path, count: int, seed: int):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 40, size=count)
    mask = (np.arange(40)[None, :] < lengths[:, None]).astype(np.float32)
    np.savez(path, input_ids=(rng.integers(1, 50, size=(count, 40)) * mask).astype(np.int64), input_mask=mask)
    return path


def _converted(run_cli, tiny_checkpoints, tmp_path, *flags) -> tuple[dict, str]:
    result = run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path / "out",
                                                             *flags])
    assert result.exit_code == 0, result.stderr
    return json.loads((tmp_path / "out" / "text" / "report.json").read_text()), result.stderr


def test_verify_data_verifies_export_and_lowering(tmp_path, run_cli, tiny_checkpoints):
    data = _text_samples(tmp_path / "verify.npz", 11, seed=1)
    report, stderr = _converted(run_cli, tiny_checkpoints, tmp_path, "--verify-data", data, "--use-fp16")
    for entry in (report["stages"]["verify_fp32"], report["stages"]["lower_fp16"]["verify"]):
        assert "11 samples of --verify-data" in entry["inputs"] and "synthetic inputs" in entry["inputs"]
        assert [s["input_ids"] for s in entry["input_shapes"]][-2:] == [[8, 40], [3, 40]]  # max batch 8
        assert entry["reference_std"]["output"] > 0
    assert "--verify-data" in stderr


def test_int8_verifies_on_samples_held_back_from_calibration(tmp_path, run_cli, tiny_checkpoints):
    data = _text_samples(tmp_path / "calib.npz", 32, seed=2)
    report, _ = _converted(run_cli, tiny_checkpoints, tmp_path, "--calib-data", data, "--use-int8")
    verify = report["stages"]["lower_int8"]["verify"]
    assert verify["inputs"] == f"8 samples of {data} held back from calibration"
    assert [s["input_ids"] for s in verify["input_shapes"]] == [[8, 40]]


def test_bad_verify_data_is_named(tmp_path, run_cli, tiny_checkpoints):
    np.savez(tmp_path / "verify.npz", wrong=np.zeros((2, 4)))
    for source in (tmp_path / "missing.npz", tmp_path / "verify.npz"):
        result = run_cli(model_flags("text", tiny_checkpoints) + ["--generate-onnx", "--output-dir", tmp_path / "out",
                                                                 "--verify-data", source])
        assert result.exit_code == 2
        assert result.stderr.strip().splitlines()[-1].startswith(("error: --verify-data", "error: verification data"))
    assert not (tmp_path / "out").exists()
