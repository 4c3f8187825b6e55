"""Image decoding and validation for serving code (YOLOX, OCR).

Imports only numpy, PIL (lazily) and the serving runtime, so it runs beside a Triton python-backend `model.py`.
Every rejection raises `InvalidImageError` (a `triton_io.RequestError`: HTTP 400) with a one-line message meant
for the client. Images are read as the reference implementations read them (OpenCV's `imread` for YOLOX, PIL's
`convert` for the OCR models): alpha is dropped, palette and grayscale images are expanded, 16-bit samples are
scaled to 8 bits.
"""

from __future__ import annotations

import io

import numpy as np

from .triton_io import RequestError

CHANNEL_ORDERS = ("RGB", "BGR", "GRAY")
MAX_IMAGE_PIXELS = 64_000_000  # decompression-bomb guard; larger images are rejected


class InvalidImageError(RequestError):
    """The client sent something that is not a usable image."""


def decode_image(data: bytes, *, channel_order: str = "RGB") -> np.ndarray:
    """Encoded image bytes (JPEG, PNG, BMP, WebP, ...) -> uint8 array [H, W, 3] ([H, W, 1] for GRAY).

    Grayscale and palette images are expanded to 3 channels; an alpha channel is dropped (not composited), and
    16-bit samples keep their high byte, as `cv2.imread(path)` reads them.
    """
    _check_channel_order(channel_order)
    if isinstance(data, np.ndarray):
        data = data.tobytes()
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImageError(f"expected encoded image bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InvalidImageError("empty image: 0 bytes received")
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(bytes(data))) as image:
            width, height = image.size
            if width * height > MAX_IMAGE_PIXELS:
                raise InvalidImageError(f"image is {width}x{height}, above the {MAX_IMAGE_PIXELS} pixel limit")
            image.load()
            array = _eight_bit(image, "L" if channel_order == "GRAY" else "RGB")
    except InvalidImageError:
        raise
    except UnidentifiedImageError:
        raise InvalidImageError(f"cannot decode image: {len(data)} bytes in no known image format "
                                "(send JPEG, PNG, BMP or WebP bytes)") from None
    except Image.DecompressionBombError:
        raise InvalidImageError(f"image is above the {MAX_IMAGE_PIXELS} pixel limit") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImageError(f"cannot decode image: corrupt or truncated data ({_first_line(exc)})") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return _reorder(array, channel_order)


def _eight_bit(image, target: str) -> np.ndarray:
    """A decoded PIL image as uint8 in `target` mode ("RGB" or "L"); PIL's convert drops alpha."""
    if image.mode.startswith("I;16"):  # 16-bit grayscale: PIL's convert would clip at 255, OpenCV scales
        from PIL import Image

        image = Image.fromarray((np.asarray(image, dtype=np.uint16) >> 8).astype(np.uint8), "L")
    return np.asarray(image.convert(target), dtype=np.uint8)


def validate_hwc_image(array, *, channel_order: str = "RGB") -> np.ndarray:
    """A raw uint8 image [H, W, C] sent as a tensor -> contiguous uint8 [H, W, 3] ([H, W, 1] for GRAY).

    The array is taken to be in `channel_order` already; only layout, dtype and size are checked.
    """
    _check_channel_order(channel_order)
    array = np.asarray(array)
    expected = 1 if channel_order == "GRAY" else 3
    if array.ndim != 3:
        raise InvalidImageError(f"raw image must be uint8 [height, width, {expected}], got shape {list(array.shape)}")
    height, width, channels = array.shape
    if channels != expected:
        raise InvalidImageError(f"raw image has {channels} channels; expected {expected} "
                                f"({'grayscale' if expected == 1 else 'RGB/BGR'}) in [height, width, channels] layout")
    if height < 1 or width < 1:
        raise InvalidImageError(f"raw image is empty: shape {list(array.shape)}")
    if height * width > MAX_IMAGE_PIXELS:
        raise InvalidImageError(f"image is {width}x{height}, above the {MAX_IMAGE_PIXELS} pixel limit")
    if array.dtype != np.uint8:
        raise InvalidImageError(f"raw image must be uint8 (0..255), got {array.dtype}")
    return np.ascontiguousarray(array)


def _reorder(rgb_or_gray: np.ndarray, channel_order: str) -> np.ndarray:
    if channel_order == "BGR":
        return np.ascontiguousarray(rgb_or_gray[:, :, ::-1])
    return np.ascontiguousarray(rgb_or_gray)


def _check_channel_order(channel_order: str) -> None:
    if channel_order not in CHANNEL_ORDERS:
        raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
