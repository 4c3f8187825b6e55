"""Synthetic inputs drawn by role, so that export, verification and calibration exercise the model.

Each input has a role: the IO config's `role`, else one inferred from its name and dtype
(`infer_role`). Text inputs of one draw share per-row lengths, as a tokenizer's batch would:

- `mask`: per-row prefixes of ones (one full row, one short row, the rest random lengths), zeros after;
  float masks hold exactly 0.0 and 1.0. No row is fully masked: a tokenizer always keeps at least one
  token ([CLS]/<s>), and a fully masked row is a case the model was never meant to compute (attention
  over nothing; FP16 cannot hold the -3.4e38 fills some models use there).
- `ids`: uniform over the vocabulary (`value_range`, [low, high), else the checkpoint's config.json
  vocab_size) without the special token ids;
  padded positions hold the pad id when it is known.
- `token_type`: 0, with a second segment (1) in the second half of the real tokens of every other row
  when the range allows a 1.
- `positions`: 0, 1, 2, ... per row.
- `image` / `features`: uniform over `value_range` (default [0, 1) for floats, [0, 2) for integers).

An explicit `value_range` whose low end is >= 1 on a mask means "no padding" and gives all ones.
"""

from __future__ import annotations

import re

from trt_converters.spec import IOSpec, TensorSpec

ROLES = ("ids", "mask", "token_type", "positions", "image", "features")
FULLY_MASKED_ROWS_NOTE = ("no synthetic row is fully masked: real inputs always keep at least one token, and "
                          "attention over nothing is not a case the model computes")


def infer_role(tensor: TensorSpec) -> str:
    """The IO config's `role`, else: mask / token_type / positions / ids by name, image for float C,H,W."""
    if tensor.role is not None:
        return tensor.role
    name = tensor.name.lower()
    if "mask" in name:
        return "mask"
    if "token_type" in name or "segment" in name:
        return "token_type"
    if "position" in name:
        return "positions"
    if re.search(r"(^|_)ids?$", name) or "input_ids" in name or "token_ids" in name:
        return "ids"
    is_float = tensor.dtype.startswith(("float", "bfloat"))
    if is_float and (len(tensor.shape) == 3 or "pixel" in name or "image" in name):
        return "image"
    return "features"


def _is_float(tensor: TensorSpec) -> bool:
    return tensor.dtype.startswith(("float", "bfloat"))


def _range(tensor: TensorSpec, vocabulary: dict | None = None) -> tuple[float, float]:
    if tensor.value_range is not None:
        return tensor.value_range
    if vocabulary and vocabulary.get("size") and infer_role(tensor) == "ids":
        return (0, vocabulary["size"])
    return (0.0, 1.0) if _is_float(tensor) else (0, 2)


def row_lengths(batch: int, sequence: int, rng) -> list[int]:
    """Real-token counts per row: one full row, one short row, the rest random; never 0."""
    short = max(1, sequence // 8)
    if batch == 1:
        return [int(rng.integers(1, sequence + 1))]
    lengths = [sequence, short] + [int(x) for x in rng.integers(1, sequence + 1, size=batch - 2)]
    return lengths


def _allowed_ids(low: int, high: int, vocabulary: frozenset) -> list[int] | None:
    """The special ids inside [low, high) when leaving them out still leaves ids to draw; else None."""
    inside = sorted(i for i in vocabulary if low <= i < high)
    return inside if inside and len(inside) < high - low else None


def _draw_ids(rng, low: int, high: int, shape, special: list[int] | None):
    import numpy as np

    if not special:
        return rng.integers(low, high, size=shape)
    values = rng.integers(low, high - len(special), size=shape)
    for sid in special:  # ascending: shift past each left-out id in turn
        values = np.where(values >= sid, values + 1, values)
    return values


def synthetic_inputs(io: IOSpec, shapes: dict[str, tuple[int, ...]], *, seed: int = 0,
                     vocabulary: dict | None = None) -> dict:
    """One array per input at the given full shapes (batch first). `vocabulary` (from `vocabulary_of`): the
    special ids to leave out, the pad id, and the vocabulary size for ids without a value_range."""
    import numpy as np

    rng = np.random.default_rng(seed)
    vocabulary = vocabulary or {}
    lengths_by_shape: dict[tuple[int, int], list[int]] = {}

    def lengths_for(shape) -> list[int]:
        key = (int(shape[0]), int(shape[-1]))
        if key not in lengths_by_shape:
            lengths_by_shape[key] = row_lengths(key[0], key[1], rng)
        return lengths_by_shape[key]

    def real_positions(shape):
        """A boolean array of `shape`: True where the token is real (prefix of each row's length)."""
        lengths = np.asarray(lengths_for(shape)).reshape((shape[0],) + (1,) * (len(shape) - 1))
        return np.broadcast_to(np.arange(shape[-1]), shape) < lengths

    arrays = {}
    text_roles = ("mask", "ids", "token_type", "positions")
    for tensor in sorted(io.inputs, key=lambda t: infer_role(t) != "mask"):  # masks first: they set the lengths
        shape = tuple(shapes[tensor.name])
        role = infer_role(tensor)
        if role in text_roles and len(shape) < 2:
            role = "features"  # no sequence axis to pad
        arrays[tensor.name] = _draw(tensor, role, shape, rng, real_positions, vocabulary).astype(tensor.numpy_dtype)
    return {t.name: arrays[t.name] for t in io.inputs}


def _draw(tensor: TensorSpec, role: str, shape, rng, real_positions, vocabulary: dict):
    import numpy as np

    low, high = _range(tensor, vocabulary)
    if role == "mask":
        if tensor.value_range is not None and tensor.value_range[0] >= 1:
            return np.ones(shape)
        return real_positions(shape).astype(np.float64)
    if role == "ids":
        low, high = int(low), int(high)
        values = _draw_ids(rng, low, high, shape, _allowed_ids(low, high, frozenset(vocabulary.get("all", ()))))
        pad = vocabulary.get("pad")
        if pad is not None and low <= pad < high:
            values = np.where(real_positions(shape), values, pad)
        return values
    if role == "token_type":
        allows_second = tensor.value_range is None or high > 1 or (_is_float(tensor) and high >= 1)
        types = np.zeros(shape)
        if allows_second:
            real = real_positions(shape)
            split = (real.sum(axis=-1) // 2)[..., None]
            second = (np.broadcast_to(np.arange(shape[-1]), shape) >= np.maximum(split, 1)) & real
            odd_rows = (np.arange(shape[0]) % 2 == 1).reshape((shape[0],) + (1,) * (len(shape) - 1))
            types = np.where(second & odd_rows, 1, 0)
        return types
    if role == "positions":
        return np.minimum(np.broadcast_to(np.arange(shape[-1]), shape), max(int(high) - 1, 0))
    if tensor.dtype == "bool":
        return rng.integers(0, 2, size=shape)
    if not _is_float(tensor):
        return rng.integers(int(low), int(high), size=shape)
    return rng.uniform(low, high, size=shape)


def drawn_as(io: IOSpec, vocabulary: dict | None = None) -> dict[str, str]:
    """How `synthetic_inputs` draws each input, for the report."""
    vocabulary = vocabulary or {}
    described = {}
    for tensor in io.inputs:
        role = infer_role(tensor)
        low, high = _range(tensor, vocabulary)
        source = "role from the IO config" if tensor.role else "role inferred from name and dtype"
        if role == "mask" and tensor.value_range is not None and tensor.value_range[0] >= 1:
            text = f"mask: all ones (value_range {list(tensor.value_range)}): no padded position is checked"
        elif role == "mask":
            text = ("mask: per-row prefixes of ones, zeros after (one full row, one short row, the rest random "
                    f"lengths); {FULLY_MASKED_ROWS_NOTE}")
        elif role == "ids":
            left_out = _allowed_ids(int(low), int(high), frozenset(vocabulary.get("all", ())))
            text = f"ids: uniform over [{int(low)}, {int(high)})"
            text += f" without special ids {left_out}" if left_out else " (no special ids known)"
            if vocabulary.get("pad") is not None:
                text += f"; padded positions hold the pad id {vocabulary['pad']}"
        elif role == "token_type":
            text = "token_type: 0, with a second segment (1) in every other row"
        elif role == "positions":
            text = "positions: 0, 1, 2, ... per row"
        else:
            text = f"{role}: uniform over [{low:g}, {high:g})"
        described[tensor.name] = f"{text} ({source})"
    return described


_SPECIAL_ID_FIELDS = ("pad_token_id", "bos_token_id", "eos_token_id", "sep_token_id", "cls_token_id",
                      "unk_token_id", "mask_token_id", "decoder_start_token_id")


def vocabulary_of(*folders) -> dict:
    """{"pad": id or None, "all": sorted special ids, "size": vocab_size or None} from the config.json and
    tokenizer.json found in `folders` (files or folders; None is skipped)."""
    import json
    from pathlib import Path

    found: set[int] = set()
    pad = size = None
    for folder in folders:
        if folder is None:
            continue
        folder = Path(folder)
        folder = folder if folder.is_dir() else folder.parent
        config, tokenizer = folder / "config.json", folder / "tokenizer.json"
        try:
            fields = json.loads(config.read_text()) if config.is_file() else {}
            tokens = json.loads(tokenizer.read_text()) if tokenizer.is_file() else {}
        except (OSError, ValueError):
            continue
        for key in _SPECIAL_ID_FIELDS:
            if isinstance(fields.get(key), int) and fields[key] >= 0:
                found.add(fields[key])
        if pad is None and isinstance(fields.get("pad_token_id"), int) and fields["pad_token_id"] >= 0:
            pad = fields["pad_token_id"]
        if size is None and isinstance(fields.get("vocab_size"), int) and fields["vocab_size"] > 0:
            size = fields["vocab_size"]
        for entry in tokens.get("added_tokens") or []:
            if entry.get("special") and isinstance(entry.get("id"), int):
                found.add(entry["id"])
    return {"pad": pad, "all": sorted(found), "size": size}
