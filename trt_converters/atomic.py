"""Writing artifacts so that a failed or interrupted run leaves nothing half-written.

Single files go to a temporary name in the same folder and are renamed into place. A conversion run
stages every artifact under a private folder and `Staging.commit()` moves them all at the end, so a run
that fails at any stage changes no file the user has.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


class Staging:
    """Collects (staged path, final path) pairs and moves them into place together on commit."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="trtc-stage-"))
        self._moves: list[tuple[Path, Path]] = []

    def path_for(self, final: Path) -> Path:
        """A fresh staged location that will become `final` (a file or a folder) on commit.

        Files written beside a staged file (e.g. ONNX external data, `model.onnx.data`) move with it.
        """
        staged = self.root / f"{len(self._moves)}" / Path(final).name
        staged.parent.mkdir(parents=True)
        self._moves.append((staged, Path(final)))
        return staged

    def commit(self) -> list[Path]:
        """Moves every staged artifact that exists into place, replacing what was there."""
        written = []
        for staged, final in self._moves:
            if not staged.exists():
                continue
            final.parent.mkdir(parents=True, exist_ok=True)
            companions = [p for p in staged.parent.iterdir() if p != staged] if staged.is_file() else []
            for companion in companions:
                _replace(companion, final.parent / companion.name)
            _replace(staged, final)
            written.extend([final, *(final.parent / c.name for c in companions)])
        return written

    def discard(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        self.discard()


def _replace(source: Path, target: Path) -> None:
    """Moves `source` onto `target`; an existing folder is swapped out, then removed."""
    if source.is_dir():
        backup = None
        if target.exists():
            backup = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, backup)
        shutil.move(str(source), str(target))
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    else:
        tmp = target.with_name(f".{target.name}.incoming-{os.getpid()}")
        shutil.move(str(source), str(tmp))
        os.replace(tmp, target)
