"""Shapes with the batch dim: TensorRT optimization profiles, the export sample, and verification shapes.

`--input-size B S` keeps the original tool's meaning: B is the batch of the export sample (and the
profile's opt batch), S the sequence length that fills the dynamic dim of 1-D text inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

from trt_converters.errors import UserError
from trt_converters.spec import DYNAMIC, IOSpec, TensorSpec

DEFAULT_SEQUENCE_LENGTH = 128
DEFAULT_EXPORT_BATCH = 2  # not 1: exporters specialize size-1 dims


@dataclass(frozen=True)
class ShapeProfile:
    """Full shapes (batch first) for one input."""

    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]


def profiles_for(io: IOSpec, *, max_batch_size: int, input_size: tuple | None = None) -> dict[str, ShapeProfile]:
    batch, sequence = _split_input_size(input_size)
    opt_batch = min(batch or max_batch_size, max_batch_size)
    if batch is not None and batch > max_batch_size:
        raise UserError(f"--input-size batch {batch} is larger than --max-batch-size {max_batch_size}")
    text_defaults = next((t for t in io.inputs if len(t.shape) == 1 and t.is_dynamic and t.max_shape), None)
    return {t.name: _profile(t, opt_batch, max_batch_size, sequence, text_defaults) for t in io.inputs}


def _split_input_size(input_size: tuple | None) -> tuple[int | None, int | None]:
    if not input_size:
        return None, None
    values = list(input_size) + [None] * (2 - len(input_size))
    batch, sequence = values[:2]
    for value, what in ((batch, "batch"), (sequence, "sequence length")):
        if value is not None and int(value) < 1:
            raise UserError(f"--input-size {what} must be >= 1, got {value}")
    return (int(batch) if batch is not None else None), (int(sequence) if sequence is not None else None)


def _profile(tensor: TensorSpec, opt_batch: int, max_batch: int, sequence: int | None,
             text_defaults: TensorSpec | None) -> ShapeProfile:
    """Full-shape profile; 1-D dynamic inputs without their own ranges share those of another text input."""
    dims = tensor.shape
    if len(dims) == 1 and sequence is not None and dims[0] != DYNAMIC and dims[0] != sequence:
        raise UserError(f"--input-size sequence length {sequence} contradicts input {tensor.name!r} of fixed "
                        f"shape {dims}; make the shape [-1] or pass --input-size B {dims[0]}")
    if not tensor.is_dynamic:
        return ShapeProfile((1, *dims), (opt_batch, *dims), (max_batch, *dims))
    if len(dims) == 1:
        shared = text_defaults or tensor
        low = tensor.min_shape or shared.min_shape or [1]
        opt = tensor.opt_shape or ([sequence] if sequence else None) or shared.opt_shape or [DEFAULT_SEQUENCE_LENGTH]
        high = tensor.max_shape or shared.max_shape or [opt[0]]
    elif tensor.min_shape and tensor.max_shape:
        low, high = tensor.min_shape, tensor.max_shape
        opt = tensor.opt_shape or [h if d == DYNAMIC else d for d, h in zip(dims, high)]
    else:
        raise UserError(f"input {tensor.name!r} has dynamic dims in shape {dims}: give min_shape, opt_shape "
                        "and max_shape for it in the IO config")
    if not (low[0] <= opt[0] <= high[0]):
        raise UserError(f"input {tensor.name!r}: needs min <= opt <= max, got {low} / {opt} / {high}")
    return ShapeProfile((1, *low), (opt_batch, *opt), (max_batch, *high))


def export_sample_shapes(profiles: dict[str, ShapeProfile], input_size: tuple | None) -> dict[str, tuple[int, ...]]:
    batch, _ = _split_input_size(input_size)
    return {name: (min(batch or DEFAULT_EXPORT_BATCH, p.max[0]), *p.opt[1:]) for name, p in profiles.items()}


def verification_shapes(profiles: dict[str, ShapeProfile],
                        export_shapes: dict[str, tuple[int, ...]]) -> list[dict[str, tuple[int, ...]]]:
    """Three shape sets that differ from the export sample: the minimum, a middle one, the maximum."""
    sets = []
    for pick in ("min", "mid", "max"):
        chosen = {}
        for name, p in profiles.items():
            if pick == "min":
                chosen[name] = p.min
            elif pick == "max":
                chosen[name] = p.max
            else:
                chosen[name] = tuple(_middle(lo, hi, sample) for lo, hi, sample in zip(p.min, p.max, export_shapes[name]))
        sets.append(chosen)
    return sets


def _middle(low: int, high: int, avoid: int) -> int:
    if low == high:
        return low
    middle = (low + high + 1) // 2
    if middle == avoid:
        middle = middle + 1 if middle + 1 <= high else middle - 1
    return max(low, min(high, middle))


def synthetic_inputs(io: IOSpec, shapes: dict[str, tuple[int, ...]], *, seed: int = 0,
                     vocabulary: dict | None = None) -> dict:
    """Inputs drawn by role (padded masks, ids without special tokens, ...): see synthetic_inputs.py."""
    from trt_converters import synthetic_inputs as drawing

    return drawing.synthetic_inputs(io, shapes, seed=seed, vocabulary=vocabulary)
