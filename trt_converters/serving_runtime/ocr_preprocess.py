"""Text-line images -> OCR model inputs, and generated ids -> text (CRNN and TrOCR BLS models).

`options` is the dict the pipeline writers (trt_converters/pipelines/crnn.py, trocr.py) validate
and store in the BLS model's `pipeline_options` parameter.
"""
from __future__ import annotations

import math

import numpy as np

from .images import InvalidImageError, decode_image, validate_hwc_image
from .ocr_decoding import ids_to_text, strip_special_tokens


def resize_line(image: np.ndarray, options: dict) -> np.ndarray:
    """uint8 [H, W, C] -> float32 [C, image_height, W'] with W' keeping the aspect ratio (clamped)."""
    from PIL import Image

    height = options["image_height"]
    src_h, src_w = image.shape[:2]
    width = max(1, round(src_w * height / src_h))
    width = max(width, options["min_width"])
    if options["max_width"] is not None:
        width = min(width, options["max_width"])
    mode = "L" if image.shape[2] == 1 else "RGB"
    pil = Image.fromarray(image[:, :, 0] if mode == "L" else image, mode)
    resized = np.asarray(pil.resize((width, height), Image.BILINEAR), dtype=np.float32) / 255.0
    if resized.ndim == 2:
        resized = resized[:, :, None]
    if options["mean"] is not None:
        resized = resized - np.asarray(options["mean"], dtype=np.float32)
    if options["std"] is not None:
        resized = resized / np.asarray(options["std"], dtype=np.float32)
    return np.ascontiguousarray(resized.transpose(2, 0, 1))


def batch_lines(images: list[np.ndarray], options: dict) -> tuple[np.ndarray, list[int]]:
    """uint8 HWC images -> (float32 [B, C, H, W_pad], CTC steps valid for each line)."""
    lines = [resize_line(image, options) for image in images]
    step = options["width_downsample"]
    padded_width = step * math.ceil(max(line.shape[2] for line in lines) / step)
    channels, height = lines[0].shape[:2]
    fill = options["pad_value"]
    if options["mean"] is not None:
        fill = (fill - np.asarray(options["mean"], dtype=np.float32))
    if options["std"] is not None:
        fill = fill / np.asarray(options["std"], dtype=np.float32)
    batch = np.empty((len(lines), channels, height, padded_width), dtype=np.float32)
    batch[...] = np.asarray(fill, dtype=np.float32).reshape(-1, 1, 1)
    for row, line in zip(batch, lines):
        row[:, :, : line.shape[2]] = line
    return batch, [line.shape[2] // step for line in lines]


def core_batches(images: list[np.ndarray], options: dict) -> list[tuple[np.ndarray, list[int]]]:
    """The core-model calls for one request's lines, in order: one padded batch, or one per line."""
    if options.get("pad_batches", True):
        return [batch_lines(images, options)]
    return [batch_lines([image], options) for image in images]


def images_from_inputs(encoded, raw, *, channel_order: str) -> list[np.ndarray]:
    """A request's `image` ([B, 1] bytes) or `image_raw` ([B, H, W, C] uint8) -> uint8 HWC images.

    Raises InvalidImageError (a ValueError) with a message for the client.
    """
    if (encoded is None) == (raw is None):
        raise InvalidImageError("send exactly one of the inputs 'image' (encoded bytes) or 'image_raw' (uint8 HWC)")
    if encoded is not None:
        return [decode_image(item, channel_order=channel_order) for item in np.asarray(encoded).reshape(-1)]
    raw = np.asarray(raw)
    if raw.ndim != 4:
        raise InvalidImageError(f"image_raw must be uint8 [batch, height, width, channels], got shape {list(raw.shape)}")
    return [validate_hwc_image(item, channel_order=channel_order) for item in raw]


def preprocess_images(images: list[np.ndarray], options: dict) -> np.ndarray:
    """uint8 RGB HWC images -> float32 [B, 3, H, W]: resize to image_size, scale to [0, 1], normalize."""
    from PIL import Image

    height, width = options["image_size"]
    mean = np.asarray(options["mean"], dtype=np.float32)
    std = np.asarray(options["std"], dtype=np.float32)
    batch = np.empty((len(images), 3, height, width), dtype=np.float32)
    for row, image in zip(batch, images):
        resized = np.asarray(Image.fromarray(image, "RGB").resize((width, height), Image.BILINEAR), dtype=np.float32)
        row[...] = ((resized / 255.0 - mean) / std).transpose(2, 0, 1)
    return batch


def tokens_to_text(rows, options: dict, tokenizer=None) -> list[str]:
    """Generated id rows -> strings: drop the start token, stop at eos, map ids to text."""
    texts = []
    for row in rows:
        ids = strip_special_tokens(row, start_token_id=options["start_token_id"],
                                   eos_token_id=options["eos_token_id"], pad_token_id=options["pad_token_id"])
        texts.append(tokenizer.decode(ids, skip_special_tokens=True) if tokenizer else ids_to_text(ids, options["vocab"]))
    return texts
