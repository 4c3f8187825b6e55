"""Resident memory of a conversion: each stage's peak (measured), and the run's peak (estimated up front and
compared with the memory this process may use).

A stage's peak is the process's high-water mark (VmHWM) from the stage's start, which writing "5" to
/proc/self/clear_refs resets (Linux), or the peak of a child process the stage ran (the ONNX Runtime verification
child reports its own; other children through getrusage(RUSAGE_CHILDREN)), whichever is larger. While a child
runs the parent holds its own memory too, so a stage's peak understates the sum by the parent's resident size at
that moment; the estimate below is fitted to peaks measured this way.
"""

from __future__ import annotations

import contextlib
import resource
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
MB = 2**20

_child_peaks_mb: list[float] = []  # peaks children reported of themselves (onnx_runner), read by StagePeaks


def vmhwm_mb(status_text: str | None = None) -> float | None:
    """The process's resident high-water mark in MiB from /proc/self/status (None where there is none)."""
    if status_text is None:
        try:
            status_text = STATUS.read_text()
        except OSError:
            return None
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            value, unit = line.split()[1:3]
            return int(value) * {"kB": 1024, "mB": MB}.get(unit, 1024) / MB
    return None


def reset_peak() -> bool:
    """Resets VmHWM to the current resident size; False where the kernel does not allow it."""
    try:
        CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def children_peak_mb() -> float:
    """The largest resident peak of any child process that ended so far (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def note_child_peak(mb: float) -> None:
    """A child process's own peak, as it reported it (its stage's peak counts it)."""
    _child_peaks_mb.append(float(mb))


class StagePeaks:
    """Each stage's peak resident MiB, measured around the stage's call (`measure`)."""

    def __init__(self) -> None:
        self.peaks: dict[str, float] = {}
        self.resettable = True

    @contextlib.contextmanager
    def measure(self, stage: str):
        self.resettable = reset_peak() and self.resettable
        children_before, reported_before = children_peak_mb(), len(_child_peaks_mb)
        try:
            yield
        finally:
            own = vmhwm_mb() or 0.0
            children = children_peak_mb()
            child = max([*_child_peaks_mb[reported_before:], children if children > children_before else 0.0])
            self.peaks[stage] = round(max(own, child), 1)

    def marked(self, entries: dict, stage: str) -> dict:
        """The report entries a stage made, each with the stage's `peak_rss_mb`."""
        if stage not in self.peaks:
            return entries
        return {name: {**entry, "peak_rss_mb": self.peaks[stage]} for name, entry in entries.items()}

    def as_report(self) -> dict:
        """The report's `memory` entry: each stage's peak and the run's (the largest)."""
        report = {"stages_peak_rss_mb": dict(self.peaks),
                  "process_peak_rss_mb": max(self.peaks.values(), default=0.0)}
        if not self.resettable:
            report["note"] = "VmHWM could not be reset here: each stage's figure is the process's peak so far"
        return report
