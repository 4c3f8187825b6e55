"""OCR models in FP16 and INT8 through the CLI: image calibration folder made here, verified, real TensorRT-RTX builds."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
CRNN_KWARGS = {"hidden_size": 32, "channels": [8, 16, 16, 16]}
ENCODER_CFG = dict(model_type="vit", image_size=[32, 96], patch_size=16, num_channels=3, hidden_size=32,
                   num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
DECODER_CFG = dict(model_type="trocr", vocab_size=40, d_model=48, decoder_layers=2, decoder_attention_heads=2,
                   decoder_ffn_dim=64, max_position_embeddings=64, bos_token_id=0, pad_token_id=1,
                   decoder_start_token_id=2)
ENCODER_IO = {"inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [3, 32, 96], "value_range": [-1, 1]}],
              "outputs": [{"name": "encoder_hidden_states", "dtype": "float32", "shape": [13, 48]}]}
DECODER_IO = {"inputs": [{"name": "decoder_input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1],
                          "opt_shape": [8], "max_shape": [16], "value_range": [0, 40]},
                         {"name": "encoder_hidden_states", "dtype": "float32", "shape": [13, 48]}],
              "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, 40]}]}

pytest.importorskip("tensorrt_rtx")
pytest.importorskip("modelopt")


def run(args) -> dict:
    """Runs trt-convert; returns the report."""
    from click.testing import CliRunner

    from trt_converters.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr
    out = Path(args[args.index("--output-dir") + 1])
    return json.loads(next(out.glob("*/report.json")).read_text())


def line_images(folder: Path, count: int = 12) -> Path:
    """PNG text-line-like images (dark strokes on light background) for calibration."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for index in range(count):
        image = np.full((32, int(rng.integers(60, 200))), 230, dtype=np.uint8)
        for x in range(4, image.shape[1] - 6, 7):
            top, bottom = sorted(rng.integers(2, 30, size=2))
            image[top:bottom + 1, x:x + 3] = rng.integers(0, 60)
        Image.fromarray(image).convert("RGB").save(folder / f"line{index}.png")
    return folder


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, VisionEncoderDecoderModel

    folder = tmp_path_factory.mktemp("ocr_precision")
    spec = importlib.util.spec_from_file_location("crnn_for_precision", ROOT / "model_scripts" / "ocr_crnn.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    torch.manual_seed(0)
    torch.save(module.CRNN(num_classes=37, **CRNN_KWARGS).state_dict(), folder / "crnn.pt")
    enc, dec = dict(ENCODER_CFG), dict(DECODER_CFG)
    model = VisionEncoderDecoderModel(
        encoder=AutoModel.from_config(AutoConfig.for_model(enc.pop("model_type"), **enc), attn_implementation="eager"),
        decoder=AutoModelForCausalLM.from_config(AutoConfig.for_model(dec.pop("model_type"), **dec),
                                                 attn_implementation="eager"))
    torch.save(model.state_dict(), folder / "trocr.pt")
    model.config.to_json_file(str(folder / "config.json"))
    return folder, line_images(folder / "calibration")


def test_crnn_int8_from_an_image_folder(tmp_path, checkpoints):
    folder, images = checkpoints
    report = run(["--config", ROOT / "configs" / "crnn_line.yaml", "--ckpt-path", folder / "crnn.pt",
                  "--model-kwargs", json.dumps(CRNN_KWARGS), "--generate-onnx", "--generate-trt", "--use-int8",
                  "--calib-data", images, "--output-dir", tmp_path])
    verify = report["stages"]["lower_int8"]["verify"]
    assert "held back from calibration" in verify["inputs"] and all(o["passed"] for o in verify["outputs"])
    assert report["stages"]["build"]["bytes"] > 0


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_trocr_encoder_lowered_and_built(tmp_path, checkpoints, precision):
    folder, images = checkpoints
    flags = ["--use-fp16"] if precision == "fp16" else ["--use-int8", "--calib-data", images]
    config_args = ["--config", ROOT / "configs" / "trocr_encoder.yaml", "--ckpt-path", folder / "trocr.pt",
                   "--model-io-config", json.dumps(ENCODER_IO), "--generate-onnx", "--generate-trt",
                   "--output-dir", tmp_path, *flags]
    report = run(config_args)
    lowered = report["stages"][f"lower_{precision}"]
    assert all(o["passed"] for o in lowered["verify"]["outputs"])
    assert report["stages"]["build"]["bytes"] > 0


def test_trocr_decoder_fp16_built(tmp_path, checkpoints):
    folder, _ = checkpoints
    report = run(["--config", ROOT / "configs" / "trocr_decoder.yaml", "--ckpt-path", folder / "trocr.pt",
                  "--model-io-config", json.dumps(DECODER_IO), "--generate-onnx", "--generate-trt", "--use-fp16",
                  "--output-dir", tmp_path])
    assert all(o["passed"] for o in report["stages"]["lower_fp16"]["verify"]["outputs"])
    assert report["stages"]["build"]["bytes"] > 0
