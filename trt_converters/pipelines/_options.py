"""Pipeline options as each pipeline declares them: checked with the other conversion options, before any
model is loaded (unknown keys list the valid ones; a bad value is one line naming the option).

A pipeline module declares `OPTIONS = {name: Option(...)}`; checks that need the core model's IO spec
(e.g. an output name) stay in its writer.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import UserError

KINDS = ("int", "float", "bool", "str", "list", "mapping", "path", "any")


@dataclass(frozen=True)
class Option:
    kind: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] | None = None


def entry_names(entry_outputs: tuple[str, ...], text_input: bool = True) -> dict[str, Option]:
    """Options renaming the tensors of the entry model users call (so existing clients keep their names)."""
    options = {"output_names": Option("mapping", "rename entry outputs: {" + ", ".join(
        f"{name}: NEW" for name in entry_outputs) + "}")}
    if text_input:
        options["text_input"] = Option("str", "name of the entry model's string input (default text)")
    return options


def check_options(pipeline: str, declared: dict[str, Option], given: dict) -> None:
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise UserError(f"pipeline {pipeline}: unknown option {unknown[0]!r}; valid options: "
                        f"{', '.join(sorted(declared))}")
    for key, value in given.items():
        if value is not None:
            _check_value(pipeline, key, declared[key], value)


def _check_value(pipeline: str, key: str, option: Option, value) -> None:
    def fail(expected: str):
        raise UserError(f"pipeline {pipeline}: option {key}={value!r} must be {expected}")

    if option.kind in ("int", "float"):
        number = _number(value, int if option.kind == "int" else float)
        if number is None:
            fail("an integer" if option.kind == "int" else "a number")
        if option.minimum is not None and number < option.minimum:
            fail(f">= {option.minimum:g}")
        if option.maximum is not None and number > option.maximum:
            fail(f"<= {option.maximum:g}")
    elif option.kind == "bool":
        if not isinstance(value, bool) and str(value).strip().lower() not in ("1", "0", "true", "false", "yes",
                                                                                "no", "on", "off"):
            fail("true or false")
    elif option.kind == "str":
        if not isinstance(value, str):
            fail("a string")
        if option.choices and value.strip().upper() not in {c.upper() for c in option.choices}:
            fail(" or ".join(option.choices))
    elif option.kind == "list":
        if not isinstance(value, (list, str, int, float)):
            fail("a list (or comma-separated values)")
    elif option.kind == "mapping":
        parsed = value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError:
                parsed = None
        if not isinstance(parsed, dict):
            fail("a mapping, e.g. '{\"a\": \"b\"}'")
    elif option.kind == "path":
        if not Path(str(value)).exists():
            fail("an existing file or folder")


def _number(value, kind):
    if isinstance(value, bool):
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        return None
    if kind is int and isinstance(value, float) and value != number:
        return None
    return number


def renamed_outputs(request, defaults: list[str]) -> dict[str, str]:
    """Entry output name -> the name users asked for with option output_names."""
    given = request.options.get("output_names") or {}
    if isinstance(given, str):
        given = json.loads(given)
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise UserError(f"pipeline option output_names renames {unknown[0]!r}, which is not an output of the entry "
                        f"model ({', '.join(defaults)})")
    names = {name: str(given.get(name, name)) for name in defaults}
    if len(set(names.values())) != len(names):
        raise UserError(f"pipeline option output_names gives two outputs one name: {names}")
    for default, name in names.items():
        if name != default:
            _not_a_core_tensor(request, "output_names", name)
    return names


def text_input_name(request) -> str:
    name = str(request.options.get("text_input") or "text")
    _not_a_core_tensor(request, "text_input", name)
    return name


def _not_a_core_tensor(request, option: str, name: str) -> None:
    """Entry tensors share the ensemble's namespace with the core model's tensors."""
    core = [t.name for t in request.io.inputs + request.io.outputs]
    if name in core:
        raise UserError(f"pipeline option {option} names {name!r}, which is a core model tensor "
                        f"({', '.join(core)}); choose another name")
