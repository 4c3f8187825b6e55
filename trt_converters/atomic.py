"""Writing artifacts so that a failed or interrupted run leaves nothing half-written.

Single files go to a temporary name in the same folder and are renamed into place. A conversion run
stages every artifact under a private folder and `Staging.commit()` moves them all at the end, so a run
that fails at any stage changes no file the user has.

Artifacts get the modes a plain `open()`/`mkdir()` gives (0666/0777 less the umask), not the 0600/0700 of
temporary files: a Triton server running as another user must be able to read the repository.
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
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def current_umask() -> int:
    """The process umask (reading it means setting it; restored at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def apply_default_modes(path: Path) -> None:
    """Gives `path` (a file, or a folder and everything in it) the modes a plain open()/mkdir() would."""
    mask = current_umask()
    path = Path(path)
    entries = [path, *path.rglob("*")] if path.is_dir() and not path.is_symlink() else [path]
    for entry in entries:
        if entry.is_symlink():
            continue
        executable = entry.is_dir() or entry.stat().st_mode & 0o100
        os.chmod(entry, (0o777 if executable else 0o666) & ~mask)


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
            for item in (*companions, staged):
                apply_default_modes(item)
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
