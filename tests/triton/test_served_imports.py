"""What every served model.py imports: the standard library, the python backend, the serving runtime
copied beside it and the pip packages it declares in REQUIRES; never trt_converters. Static (ast), no
server: the servers in the pipeline tests prove the same by loading the models with trt_converters hidden."""

import ast
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

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


def _imports(path: Path) -> tuple[set[str], set[str]]:
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
    pending = sorted(_imports(model_py)[1])
    pending += ["__init__"] if pending else []
    while pending:
        module = pending.pop()
        if module not in seen:
            seen.add(module)
            files.append(RUNTIME / f"{module}.py")
            pending += sorted(_imports(RUNTIME / f"{module}.py")[1])
    return files


@pytest.mark.parametrize("model", MODELS)
def test_served_model_imports_only_what_it_declares(model):
    from trt_converters.triton.requirements import declared_requirements

    declared = set(declared_requirements(ROOT / "triton_models" / model / "model.py"))
    owners = packages_distributions()
    third_party = set()
    for path in served_files(model):
        modules, _ = _imports(path)
        assert "trt_converters" not in modules, f"{path.name} imports trt_converters"
        for module in modules - set(sys.stdlib_module_names) - PYTHON_BACKEND:
            assert module in owners, f"{path.name} imports {module}, which is not an installed package"
            third_party.update(d.lower() for d in owners[module])
    assert third_party <= declared, f"{model} imports {third_party - declared} without declaring it"
    assert declared <= set(constraint_pins()), "every declared package has a tested version"


def test_model_scripts_fall_back_to_the_copied_runtime():
    for script in (ROOT / "model_scripts").glob("*.py"):
        tree = ast.parse(script.read_text())
        for node in tree.body:  # module level: what the served PyTorch baseline executes on import
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("trt_converters"):
                pytest.fail(f"{script.name} imports {node.module} without a fallback")
