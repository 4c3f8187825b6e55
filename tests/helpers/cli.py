"""Running trt-convert in tests and checking what it left on disk."""

from __future__ import annotations

import hashlib
from pathlib import Path


class CliResult:
    def __init__(self, exit_code: int, stdout: str, stderr: str):
        self.exit_code, self.stdout, self.stderr = exit_code, stdout, stderr


def snapshot(folder: Path) -> dict[str, str]:
    """Every file and folder under `folder` with its mode and (files) content hash: compare before and after to
    prove nothing changed."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): f"{p.stat().st_mode:o} "
            + (hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "folder")
            for p in sorted(folder.rglob("*"))}
