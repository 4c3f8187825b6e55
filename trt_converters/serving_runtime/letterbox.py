"""YOLOX-style letterbox: resize keeping the aspect ratio, pad bottom/right with a constant.

Standalone (numpy only) so it can be copied beside a Triton python-backend model.
The resize is bilinear with half-pixel centres and no antialiasing, the arithmetic of OpenCV's
INTER_LINEAR that official YOLOX preprocessing uses (results may differ from OpenCV by 1 level
from rounding, OpenCV works in fixed point).
"""

from __future__ import annotations

import numpy as np

YOLOX_PAD_VALUE = 114


def letterbox_ratio(image_hw: tuple[int, int], target_hw: tuple[int, int]) -> float:
    """Scale that fits an image of `image_hw` inside `target_hw` keeping its aspect ratio."""
    (h, w), (th, tw) = image_hw, target_hw
    if min(h, w, th, tw) < 1:
        raise ValueError(f"sizes must be positive, got image {image_hw} and target {target_hw}")
    return min(th / h, tw / w)


def resize_bilinear(image: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """uint8 [H, W, C] -> uint8 [out_h, out_w, C], bilinear, half-pixel centres, edge clamped."""
    h, w = image.shape[:2]
    out_h, out_w = out_hw
    if (out_h, out_w) == (h, w):
        return image.copy()
    y0, y1, wy = _axis_weights(h, out_h)
    x0, x1, wx = _axis_weights(w, out_w)
    # np.take on uint8 rows, then columns: much cheaper than fancy indexing or a float copy of a photo
    rows0, rows1 = np.take(image, y0, axis=0), np.take(image, y1, axis=0)
    wx, wy = wx[None, :, None], wy[:, None, None]
    top_left = np.take(rows0, x0, axis=1).astype(np.float32)
    bottom_left = np.take(rows1, x0, axis=1).astype(np.float32)
    top = top_left + (np.take(rows0, x1, axis=1) - top_left) * wx
    bottom = bottom_left + (np.take(rows1, x1, axis=1) - bottom_left) * wx
    out = top + (bottom - top) * wy
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _axis_weights(size: int, out_size: int):
    scale = size / out_size
    coords = (np.arange(out_size, dtype=np.float64) + 0.5) * scale - 0.5
    coords = np.clip(coords, 0, size - 1)
    low = np.floor(coords).astype(np.int64)
    high = np.minimum(low + 1, size - 1)
    return low, high, (coords - low).astype(np.float32)


def letterbox(image: np.ndarray, target_hw: tuple[int, int], pad_value: int = YOLOX_PAD_VALUE):
    """uint8 [H, W, C] -> (uint8 [th, tw, C] with the resized image top-left, ratio).

    Divide box coordinates predicted on the padded image by `ratio` to get original pixels.
    """
    if image.ndim != 3:
        raise ValueError(f"letterbox expects [H, W, C], got shape {list(image.shape)}")
    h, w, channels = image.shape
    ratio = letterbox_ratio((h, w), target_hw)
    new_h = max(1, min(target_hw[0], int(h * ratio)))
    new_w = max(1, min(target_hw[1], int(w * ratio)))
    padded = np.full((target_hw[0], target_hw[1], channels), pad_value, dtype=np.uint8)
    padded[:new_h, :new_w] = resize_bilinear(image, (new_h, new_w))
    return padded, ratio


def to_model_input(padded: np.ndarray) -> np.ndarray:
    """uint8 [H, W, C] -> float32 [C, H, W], values kept in 0..255 (YOLOX has no mean/std)."""
    return np.ascontiguousarray(padded.transpose(2, 0, 1), dtype=np.float32)


def letterbox_batch(images, target_hw: tuple[int, int], pad_value: int = YOLOX_PAD_VALUE):
    """List of uint8 [H, W, C] -> (float32 [B, C, th, tw], float32 ratios [B])."""
    if len(images) == 0:
        raise ValueError("letterbox_batch needs at least one image")
    tensors, ratios = [], []
    for image in images:
        padded, ratio = letterbox(image, target_hw, pad_value)
        tensors.append(to_model_input(padded))
        ratios.append(ratio)
    return np.stack(tensors), np.asarray(ratios, dtype=np.float32)
