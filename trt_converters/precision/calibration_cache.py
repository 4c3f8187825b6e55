"""The INT8 calibration cache: TensorRT's text format (first line a header, then `tensor: <big-endian float32
hex>`), with this toolkit's header recording what the scales were made from (FP32 graph, method, percentile,
outlier channels), so a cache is reused only for the same calibration."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

CACHE_HEADER_PREFIX = "TRT-trt_converters"


@dataclass(frozen=True)
class CacheHeader:
    method: str
    model_sha256: str
    shapes: str
    percentile: float | None = None  # percentile caches only; None in caches written before it was recorded
    # The outlier channels the scales were calibrated with (outlier_channels.py), kept in the header line,
    # which TensorRT's and ModelOpt's cache readers skip.
    outliers: dict = field(default_factory=dict)

    def describe(self) -> str:
        if self.method != "percentile":
            return self.method
        return f"percentile {self.percentile:g}" if self.percentile is not None else "percentile (value not recorded)"


def _encode_outliers(outliers: dict[str, list[int]]) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(outliers, separators=(",", ":")).encode()).decode()


def _decode_outliers(text: str) -> dict[str, list[int]]:
    import base64
    import json

    try:
        decoded = json.loads(base64.urlsafe_b64decode(text.encode()))
        return {str(k): [int(c) for c in v] for k, v in decoded.items()}
    except (ValueError, TypeError, AttributeError):
        return {}


def read_cache_header(cache: Path) -> CacheHeader | None:
    """The header of a cache this module wrote, or None for any other file."""
    try:
        first = cache.read_text().splitlines()[0]
    except (OSError, IndexError, UnicodeDecodeError):
        return None
    parts = first.split(" ")
    if not parts[0].startswith(CACHE_HEADER_PREFIX + "-"):
        return None
    fields = dict(p.split("=", 1) for p in parts[1:] if "=" in p)
    if "model-sha256" not in fields or "shapes" not in fields:
        return None
    try:
        percentile = float(fields["percentile"]) if "percentile" in fields else None
    except ValueError:
        percentile = None
    return CacheHeader(parts[0][len(CACHE_HEADER_PREFIX) + 1:], fields["model-sha256"], fields["shapes"], percentile,
                       _decode_outliers(fields.get("outlier-channels", "")))


def cache_serves(header: CacheHeader | None, model_hash: str, method: str, percentile: float) -> bool:
    """Whether a cache's scales are those this calibration would make: the same FP32 graph, the method asked for
    (any, for auto) and, for percentile scales, the same percentile (unknown in older caches: not reused)."""
    return header is not None and header.model_sha256 == model_hash and method in (header.method, "auto") \
        and (header.method != "percentile" or header.percentile == percentile)


def read_cache_scales(cache: Path) -> dict[str, float]:
    scales = {}
    for line in cache.read_text().splitlines()[1:]:
        name, _, value = line.rpartition(": ")
        scales[name] = struct.unpack("!f", bytes.fromhex(value))[0]
    return scales


def write_cache(cache: Path, header: CacheHeader, scales: dict[str, float]) -> None:
    first = f"{CACHE_HEADER_PREFIX}-{header.method} model-sha256={header.model_sha256} shapes={header.shapes}"
    if header.percentile is not None:
        first += f" percentile={header.percentile!r}"  # repr: read back as the same float
    if header.outliers:
        first += " outlier-channels=" + _encode_outliers(header.outliers)
    lines = [first] + [f"{name}: {struct.pack('!f', scale).hex()}" for name, scale in sorted(scales.items())]
    cache.parent.mkdir(parents=True, exist_ok=True)
    scratch = cache.with_name(cache.name + ".tmp")
    scratch.write_text("\n".join(lines) + "\n")
    scratch.replace(cache)


def copy_cache(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.with_name(target.name + ".tmp")
    scratch.write_bytes(source.read_bytes())
    scratch.replace(target)
