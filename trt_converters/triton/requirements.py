"""`<repo>/requirements.txt`: the pip packages the repository's python-backend models need.

Each `triton_models/*/model.py` declares its packages in `REQUIRES`; a served PyTorch baseline adds
the third-party packages its `model_script.py` imports. Versions are those installed here, i.e. constraints.txt's pins in an environment set up
by scripts/setup.sh (local labels such as `+cpu` dropped: the same release from PyPI).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Iterable

FILENAME = "requirements.txt"
_OURS = {"trt-converters", "trt_converters"}


def declared_requirements(model_py: Path) -> list[str]:
    """The `REQUIRES` tuple of a model.py, read without importing it; [] when it declares none."""
    tree = ast.parse(Path(model_py).read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "REQUIRES" for t in node.targets):
            return list(ast.literal_eval(node.value))
    return []


def imported_distributions(script: Path) -> list[str]:
    """Installed distributions whose top-level modules `script` imports (anywhere in it), ours excluded."""
    from importlib.metadata import packages_distributions

    modules = set()
    for node in ast.walk(ast.parse(Path(script).read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    owners = packages_distributions()
    return sorted({dist.lower() for module in modules for dist in owners.get(module, [])} - _OURS)


def model_requirements(model_dir: Path) -> set[str]:
    """Packages one model folder (`<repo>/<model>/`) needs: empty for non-python models."""
    needed: set[str] = set()
    for version in Path(model_dir).iterdir():
        if not (version / "model.py").is_file():
            continue
        needed.update(declared_requirements(version / "model.py"))
        if (version / "model_script.py").is_file():
            needed.update(imported_distributions(version / "model_script.py"))
    return needed


def render_requirements(packages: Iterable[str]) -> str:
    from importlib.metadata import PackageNotFoundError, version

    lines = ["# pip packages the python-backend models of this repository import (written by trt-convert)"]
    for name in sorted(set(packages)):
        try:
            lines.append(f"{name}=={version(name).split('+')[0]}")
        except PackageNotFoundError:
            lines.append(name)
    return "\n".join(lines) + "\n"


def repository_requirements(model_dirs: Iterable[Path]) -> str | None:
    """requirements.txt text for these model folders; None when none of them is a python model."""
    needed: set[str] = set()
    for folder in model_dirs:
        if Path(folder).is_dir():
            needed |= model_requirements(folder)
    return render_requirements(needed) if needed else None


def write_repository_requirements(repo: Path) -> Path | None:
    """(Re)write `<repo>/requirements.txt` from every model folder in `repo`; returns it, None if not needed."""
    from trt_converters.atomic import atomic_write_text

    repo = Path(repo)
    text = repository_requirements(p for p in repo.iterdir() if not p.name.startswith("."))
    if text is None:
        return None
    atomic_write_text(repo / FILENAME, text)
    return repo / FILENAME
