"""Shared fixtures for the YOLOX tests: the model script loaded by path, random-weight models, ONNX export."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
YOLOX_SCRIPT = REPO_ROOT / "model_scripts" / "yolox.py"
TEST_HW = (128, 128)


def load_yolox_script():
    spec = importlib.util.spec_from_file_location("yolox_model_script_under_test", YOLOX_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def yolox_script_path():
    return YOLOX_SCRIPT


@pytest.fixture(scope="session")
def yolox_script():
    return load_yolox_script()


def _random_yolox(script, variant: str, num_classes: int = 80, seed: int = 0):
    """Random weights that keep the output dependent on the input.

    Default PyTorch init shrinks activations layer by layer, so a random YOLOX predicts nearly the
    same scores for every image; He-normal convs and randomised BatchNorm statistics keep the scale,
    which makes numeric comparisons and NMS tests meaningful. Box regressions are damped so w/h stay
    within the image.
    """
    import torch

    torch.manual_seed(seed)
    model = script.YOLOX(variant=variant, num_classes=num_classes)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.0)
                module.bias.uniform_(-0.1, 0.1)
        for conv in model.head.reg_preds:
            conv.weight.mul_(0.05)
    return model.eval()


def _export_onnx(model, path: Path, hw=TEST_HW, sample_batch: int = 2) -> Path:
    """Legacy TorchScript exporter with a dynamic batch (about 10x faster here than dynamo=True)."""
    import torch

    sample = torch.rand(sample_batch, 3, *hw) * 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), str(path), input_names=["images"], output_names=["detections"],
                          dynamic_axes={"images": {0: "batch"}, "detections": {0: "batch"}},
                          opset_version=17, dynamo=False)
    return path


def num_anchors(hw=TEST_HW) -> int:
    return sum((hw[0] // s) * (hw[1] // s) for s in (8, 16, 32))


# Helpers are handed out as fixtures: `from conftest import ...` could pick another directory's conftest.
@pytest.fixture(scope="session")
def random_yolox(yolox_script):
    """random_yolox(variant, num_classes=80, seed=0) -> eval-mode YOLOX with random weights."""
    return lambda variant, num_classes=80, seed=0: _random_yolox(yolox_script, variant, num_classes, seed)


@pytest.fixture(scope="session")
def export_yolox_onnx():
    """export_yolox_onnx(model, path, hw=(128, 128), sample_batch=2) -> path of a dynamic-batch ONNX graph."""
    return _export_onnx
