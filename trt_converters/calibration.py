"""Calibration data for INT8: arrays keyed by input name, stacked along the batch dim.

Sources: a `.npz` file or a folder of `<input name>.npy` files; a text file (one sample a line)
tokenized with a Hugging Face tokenizer; a folder of images; or, with no source, synthetic data,
which calibrates the graph but says nothing about accuracy on real inputs (a loud warning).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.shapes import ShapeProfile, synthetic_inputs
from trt_converters.spec import DYNAMIC, IOSpec

DEFAULT_SYNTHETIC_SAMPLES = 16
SYNTHETIC_WARNING = "synthetic calibration data: INT8 scales and accuracy are not representative of real inputs"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
TEXT_SUFFIXES = (".txt", ".text", ".tsv", ".jsonl")
# Input-name fragment -> tokenizer output, first match wins ("input_mask" is an attention mask).
TOKENIZER_ROLES = (("token_type", "token_type_ids"), ("segment", "token_type_ids"), ("mask", "attention_mask"),
                   ("ids", "input_ids"))


def load_calibration_data(io: IOSpec, profiles: dict[str, ShapeProfile], *, source: Path | None,
                          samples: int | None, tokenizer_path: Path | None = None,
                          image_options: dict | None = None) -> dict:
    """Calibration arrays (input name -> array with the samples stacked along dim 0), checked against `io`."""
    if samples is not None and samples < 1:
        raise UserError(f"--calib-samples must be >= 1, got {samples}")
    if source is None:
        return synthetic_calibration_data(io, profiles, samples or DEFAULT_SYNTHETIC_SAMPLES)
    source = Path(source)
    kind = check_calibration_source(source, io)
    if kind == "arrays":
        arrays = _load_arrays(source, io)
    elif kind == "text":
        arrays = _tokenize_lines(source, io, profiles, tokenizer_path)
    else:
        arrays = _load_images(source, io, profiles, image_options or {})
    arrays = {name: value[:samples] if samples else value for name, value in arrays.items()}
    check_calibration_arrays(arrays, io, source)
    return arrays


def check_calibration_source(source: Path, io: IOSpec) -> str:
    """What can be checked without reading samples: the source exists, is of a known kind, and (arrays) names
    every input. Returns the kind: "arrays", "text" or "images"."""
    import numpy as np

    source = Path(source)
    if not source.exists():
        raise UserError(f"--calib-data {source} does not exist; pass a .npz file, a folder of .npy files, "
                        "a text file or a folder of images")
    kind = _source_kind(source)
    if kind == "arrays":
        if source.is_file():
            try:
                with np.load(source, allow_pickle=False) as saved:
                    names = list(saved.files)
            except (OSError, ValueError) as exc:
                raise UserError(f"calibration data {source} is not a readable .npz file ({exc})") from None
        else:
            names = [p.stem for p in source.glob("*.npy")]
        _check_array_names(source, names, io)
    return kind


def _check_array_names(source: Path, names, io: IOSpec) -> None:
    missing = [t.name for t in io.inputs if t.name not in names]
    if missing:
        raise UserError(f"calibration data {source} has no array for input(s) {', '.join(map(repr, missing))} "
                        f"(it holds {', '.join(sorted(names)) or 'nothing'}); save one array per input name")


def synthetic_calibration_data(io: IOSpec, profiles: dict[str, ShapeProfile], samples: int, *, seed: int = 0) -> dict:
    warnings.warn(SYNTHETIC_WARNING, UserWarning, stacklevel=3)
    shapes = {name: (samples, *profile.opt[1:]) for name, profile in profiles.items()}
    return synthetic_inputs(io, shapes, seed=seed)


def _source_kind(source: Path) -> str:
    if source.is_file():
        if source.suffix == ".npz":
            return "arrays"
        if source.suffix == ".npy":
            raise UserError(f"calibration data {source}: a single .npy file has no input name; put "
                            "<input name>.npy files in a folder or save a .npz keyed by input name")
        if source.suffix in TEXT_SUFFIXES:
            return "text"
        if source.suffix.lower() in IMAGE_SUFFIXES:
            raise UserError(f"calibration data {source}: pass the folder holding the images, not one image")
        raise UserError(f"calibration data {source}: unknown file type {source.suffix!r}; use .npz, a .txt file "
                        "(one sample a line), or a folder of .npy files or images")
    files = sorted(p for p in source.iterdir() if p.is_file() and not p.name.startswith("."))
    if any(p.suffix == ".npy" for p in files):
        return "arrays"
    if any(p.suffix.lower() in IMAGE_SUFFIXES for p in files):
        return "images"
    raise UserError(f"calibration folder {source} holds no .npy files and no images "
                    f"({', '.join(IMAGE_SUFFIXES)}); add calibration samples to it")


def _load_arrays(source: Path, io: IOSpec) -> dict:
    import numpy as np

    if source.is_file():
        try:
            with np.load(source, allow_pickle=False) as saved:
                arrays = {name: saved[name] for name in saved.files}
        except (OSError, ValueError) as exc:
            raise UserError(f"calibration data {source} is not a readable .npz file ({exc})") from None
    else:
        arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(source.glob("*.npy"))}
    _check_array_names(source, arrays, io)
    return {t.name: arrays[t.name] for t in io.inputs}


def check_calibration_arrays(arrays: dict, io: IOSpec, source: Path | str) -> None:
    """Rank, fixed dims, dtype kind and sample count; casts within a kind (float64 -> float32) in place."""
    import numpy as np

    counts = set()
    for tensor in io.inputs:
        value = arrays[tensor.name]
        expected_rank = len(tensor.shape) + 1
        if value.ndim != expected_rank:
            raise UserError(f"calibration data {source}: input {tensor.name!r} has shape {list(value.shape)} (rank "
                            f"{value.ndim}) but needs rank {expected_rank}: samples stacked on dim 0, then {tensor.shape}")
        for axis, (want, got) in enumerate(zip(tensor.shape, value.shape[1:]), start=1):
            if want != DYNAMIC and want != got:
                raise UserError(f"calibration data {source}: input {tensor.name!r} has size {got} on dim {axis} "
                                f"but the IO spec fixes it to {want}")
        wanted = np.dtype(tensor.numpy_dtype)
        if value.dtype != wanted:
            if _dtype_kind(value.dtype) != _dtype_kind(wanted):
                raise UserError(f"calibration data {source}: input {tensor.name!r} is {value.dtype} but the IO spec "
                                f"declares {tensor.dtype}; save it as {tensor.dtype}")
            arrays[tensor.name] = value.astype(wanted)
        counts.add(value.shape[0])
    if len(counts) != 1:
        raise UserError(f"calibration data {source}: inputs hold different sample counts {sorted(counts)}")
    if counts.pop() == 0:
        raise UserError(f"calibration data {source} holds no samples")


def _dtype_kind(dtype) -> str:
    return {"f": "float", "i": "int", "u": "int", "b": "bool"}.get(dtype.kind, dtype.kind)


def _tokenize_lines(source: Path, io: IOSpec, profiles: dict[str, ShapeProfile], tokenizer_path: Path | None) -> dict:
    import numpy as np

    if tokenizer_path is None:
        raise UserError(f"calibration data {source} is text: pass --tokenizer with the Hugging Face tokenizer "
                        "folder (or tokenizer.json) that the model was trained with")
    roles = {}
    for tensor in io.inputs:
        role = next((r for key, r in TOKENIZER_ROLES if key in tensor.name.lower()), None)
        if role is None or len(tensor.shape) != 1:
            raise UserError(f"text calibration data fills inputs named like input_ids/attention_mask/token_type_ids "
                            f"of shape [-1]; input {tensor.name!r} with shape {tensor.shape} is neither: pass a .npz")
        roles[tensor.name] = role
    lines = [line.rstrip("\n") for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise UserError(f"calibration text file {source} is empty; write one sample a line")
    length = profiles[io.inputs[0].name].opt[1]  # pad/truncate to the profile's opt length
    encoded = _encode(Path(tokenizer_path), lines, length)
    arrays = {}
    for tensor in io.inputs:
        values = encoded[roles[tensor.name]]
        arrays[tensor.name] = np.asarray(values).astype(tensor.numpy_dtype)
    return arrays


def _encode(tokenizer_path: Path, lines: list[str], length: int) -> dict:
    """input_ids / attention_mask / token_type_ids, each [len(lines), length], padded and truncated."""
    import numpy as np

    if not tokenizer_path.exists():
        raise UserError(f"tokenizer {tokenizer_path} does not exist; pass the tokenizer folder or tokenizer.json")
    if tokenizer_path.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(tokenizer_path))
        tokenizer.enable_truncation(length)
        tokenizer.enable_padding(length=length)
        batch = tokenizer.encode_batch(lines)
        return {"input_ids": np.array([e.ids for e in batch]),
                "attention_mask": np.array([e.attention_mask for e in batch]),
                "token_type_ids": np.array([e.type_ids for e in batch])}
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_path), local_files_only=True)
    except (OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load a tokenizer from {tokenizer_path}: {first}") from None
    batch = tokenizer(lines, padding="max_length", truncation=True, max_length=length, return_tensors="np",
                      return_token_type_ids=True, return_attention_mask=True)
    return {key: np.asarray(batch[key]) for key in ("input_ids", "attention_mask", "token_type_ids")}


def _load_images(source: Path, io: IOSpec, profiles: dict[str, ShapeProfile], options: dict) -> dict:
    import numpy as np
    from PIL import Image

    if len(io.inputs) != 1 or len(io.inputs[0].shape) != 3 or not io.inputs[0].dtype.startswith("float"):
        raise UserError("image calibration data fills one float input of shape [C, H, W] (or [H, W, C] with "
                        "image_options layout 'nhwc'); this model's inputs need a .npz instead")
    unknown = set(options) - {"scale", "channels", "mean", "std", "layout"}
    if unknown:
        raise UserError(f"unknown image option(s) {', '.join(sorted(unknown))}; use scale, channels, mean, std, layout")
    tensor = io.inputs[0]
    layout = options.get("layout", "nchw")
    if layout not in ("nchw", "nhwc"):
        raise UserError(f"image option layout {layout!r} must be 'nchw' or 'nhwc'")
    opt = profiles[tensor.name].opt
    channels_count, height, width = (opt[1], opt[2], opt[3]) if layout == "nchw" else (opt[3], opt[1], opt[2])
    if channels_count not in (1, 3):
        raise UserError(f"input {tensor.name!r} has {channels_count} channels; images give 1 or 3 "
                        "(set image_options layout to 'nhwc' if channels come last)")
    scale = float(options.get("scale", 255))
    order = options.get("channels", "rgb")
    if order not in ("rgb", "bgr"):
        raise UserError(f"image option channels {order!r} must be 'rgb' or 'bgr'")
    mean = np.asarray(options.get("mean", [0.0] * channels_count), dtype=np.float32)
    std = np.asarray(options.get("std", [1.0] * channels_count), dtype=np.float32)
    if mean.shape != (channels_count,) or std.shape != (channels_count,) or (std == 0).any():
        raise UserError(f"image options mean and std need {channels_count} values each, std non-zero")
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    images = []
    for path in files:
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels_count == 1 else "RGB").resize((width, height), Image.BILINEAR)
                pixels = np.asarray(image, dtype=np.float32).reshape(height, width, channels_count)
        except OSError as exc:
            raise UserError(f"cannot read calibration image {path}: {exc}") from None
        if order == "bgr":
            pixels = pixels[..., ::-1]
        pixels = (pixels / scale - mean) / std
        images.append(pixels.transpose(2, 0, 1) if layout == "nchw" else pixels)
    return {tensor.name: np.stack(images).astype(tensor.numpy_dtype)}
