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
from dataclasses import dataclass
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
MB = 2**20

_child_peaks_mb: list[float] = []  # peaks children reported of themselves (onnx_runner), read by StagePeaks


def vmhwm_mb(status_text: str | None = None, field: str = "VmHWM") -> float | None:
    """The process's resident high-water mark (`field` VmRSS: its resident size now) in MiB from
    /proc/self/status (None where there is none)."""
    if status_text is None:
        try:
            status_text = STATUS.read_text()
        except OSError:
            return None
    for line in status_text.splitlines():
        if line.startswith(f"{field}:"):
            value, unit = line.split()[1:3]
            return int(value) * {"kB": 1024, "mB": MB}.get(unit, 1024) / MB
    return None


def release() -> None:
    """Returns what the stages freed to the system: cycles collected, and glibc's free heap pages trimmed (a
    stage's garbage would otherwise stay resident through the next stages)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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
        self.at_start: dict[str, float] = {}  # resident MiB when the stage began (what earlier stages left)
        self.resettable = True

    @contextlib.contextmanager
    def measure(self, stage: str):
        release()
        self.at_start[stage] = round(vmhwm_mb(field="VmRSS") or 0.0, 1)
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
        report = {"stages_peak_rss_mb": dict(self.peaks), "stages_start_rss_mb": dict(self.at_start),
                  "process_peak_rss_mb": max(self.peaks.values(), default=0.0)}
        if not self.resettable:
            report["note"] = "VmHWM could not be reset here: each stage's figure is the process's peak so far"
        return report


# Each stage's peak resident MiB as INTERCEPT + SLOPE x the FP32 weights' MiB (the checkpoint file): lines through
# the peaks report.json recorded (benchmarks/conversion_memory.py, 2-vCPU Xeon, torch 2.13, onnxruntime 1.31,
# ModelOpt 0.47, TensorRT-RTX 1.7) for all-MiniLM-L6-v2 (87 MiB) and RoBERTa-base (476 MiB) at the configs'
# profiles (batch 8, 128 tokens; INT8 calibrated on 32 sentences), each stage's largest over the precisions. The
# process alone (Python, torch, the libraries) is about 380 MiB. Activations at larger profiles are not in it.
STAGE_COST = {
    "load": (613.0, 2.1),              # 792 / 1594 MiB: the state_dict and the model side by side
    "export": (483.0, 4.0),            # 833 / 2406 MiB: the exporter's graph, its serialization, verification
    "lower_fp16": (500.0, 3.6),        # provisional: bounded AutoCast, constant folding is its peak
    "lower_int8": (852.0, 12.5),       # 1939 / 6817 MiB: ModelOpt INT8 calibration and the outlier-channel split
    "ort_int8_dynamic": (534.0, 10.1),  # 1413 / 5358 MiB: fusable re-export, fusion, quantization
    "build": (855.0, 4.6),             # 1254 / 3045 MiB: the TensorRT-RTX build of the INT8 graph (FP16: 1056 / 2213)
}
# Not measured yet: ONNX Runtime static INT8 and OpenVINO/NNCF are costed as the INT8 lowering.
STAGE_COST["ort_int8_static"] = STAGE_COST["openvino"] = STAGE_COST["lower_int8"]
# Larger models run past the lines: DeBERTa-v3-large (1656 MiB) with --use-fp16 was killed by the kernel in
# AutoCast with 22.7 GiB available, where its line gives 22.4 GiB. The estimate carries this margin.
ESTIMATE_MARGIN = 1.15


@dataclass(frozen=True)
class Estimate:
    """The run's estimated peak (the largest stage's) and each stage's, in MiB, from `weights_mb`."""

    weights_mb: float
    stages: dict

    @property
    def peak_mb(self) -> float:
        return max(self.stages.values(), default=0.0)

    @property
    def largest(self) -> str:
        return max(self.stages, key=self.stages.get)


def weights_megabytes(options) -> float:
    """The FP32 weights' MiB: the checkpoint (a file, or a folder's files) with --generate-onnx, else the ONNX
    graph with its external data."""
    if options.generate_onnx and options.ckpt_path is not None:
        path = Path(options.ckpt_path)
        files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    else:
        graph = options.resolved_onnx_path()
        files = [graph, Path(f"{graph}.data")]
    return sum(p.stat().st_size for p in files if p.is_file()) / MB


def stages_asked(options, openvino: bool = False) -> list[str]:
    """The stages this run's options ask for, by their cost's name (STAGE_COST)."""
    stages = ["load", "export"] if options.generate_onnx else []
    if options.precision_mode in ("int8", "int8_fp16", "auto"):
        stages.append("lower_int8")
    if options.precision_mode in ("fp16", "auto"):
        stages.append("lower_fp16")
    if options.onnx_int8:
        stages.append(f"ort_int8_{options.onnx_int8}")
    if openvino:
        stages.append("openvino")
    if options.generate_trt:
        stages.append("build")
    return stages


def estimate_peak(options, openvino: bool = False) -> Estimate:
    weights = weights_megabytes(options)
    costs = {stage: STAGE_COST[stage] for stage in stages_asked(options, openvino)}
    return Estimate(round(weights, 1), {stage: round((base + slope * weights) * ESTIMATE_MARGIN, 1)
                                        for stage, (base, slope) in costs.items()})


def available_memory(limit: int | None = None) -> tuple[float, str]:
    """MiB this process may still use, and where the figure comes from: --memory-limit where given, else the
    smaller of the cgroup's room (v2 memory.max - memory.current, v1 limit_in_bytes - usage_in_bytes) and
    MemAvailable."""
    if limit is not None:
        return limit / MB, "--memory-limit"
    found = [(_mem_available(), "MemAvailable")]
    room = _cgroup_room()
    if room is not None:
        found.append((room, "the cgroup's memory limit"))
    found = [(value, source) for value, source in found if value is not None]
    if not found:
        return float("inf"), "unknown"
    value, source = min(found)
    return value / MB, source


def _mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_room(root: Path = Path("/sys/fs/cgroup"), cgroups: Path = Path("/proc/self/cgroup")) -> int | None:
    """The limit minus the usage of this process's cgroup (None: no limit, or none readable): its own folder
    where /proc/self/cgroup names one under the mount, else the mount's root (a container's own cgroup)."""
    own = {"v2": "", "v1": ""}
    try:
        for line in cgroups.read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            if number == "0" and controllers == "":
                own["v2"] = path.strip("/")
            elif "memory" in controllers.split(","):
                own["v1"] = path.strip("/")
    except (OSError, ValueError):
        pass
    candidates = [(f"{own['v2']}/memory.max", f"{own['v2']}/memory.current"),
                  (f"memory/{own['v1']}/memory.limit_in_bytes", f"memory/{own['v1']}/memory.usage_in_bytes"),
                  ("memory.max", "memory.current"),
                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")]
    for limit_name, usage_name in candidates:
        limit_name, usage_name = limit_name.lstrip("/").replace("//", "/"), usage_name.lstrip("/").replace("//", "/")
        try:
            limit, usage = (root / limit_name).read_text().strip(), (root / usage_name).read_text().strip()
        except OSError:
            continue
        if limit == "max" or not limit.isdigit() or int(limit) >= 1 << 60:
            return None
        return max(0, int(limit) - int(usage))
    return None


# What leaves a stage out of the run (the refusal names it with what the run would need without it)
SKIPPED_BY = {"lower_fp16": "without --use-fp16", "lower_int8": "without --use-int8",
              "ort_int8_dynamic": "without --onnx-int8", "ort_int8_static": "without --onnx-int8",
              "openvino": "without the OpenVINO runtime", "build": "without --generate-trt"}


def refusal(estimate: Estimate, available_mb: float, source: str) -> str | None:
    """The one line that stops a run estimated to need more than is available (None: it fits)."""
    if estimate.peak_mb <= available_mb:
        return None
    gib = lambda mb: f"{mb / 1024:.1f} GiB"  # noqa: E731
    stages, dropped, lower = dict(estimate.stages), [], []
    while stages and max(stages.values()) > available_mb and max(stages, key=stages.get) in SKIPPED_BY:
        largest = max(stages, key=stages.get)
        del stages[largest]
        dropped.append(SKIPPED_BY[largest].removeprefix("without "))
        lower.append(f"without {' and '.join(dropped)} about {gib(max(stages.values(), default=0.0))}")
    fix = f"it needs {', '.join(lower)}" if lower else "its export alone needs more"
    override = "" if source == "--memory-limit" else "; --memory-limit SIZE overrides the figure"
    return (f"this conversion needs about {gib(estimate.peak_mb)} of memory at its peak ({estimate.largest}, "
            f"{estimate.weights_mb:,.0f} MiB of weights) but {gib(available_mb)} is available ({source}); {fix}; "
            f"convert on a machine with more free memory{override}")
