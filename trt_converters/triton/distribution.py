"""Where the Triton server lives: the nvidia-pytriton wheel (tritonserver 2.51, its libraries, the Python backend
and one backend stub per Python version) or a full Triton install, and the serving environment the python
backend's stub runs in (this interpreter's packages, with chosen modules made unimportable).
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from pathlib import Path
from typing import Sequence

from trt_converters.errors import UserError

_INSTALL_HINT = "install the server with `pip install nvidia-pytriton`"


@dataclasses.dataclass(frozen=True)
class TritonDistribution:
    """Paths inside the installed nvidia-pytriton wheel."""

    binary: Path
    libs: Path
    python_backend: Path
    python_stub: Path
    caches: Path
    # A full Triton install has a ready backend folder; the wheel's is assembled per start.
    backend_directory: Path | None = None


def find_installed_triton() -> TritonDistribution | None:
    """A full Triton install (e.g. /opt/tritonserver in NVIDIA's containers) with its python backend, else None."""
    candidates = [Path(p) for p in (shutil.which("tritonserver"),) if p] + [Path("/opt/tritonserver/bin/tritonserver")]
    for binary in candidates:
        root = binary.resolve().parent.parent
        backends = root / "backends"
        if binary.is_file() and (backends / "python" / "libtriton_python.so").is_file() and "pytriton" not in root.parts:
            return TritonDistribution(binary=binary, libs=root / "lib", python_backend=backends / "python",
                                      python_stub=backends / "python" / "triton_python_backend_stub",
                                      caches=root / "caches", backend_directory=backends)
    return None


def find_triton_distribution(*, prefer_installed: bool = False) -> TritonDistribution:
    """Locate tritonserver, its libraries, the Python backend and this Python's backend stub.

    With `prefer_installed`, a full Triton install (more backends: tensorrt, onnxruntime) wins over the wheel's.
    """
    import importlib.util

    if prefer_installed:
        installed = find_installed_triton()
        if installed is not None:
            return installed

    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the Triton server (nvidia-pytriton) is not installed: {_INSTALL_HINT}")
    package = Path(next(iter(spec.submodule_search_locations)))
    server_root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    dist = TritonDistribution(
        binary=server_root / "bin" / "tritonserver",
        libs=package.parent / "nvidia_pytriton.libs",
        python_backend=server_root / "backends" / "python",
        python_stub=server_root / "python_backend_stubs" / version / "triton_python_backend_stub",
        caches=server_root / "caches",
    )
    for label, path in (
        ("tritonserver binary", dist.binary),
        ("server libraries", dist.libs),
        ("python backend", dist.python_backend / "libtriton_python.so"),
        (f"python {version} backend stub", dist.python_stub),
    ):
        if not path.exists():
            raise UserError(f"{label} missing from the nvidia-pytriton install ({path}): {_INSTALL_HINT}")
    return dist


def find_tritonserver() -> Path:
    """Path of the `tritonserver` binary inside the installed nvidia-pytriton wheel."""
    return find_triton_distribution().binary


def serving_environment(root: Path, hidden_modules: Sequence[str]) -> Path:
    """A virtual environment at `root` over this one's packages, with `hidden_modules` unimportable; its bin/."""
    import site
    import sysconfig

    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    base = Path(getattr(sys, "_base_executable", sys.executable)).resolve()
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "python3", f"python{version}"):
        (bin_dir / name).symlink_to(base)
    (root / "pyvenv.cfg").write_text(f"home = {base.parent}\ninclude-system-site-packages = false\n"
                                     f"version = {sys.version.split()[0]}\n")
    packages = root / "lib" / f"python{version}" / "site-packages"
    packages.mkdir(parents=True)
    for module in hidden_modules:
        (packages / module).mkdir()
        (packages / module / "__init__.py").write_text(
            f"raise ModuleNotFoundError({module!r} + ' is hidden from served models (LocalTritonServer): a model.py '\n"
            f"                          'must not import it', name={module!r})\n")
    # Plain paths: their .pth files (an editable install's finder among them) are not processed.
    ours = [p for p in (*site.getsitepackages(), sysconfig.get_paths()["purelib"]) if Path(p).is_dir()]
    (packages / "serving_environment.pth").write_text("\n".join(dict.fromkeys(ours)) + "\n")
    return bin_dir


def interpreter_libdir() -> str:
    """The folder of this interpreter's shared libpython, or '' for a static build."""
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR") or ""
    soname = sysconfig.get_config_var("INSTSONAME") or ""
    return libdir if libdir and soname and (Path(libdir) / soname).exists() else ""
