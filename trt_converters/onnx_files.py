"""ONNX graph files: saving a ModelProto (with a side file past protobuf's 2 GiB) and hashing a file."""

from __future__ import annotations

import hashlib
from pathlib import Path


def save_model(model, path: Path, *, limit: int = 2**31 - 1) -> None:
    """onnx.save, with tensors in a side file when the graph passes protobuf's 2 GiB limit (`limit` bytes).

    Serialized once: ByteSize() costs a whole serialization itself (about 1 s on RoBERTa-base's 500 MB)."""
    import onnx

    try:
        serialized = model.SerializeToString()
    except Exception:  # noqa: BLE001 - protobuf refuses messages over 2 GiB
        serialized = None
    if serialized is not None and len(serialized) <= limit:
        Path(path).write_bytes(serialized)
    else:
        onnx.save(model, str(path), save_as_external_data=True, location=Path(path).name + ".data")


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
