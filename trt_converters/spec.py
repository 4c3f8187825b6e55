"""The IO spec: what goes in and out of a model, in Triton's terms (shapes without the batch dim).

The original tool's `--model-io-config` JSON (`{"inputs": [{"name", "dtype", "shape"}], "outputs": [...]}`)
is this same structure; the optional fields add dynamic ranges, synthetic-data ranges and roles.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from trt_converters.errors import UserError

DType = Literal["float32", "float16", "bfloat16", "int64", "int32", "int8", "uint8", "bool"]

NUMPY_DTYPE_NAMES: dict[str, str] = {
    "float32": "float32", "float16": "float16", "bfloat16": "float32",  # numpy has no bfloat16
    "int64": "int64", "int32": "int32", "int8": "int8", "uint8": "uint8", "bool": "bool",
}
TRITON_DTYPES: dict[str, str] = {
    "float32": "TYPE_FP32", "float16": "TYPE_FP16", "bfloat16": "TYPE_BF16", "int64": "TYPE_INT64",
    "int32": "TYPE_INT32", "int8": "TYPE_INT8", "uint8": "TYPE_UINT8", "bool": "TYPE_BOOL",
}
DYNAMIC = -1
Role = Literal["ids", "mask", "token_type", "positions", "image", "features"]


class TensorSpec(BaseModel):
    """One input or output. `shape` excludes the batch dim; -1 marks a dynamic dim."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dtype: DType
    shape: list[int]
    min_shape: Optional[list[int]] = None
    opt_shape: Optional[list[int]] = None
    max_shape: Optional[list[int]] = None
    value_range: Optional[tuple[float, float]] = None
    role: Optional[Role] = None  # how synthetic inputs are drawn (synthetic_inputs.py); default: from name and dtype

    @field_validator("name")
    @classmethod
    def _name_is_identifier_like(cls, name: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.:/-]*", name):
            raise ValueError(f"tensor name {name!r} must start with a letter or '_' and hold no spaces")
        return name

    @field_validator("shape")
    @classmethod
    def _dims_positive_or_dynamic(cls, shape: list[int]) -> list[int]:
        bad = [d for d in shape if d != DYNAMIC and d < 1]
        if bad:
            raise ValueError(f"shape {shape}: each dim must be >= 1 or -1 (dynamic), got {bad[0]}")
        return shape

    @model_validator(mode="after")
    def _profile_shapes_consistent(self) -> "TensorSpec":
        given = {k: getattr(self, k) for k in ("min_shape", "opt_shape", "max_shape") if getattr(self, k)}
        for key, dims in given.items():
            if len(dims) != len(self.shape):
                raise ValueError(f"{key} {dims} has rank {len(dims)} but shape {self.shape} has rank {len(self.shape)}")
            for axis, (fixed, dim) in enumerate(zip(self.shape, dims)):
                if dim < 1:
                    raise ValueError(f"{key} {dims}: dim {axis} must be >= 1")
                if fixed != DYNAMIC and dim != fixed:
                    raise ValueError(f"{key} {dims}: dim {axis} is fixed to {fixed} by shape {self.shape}")
        ordered = [given.get(k) for k in ("min_shape", "opt_shape", "max_shape")]
        present = [d for d in ordered if d is not None]
        for low, high in zip(present, present[1:]):
            if any(a > b for a, b in zip(low, high)):
                raise ValueError(f"needs min_shape <= opt_shape <= max_shape, got {low} > {high}")
        if self.value_range is not None and not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range {list(self.value_range)} needs low < high")
        return self

    @property
    def is_dynamic(self) -> bool:
        return DYNAMIC in self.shape

    @property
    def numpy_dtype(self) -> str:
        return NUMPY_DTYPE_NAMES[self.dtype]

    @property
    def triton_dtype(self) -> str:
        return TRITON_DTYPES[self.dtype]


class IOSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    @model_validator(mode="after")
    def _names_unique(self) -> "IOSpec":
        if not self.inputs:
            raise ValueError("needs at least one input")
        if not self.outputs:
            raise ValueError("needs at least one output")
        names = [t.name for t in self.inputs + self.outputs]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"tensor names must be unique across inputs and outputs; repeated: {', '.join(duplicates)}")
        return self

    def input(self, name: str) -> TensorSpec:
        return next(t for t in self.inputs if t.name == name)

    def check_triton_inputs(self, names: list[str]) -> None:
        """UserError unless every name given to --triton-inputs is an input of this spec."""
        declared = [t.name for t in self.inputs]
        unknown = [name for name in names if name not in declared]
        if unknown:
            raise UserError(f"--triton-inputs names {unknown[0]!r}, which is not an input in --model-io-config "
                            f"({', '.join(declared)})")

    def with_inputs(self, names: list[str]) -> "IOSpec":
        """The same spec keeping only the named inputs, in the spec's order."""
        return IOSpec(inputs=[t for t in self.inputs if t.name in names], outputs=self.outputs)


def parse_io_config(value: "str | dict | IOSpec", *, base_dir: Path | None = None) -> IOSpec:
    """Accepts a JSON string, a path to a JSON/YAML file, or an already-parsed mapping."""
    if isinstance(value, IOSpec):
        return value
    if isinstance(value, str):
        value = _read_io_config_text(value, base_dir)
    if not isinstance(value, dict):
        raise UserError("--model-io-config must be a JSON object with 'inputs' and 'outputs' lists")
    try:
        return IOSpec.model_validate(value)
    except ValidationError as exc:
        raise UserError(f"--model-io-config: {describe_validation_error(exc)}") from None


def _read_io_config_text(text: str, base_dir: Path | None) -> dict:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            return json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise UserError(f"--model-io-config is not valid JSON ({exc.msg} at char {exc.pos}); "
                            "pass a JSON object or a path to a .json/.yaml file") from None
    path = Path(stripped)
    if not path.is_absolute() and base_dir is not None and not path.exists():
        path = base_dir / path
    if not path.is_file():
        raise UserError(f"--model-io-config: {stripped!r} is neither a JSON object nor an existing file")
    return load_mapping_file(path, what="--model-io-config")


def load_mapping_file(path: Path, *, what: str) -> dict:
    """Reads a JSON or YAML file holding a mapping."""
    import yaml

    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, json.JSONDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{what}: cannot read {path}: {first_line}") from None
    if not isinstance(data, dict):
        raise UserError(f"{what}: {path} must hold a mapping at the top level")
    return data


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's first error as one line: where it is, and what is wrong."""
    error = exc.errors()[0]
    location = ".".join(str(part) for part in error["loc"])
    message = error["msg"].removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


_SIZE_SUFFIXES = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
                  "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40}


def parse_byte_size(value: "str | int") -> int:
    """'1073741824', '1G', '512M', '1<<30' (as the original tool's docs wrote it) -> bytes."""
    if isinstance(value, int):
        size = value
    else:
        text = str(value).strip().replace(" ", "")
        shift = re.fullmatch(r"(\d+)<<(\d+)", text)
        suffixed = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", text)
        if shift:
            size = int(shift.group(1)) << int(shift.group(2))
        elif suffixed and suffixed.group(2).upper() in _SIZE_SUFFIXES:
            size = int(float(suffixed.group(1)) * _SIZE_SUFFIXES[suffixed.group(2).upper()])
        else:
            raise UserError(f"memory size {value!r} is not understood; use bytes or a K/M/G suffix, e.g. 2G")
    if size <= 0:
        raise UserError(f"memory size {value!r} must be positive")
    return size
