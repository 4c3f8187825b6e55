"""What the stages of one run share, and how they speak."""

from __future__ import annotations

import contextlib
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

from trt_converters import progress
from trt_converters.atomic import Staging
from trt_converters.options import ConvertOptions
from trt_converters.spec import IOSpec


@dataclass(frozen=True)
class RunContext:
    """The run's options (paths, what to generate, verbosity), its staging area, IO spec and profiles."""

    options: ConvertOptions
    staging: Staging
    io: IOSpec
    profiles: dict

    def staged(self, final: Path) -> Path:
        """Where an artifact whose final path is `final` is written until the run succeeds."""
        return self.staging.path_for(final)


# A heartbeat line left open on the terminal (written without its newline, to be overwritten by the next one)
_open_line: list = []
CLEAR_LINE = "\r\x1b[K"


def log(message: str) -> None:
    _close_open_line()
    print(message, file=sys.stderr, flush=True)


def progress_lines(stage: str):
    """Long opaque calls inside the block show their progress as `[stage] ...` lines (progress.py); on a terminal
    each replaces the one before and the last (`done in`) stays."""
    stream = sys.stderr  # bound now: the exporters redirect sys.stderr while they run, for every thread

    def line(message: str) -> None:
        _close_open_line()
        print(f"[{stage}] {message}", file=stream, flush=True)

    def running(message: str) -> None:
        stream.write(f"{CLEAR_LINE}[{stage}] {message}")
        stream.flush()
        _open_line[:] = [stream]

    return progress.reporting(line, running if _is_terminal(stream) else None)


def _close_open_line() -> None:
    """Clears a heartbeat line still open, so that the next line starts at the left margin."""
    if _open_line:
        stream = _open_line.pop()
        stream.write(CLEAR_LINE)
        stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def warnings_logged():
    """Shows the stage's Python warnings as `warning:` lines (every time, not once per process)."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield messages
    for warning in caught:
        if issubclass(warning.category, UserWarning) and str(warning.message) not in messages:
            messages.append(str(warning.message))
            log(f"warning: {warning.message}")


def to_device(inputs: dict, device: str) -> dict:
    import torch

    return {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}


def file_facts(path: Path | None, *, final: Path | None = None) -> dict:
    """An artifact's report facts: its final path, size and SHA-256."""
    from trt_converters.onnx_files import file_sha256

    if path is None or not Path(path).is_file():
        return {}
    return {"path": str(final or path), "bytes": Path(path).stat().st_size, "sha256": file_sha256(path)}
