"""Fixtures shared by every test folder: the tiny test models, their checkpoints, and a CLI runner.

Plain helpers live in tests/helpers/; the names below are imported from there for the fixtures.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.cli import CliResult
from tests.helpers.models import TINY_MODELS


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> dict[str, Path]:
    """state_dict checkpoints of the tiny models, in the formats users bring."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("tiny_models_for_checkpoints", TINY_MODELS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    folder = tmp_path_factory.mktemp("checkpoints")
    torch.manual_seed(0)
    paths = {"mlp": folder / "mlp.pt", "cnn": folder / "cnn.pth", "text": folder / "text.bin"}
    torch.save(module.TinyMLP().state_dict(), paths["mlp"])
    torch.save({"model": module.TinyCNN().state_dict(), "epoch": 3}, paths["cnn"])  # a training checkpoint
    torch.save({f"module.{k}": v for k, v in module.TinyTextModel().state_dict().items()}, paths["text"])
    return paths


@pytest.fixture
def run_cli():
    """Runs `trt-convert` in-process and returns exit code, stdout and stderr."""
    from click.testing import CliRunner

    from trt_converters.cli import main

    def run(args: list[str]) -> CliResult:
        result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return run
