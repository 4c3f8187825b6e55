"""What served model.py files import, read statically (ast): the modules, the serving-runtime modules they pull in,
and the package versions constraints.txt pins."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = ROOT / "trt_converters" / "serving_runtime"
MODELS = sorted(p.parent.name for p in (ROOT / "triton_models").glob("*/model.py"))
PYTHON_BACKEND = {"triton_python_backend_utils", "c_python_backend_utils"}


def constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("#")[0].strip().split("==")
            pins[name.lower()] = version.split("+")[0]
    return pins


def imports(path: Path) -> tuple[set[str], set[str]]:
    """(top-level modules imported anywhere in the file, runtime modules imported)."""
    modules, runtime = set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import inside the runtime
                runtime.update([node.module] if node.module else [a.name for a in node.names])
            elif node.module == "serving_runtime":
                runtime.update(alias.name for alias in node.names)
            elif node.module.startswith("serving_runtime."):
                runtime.add(node.module.split(".")[1])
            else:
                modules.add(node.module.split(".")[0])
    modules.discard("serving_runtime")
    return modules, runtime


def served_files(model: str) -> list[Path]:
    """model.py and the runtime modules it imports, transitively (the package's __init__ included)."""
    model_py = ROOT / "triton_models" / model / "model.py"
    files, seen = [model_py], set()
    pending = sorted(imports(model_py)[1])
    pending += ["__init__"] if pending else []
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            files.append(RUNTIME / f"{module}.py")
            pending += sorted(imports(RUNTIME / f"{module}.py")[1])
    return files
