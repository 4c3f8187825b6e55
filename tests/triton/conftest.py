"""Fixtures for tests that run the real Triton server from the nvidia-pytriton wheel."""

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

ORT_PYTHON_MODEL = ROOT / "triton_models" / "onnxruntime_python" / "model.py"


def pytest_configure(config):
    config.addinivalue_line("markers", "triton: starts a real tritonserver process (nvidia-pytriton)")


@pytest.fixture(scope="session")
def require_tritonserver():
    from trt_converters.errors import UserError
    from trt_converters.triton.server import find_triton_distribution

    try:
        return find_triton_distribution()
    except UserError as exc:
        pytest.skip(str(exc))
