"""Elapsed time and time left for a long call that reports nothing itself (AutoCast, a ModelOpt calibration, an
export).

The stage that owns the terminal says where the lines go (`reporting`, in convert.py); a call that may run long
wraps itself in `heartbeat` with an estimate of its seconds. Nothing is shown unless the call is still running
after FIRST_LINE_S; then a line every EVERY_S (plain lines: logs that are not a terminal stay readable) and one
when it ends, which says how good the estimate was. On a terminal the running lines replace each other
(`reporting`'s `running`), so a stage keeps one line there. Outside `reporting` (library use, tests) nothing is
printed.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Callable

FIRST_LINE_S = 10.0
EVERY_S = 10.0

_reporter: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("progress_reporter", default=None)


@contextlib.contextmanager
def reporting(log: Callable[[str], None], running: Callable[[str], None] | None = None):
    """Heartbeats inside the block go to `log` (e.g. convert.log with the stage's `[lower]` prefix); `running`,
    where given, shows the lines of a call still running instead (a terminal overwrites them in place)."""
    token = _reporter.set((log, running or log))
    try:
        yield
    finally:
        _reporter.reset(token)


def progress_line(label: str, elapsed: float, expected: float | None) -> str:
    """`label: 20 s so far, about 6 s left`; without an estimate the elapsed time only; past it, by how much."""
    said = f"{label}: {elapsed:.0f} s so far"
    if expected is None:
        return said
    if elapsed < expected:
        return f"{said}, about {max(1, round(expected - elapsed))} s left"
    return f"{said}, past the {expected:.0f} s estimated"


@contextlib.contextmanager
def heartbeat(label: str, expected_s: float | None = None, *, clock: Callable[[], float] = time.monotonic,
              first_s: float = FIRST_LINE_S, every_s: float = EVERY_S, poll_s: float = 1.0):
    """Shows `progress_line` from a helper thread while the block runs long (see the module docstring)."""
    from trt_converters.threads import beside

    reporter = _reporter.get()
    if reporter is None:
        yield
        return
    log, running = reporter
    started = clock()
    shown: list[float] = []

    def beat(stop) -> None:
        due = first_s
        while not stop.wait(poll_s):
            elapsed = clock() - started
            if elapsed >= due:
                running(progress_line(label, elapsed, expected_s))
                shown.append(elapsed)
                due = elapsed + every_s

    with beside(beat):
        yield
    if shown:
        estimated = f" (estimated {expected_s:.0f} s)" if expected_s is not None else ""
        log(f"{label}: done in {clock() - started:.0f} s{estimated}")


# Cost models: least-squares fits of measured seconds, on the AMD EPYC 2-vCPU machine (AVX-512 VNNI) with the
# load of other processes (1-min load average 3.1-3.6), so a quiet machine runs faster than estimated.


def autocast_seconds(nodes: int, weight_mb: float) -> float:
    """ModelOpt AutoCast (its reference run and the graph written out included) on a constant-folded graph of
    `weight_mb` MB; fitted on 8 graphs from 188 nodes/0.1 MB to RoBERTa-base's 867 nodes/499 MB (0.5-22 s),
    within 1.1 s of each."""
    return 0.006 * nodes + 0.034 * weight_mb


def calibration_seconds(graph_mb: float, samples: int, fp16: bool = False) -> float:
    """One ModelOpt INT8 quantization on ONNX Runtime CPU (method max, 128-token samples for the transformers);
    fitted on 11 runs: tiny graphs, yolox-nano, all-MiniLM-L6-v2 (90 MB, 8/32 samples: 12-16 s) and
    RoBERTa-base (499 MB, 8/32/64 samples: 41/67/98 s), within 5 s of each graph over 50 MB. `fp16` (the
    non-quantized layers in FP16): RoBERTa-base took 34 s more (16 samples: 84 s), MiniLM about 1 s more."""
    return 2.9 + 0.063 * graph_mb + 0.002 * samples * graph_mb + (0.066 * graph_mb if fp16 else 0.0)


def graph_megabytes(path) -> float:
    """An ONNX file's size with its external-data file, in MB."""
    from pathlib import Path

    return sum(p.stat().st_size for p in (Path(path), Path(f"{path}.data")) if p.is_file()) / 1e6


def export_seconds(param_mb: float, tensors: int, exporter: str = "legacy") -> float:
    """torch.onnx.export by the state_dict's MB and tensor count. Legacy (TorchScript, which `--exporter auto`
    tries first): fitted on 7 models from e5-tiny (8 MB, 0.6 s), yolox-nano (3.7 MB but 642 tensors: a CNN's
    many small tensors cost more than their bytes, 6 s) to RoBERTa-large (1.4 GB, 42 s), within 3.5 s of each.
    Dynamo (torch.export, a fixed tracing cost): e5-tiny, yolox-s, MiniLM, RoBERTa-base (7.5-18 s), within 0.5 s."""
    if exporter == "dynamo":
        return 7.3 + 0.021 * param_mb
    return 0.026 * param_mb + 0.0088 * tensors
