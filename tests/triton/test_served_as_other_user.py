"""A generated repository served by a Triton server that runs as another user, as in a container that mounts
the repository: root writes it with the default umask, the server runs as `nobody` and must read every file."""

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.models import model_flags
from tests.helpers.triton import triton_infer

pytestmark = pytest.mark.triton
SERVER_USER = "nobody"
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _server_python(folder: Path) -> Path:
    """A Python environment `nobody` can read, for the server's python-backend stub.

    This test environment's interpreter lives under /root (mode 0700), which no other user can read; a served
    deployment has its own Python. The system interpreter of the same version, plus this environment's
    packages through a .pth file, stands in for it. Only the server's environment is arranged here: the
    repository is exactly what trt-convert wrote.
    """
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    found = subprocess.run([str(SYSTEM_PYTHON), "-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"],
                           capture_output=True, text=True) if SYSTEM_PYTHON.exists() else None
    if found is None or found.stdout.strip() != version:
        pytest.skip(f"no system Python {version} that {SERVER_USER} can run")
    packages = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    hidden = [str(parent) for package in packages for parent in Path(package).parents
              if parent.stat().st_mode & 0o001 == 0]
    if hidden:  # e.g. a checkout under /root (0700): the server binary and numpy are out of nobody's reach
        pytest.skip(f"this environment's packages are not reachable by {SERVER_USER} ({hidden[0]} is not "
                    "searchable by other users)")
    venv = folder / "server-python"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / f"python{version}" / "site-packages"
    (site / "served-packages.pth").write_text("\n".join(sorted(packages)) + "\n")
    return venv / "bin"


def _uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def test_repository_written_by_root_serves_as_nobody(require_tritonserver, run_cli, tiny_checkpoints):
    import pwd

    import torch

    from tests.helpers.models import TINY_MODELS
    from trt_converters.loading import load_model
    from trt_converters.triton.server import LocalTritonServer, ServerLaunch

    if os.geteuid() != 0:
        pytest.skip("needs root: it writes the repository as root and starts the server as another user")
    try:
        server_uid = pwd.getpwnam(SERVER_USER).pw_uid
    except KeyError:
        pytest.skip(f"no user {SERVER_USER!r} here")
    mount = Path(tempfile.mkdtemp(prefix="trtc-mounted-"))
    try:
        mount.chmod(0o755)  # the mounted volume itself is readable; what trt-convert writes into it is under test
        python_bin = _server_python(mount)
        previous = os.umask(0o022)  # the default umask
        try:
            result = run_cli(model_flags("text", tiny_checkpoints) + [
                "--triton-repo", mount / "repo", "--output-dir", mount / "out", "--generate-onnx",
                "--generate-triton-config", "--triton-backend", "python_onnxruntime", "--instance-kind", "cpu"])
        finally:
            os.umask(previous)
        assert result.exit_code == 0, result.stderr
        model, _ = load_model(TINY_MODELS, "TinyTextModel", tiny_checkpoints["text"])
        ids = np.random.default_rng(7).integers(0, 50, size=(2, 9)).astype(np.int64)
        mask = np.ones((2, 9), dtype=np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        launch = ServerLaunch(user=SERVER_USER, env={"PATH": f"{python_bin}:/usr/bin:/bin"})
        with LocalTritonServer(mount / "repo", log_path=mount / "server.log", startup_timeout=180,
                               launch=launch) as server:
            assert _uid(server.pid) == server_uid
            assert server.model_ready("text")
            got = triton_infer("http", server.http_url, "text", {"input_ids": ids, "input_mask": mask}, "output")
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        report = json.loads((mount / "out" / "text" / "report.json").read_text())
        assert report["model_name"] == "text"
    finally:
        shutil.rmtree(mount, ignore_errors=True)
