"""What every served model.py imports: the standard library, the python backend, the serving runtime
copied beside it and the pip packages it declares in REQUIRES; never trt_converters. Static (ast), no
server: the servers in the pipeline tests prove the same by loading the models with trt_converters hidden."""

import ast
import sys
from importlib.metadata import packages_distributions

import pytest

from tests.helpers.served_models import MODELS, PYTHON_BACKEND, ROOT, constraint_pins, imports, served_files


@pytest.mark.parametrize("model", MODELS)
def test_served_model_imports_only_what_it_declares(model):
    from trt_converters.triton.requirements import declared_requirements

    declared = set(declared_requirements(ROOT / "triton_models" / model / "model.py"))
    owners = packages_distributions()
    third_party = set()
    for path in served_files(model):
        modules, _ = imports(path)
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
