"""The package's shape (docs/design.md, "Code shape"): no function takes more than 8 parameters (click commands,
whose parameters are their flags, aside; self/cls not counted), and no module is over 500 lines."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "trt_converters"
MAX_PARAMETERS = 8
MAX_LINES = 500


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _is_click_command(function: ast.AST) -> bool:
    """Decorated with click (click.command, click.option, a list of options applied by a helper, ...)."""
    for decorator in function.decorator_list:
        text = ast.unparse(decorator)
        if "click." in text or text.startswith(("_option", "_apply", "option")):
            return True
    return False


def _parameter_count(function: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    arguments = function.args
    names = [a.arg for a in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]]
    names += [a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None]
    return len([name for name in names if name not in ("self", "cls")])


def test_no_function_takes_more_than_eight_parameters():
    violations = []
    for module in _modules():
        tree = ast.parse(module.read_text(encoding="utf-8"), filename=str(module))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not _is_click_command(node):
                count = _parameter_count(node)
                if count > MAX_PARAMETERS:
                    violations.append(f"{module.relative_to(PACKAGE.parent)}:{node.lineno} {node.name}() takes "
                                      f"{count} parameters")
    assert not violations, f"functions over {MAX_PARAMETERS} parameters:\n" + "\n".join(violations)


def test_no_module_is_over_500_lines():
    violations = [f"{module.relative_to(PACKAGE.parent)}: {lines} lines" for module in _modules()
                  if (lines := len(module.read_text(encoding="utf-8").splitlines())) > MAX_LINES]
    assert not violations, f"modules over {MAX_LINES} lines:\n" + "\n".join(violations)


def test_the_checks_see_a_violation(tmp_path):
    """The walk counts what it should: keyword-only and *args parameters count, self does not."""
    tree = ast.parse("class A:\n    def f(self, a, b, c, d, e, f, g, *rest, h=1): pass\n"
                     "def g(a, b, c, d, e, f, g, h): pass\n")
    counts = {node.name: _parameter_count(node) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert counts == {"f": 9, "g": 8}
