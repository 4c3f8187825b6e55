"""Side-by-side latency and throughput: PyTorch eager, ONNX Runtime and a TensorRT engine on the same inputs.

Every runtime gets the same synthetic inputs (from the IO spec) for each cell of a grid of batch sizes
and dynamic lengths. Each cell: warm-up runs, then timed runs bounded by a count and a time cap;
statistics are the median, p90/p95/p99, min/max and throughput.

Vocabulary (trtexec's, where it applies):
- "host latency": wall clock of one inference as a caller sees it, from inputs in host memory to outputs
  in host memory. On a GPU this includes the H2D and D2H transfers ("with transfers"); on a CPU there is
  no transfer and host latency is simply end-to-end latency.
- "GPU compute": time between CUDA events around the inference alone, inputs already on the device
  ("without transfers"). Measured only on CUDA.
- throughput: inferences (queries) per second and samples (batch items) per second of the sequential
  timed loop, one request in flight (trtexec's default of one stream).

The runtimes themselves are in bench_runners.py; heavy modules (torch, onnxruntime, tensorrt) are imported
lazily.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from trt_converters.bench_runners import ModelArtifacts, Runner, Skipped, make_runners
from trt_converters.errors import UserError
from trt_converters.spec import DYNAMIC, IOSpec

GPU_COMPUTE = "GPU compute"


# -- statistics ---------------------------------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of an already sorted list."""
    if not sorted_values:
        raise ValueError("no samples")
    position = (len(sorted_values) - 1) * q / 100.0
    low, high = math.floor(position), math.ceil(position)
    if low == high:
        return sorted_values[low]
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def latency_stats(samples_ms: list[float], *, batch: int, wall_seconds: float | None = None) -> dict:
    """count, mean, min, p10, median, p90, p95, p99, max (ms) and throughput of one timed loop."""
    values = sorted(samples_ms)
    total = wall_seconds if wall_seconds is not None else sum(values) / 1000.0
    stats = {"count": len(values), "mean_ms": statistics.fmean(values), "min_ms": values[0]}
    for q in (10, 50, 90, 95, 99):
        stats["median_ms" if q == 50 else f"p{q}_ms"] = percentile(values, q)
    stats["max_ms"] = values[-1]
    stats["qps"] = len(values) / total if total > 0 else float("nan")
    stats["samples_per_s"] = stats["qps"] * batch
    return stats


# -- the grid -----------------------------------------------------------------------------------------------------

def grid_shapes(io: IOSpec, batch: int, length: int, overrides: dict[str, tuple[int, ...]] | None = None) -> dict:
    """Full input shapes (batch first): every dynamic dim takes `length` unless `overrides` names the input."""
    shapes = {}
    for tensor in io.inputs:
        if overrides and tensor.name in overrides:
            dims = tuple(overrides[tensor.name])
        else:
            dims = tuple(length if d == DYNAMIC else d for d in tensor.shape)
        shapes[tensor.name] = (batch, *dims)
    return shapes


def has_dynamic_dims(io: IOSpec) -> bool:
    return any(t.is_dynamic for t in io.inputs)


# -- timing -------------------------------------------------------------------------------------------------------

@dataclass
class BenchSettings:
    batch_sizes: tuple[int, ...] = (1, 8)
    lengths: tuple[int, ...] = (128,)
    warmup: int = 3
    iterations: int = 30
    max_seconds: float = 20.0
    min_iterations: int = 3
    seed: int = 0
    shape_overrides: dict = field(default_factory=dict)


def time_cell(runners: list, inputs: dict, settings: BenchSettings, *, batch: int,
              progress: Callable[[int], None] | None = None) -> dict[int, dict]:
    """Times the runners side by side on the same inputs: result per runner index (stats or 'failed').

    Warm-up runs for each, then timed rounds in which every runner runs once in turn, so that load
    changes on a shared machine hit all runtimes alike. Rounds stop at `iterations`, or at `max_seconds`
    once `min_iterations` rounds are done.
    """
    results: dict[int, dict] = {}
    live = []
    for index, runner in enumerate(runners):
        try:
            runner.prepare(inputs)
            for _ in range(settings.warmup):
                runner()
            live.append(index)
        except UserError:
            raise
        except Exception as exc:  # a runtime that fails at one shape still lets the others run
            results[index] = {"failed": _first_line(exc)}
    samples: dict[int, list[float]] = {i: [] for i in live}
    busy: dict[int, float] = {i: 0.0 for i in live}
    began = time.perf_counter()
    for round_index in range(settings.iterations):
        for index in list(live):
            started = time.perf_counter()
            try:
                runners[index]()
            except Exception as exc:
                results[index] = {"failed": _first_line(exc)}
                live.remove(index)
                continue
            elapsed = time.perf_counter() - started
            samples[index].append(elapsed * 1000.0)
            busy[index] += elapsed
        if progress:
            progress(1)
        if round_index + 1 >= settings.min_iterations and time.perf_counter() - began > settings.max_seconds:
            break
    for index in live:
        runner = runners[index]
        # throughput of a sequential loop: runs / time spent in this runtime's runs
        result = {"metric": runner.metric, **latency_stats(samples[index], batch=batch, wall_seconds=busy[index])}
        compute = [runner.gpu_compute() for _ in range(len(samples[index]))]
        if compute and compute[0] is not None:
            result["gpu_compute"] = {"metric": f"{GPU_COMPUTE} (without transfers)",
                                     **latency_stats([c for c in compute if c is not None], batch=batch)}
        results[index] = result
    return results


def _first_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first[:300]}".rstrip(": ")


def run_grid(io: IOSpec, runners: list, settings: BenchSettings, *, show_progress: bool = True) -> list[dict]:
    """One row per (runtime, batch, length): stats, or the reason it was skipped or failed."""
    from tqdm import tqdm

    from trt_converters.shapes import synthetic_inputs

    lengths = settings.lengths if has_dynamic_dims(io) else (None,)
    cells = [(b, n) for b in settings.batch_sizes for n in lengths]
    rows = []
    with tqdm(total=len(cells) * settings.iterations, desc="trt-bench", unit="round", disable=not show_progress,
              leave=False) as bar:
        for batch, length in cells:
            shapes = grid_shapes(io, batch, length or 0, settings.shape_overrides)
            inputs = synthetic_inputs(io, shapes, seed=settings.seed)
            bar.set_postfix_str(f"batch {batch}" + (f" length {length}" if length else ""))
            done_before = bar.n
            active = [r for r in runners if not isinstance(r, Skipped)]
            timed = time_cell(active, inputs, settings, batch=batch, progress=bar.update)
            bar.update(settings.iterations - (bar.n - done_before))
            by_runner = {id(r): timed[i] for i, r in enumerate(active)}
            for runner in runners:
                row = {"runtime": runner.name, "batch": batch, "length": length,
                       "shapes": {k: list(v) for k, v in shapes.items()}}
                if isinstance(runner, Skipped):
                    row["skipped"] = runner.reason
                else:
                    row.update(by_runner[id(runner)])
                rows.append(row)
    baseline_ratios(rows)
    return rows


def baseline_ratios(rows: list[dict]) -> None:
    """Adds `speedup_vs_baseline` (baseline median / this median) per (batch, length); baseline = first runtime."""
    by_cell: dict = {}
    for row in rows:
        by_cell.setdefault((row["batch"], row["length"]), []).append(row)
    for cell_rows in by_cell.values():
        base = next((r for r in cell_rows if "median_ms" in r), None)
        for row in cell_rows:
            if base is not None and "median_ms" in row:
                row["baseline"] = base["runtime"]
                row["speedup_vs_baseline"] = base["median_ms"] / row["median_ms"]


# -- environment --------------------------------------------------------------------------------------------------

def machine_facts() -> dict:
    """CPU model and cores, load, GPU name (if any) and package versions: stated with every table."""
    from trt_converters.report import tool_versions

    facts = {"cpu": _cpu_model(), "logical_cpus": os.cpu_count(), "platform": platform.platform(),
             "versions": tool_versions()}
    try:
        facts["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    try:
        import torch

        facts["torch_threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            facts["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


# -- output -------------------------------------------------------------------------------------------------------

def render_table(rows: list[dict]) -> str:
    """Median, p90/p95/p99 (ms), throughput and the ratio to the baseline runtime of the same cell."""
    header = ("runtime", "batch", "len", "metric", "runs", "median ms", "p90", "p95", "p99", "min-max",
              "inf/s", "samples/s", "vs base")
    lines = [header]
    for row in rows:
        cell = (row["runtime"], str(row["batch"]), "" if row["length"] is None else str(row["length"]))
        if "skipped" in row or "failed" in row:
            lines.append(cell + (("skipped: " + row["skipped"]) if "skipped" in row else ("failed: " + row["failed"]),))
            continue
        lines.append(cell + _stat_cells(row, row["metric"]) + (f"{row.get('speedup_vs_baseline', float('nan')):.2f}x",))
        if "gpu_compute" in row:
            lines.append(("", "", "") + _stat_cells(row["gpu_compute"], row["gpu_compute"]["metric"]) + ("",))
    widths = [max(len(line[i]) for line in lines if len(line) == len(header) and i < len(line))
              for i in range(len(header))]
    out = []
    for line in lines:
        if len(line) != len(header):
            out.append("  ".join(c.ljust(w) for c, w in zip(line[:3], widths)) + "  " + line[3])
        else:
            out.append("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
    return "\n".join(out)


def _stat_cells(stats: dict, metric: str) -> tuple:
    return (metric, str(stats["count"]), f"{stats['median_ms']:.2f}", f"{stats['p90_ms']:.2f}",
            f"{stats['p95_ms']:.2f}", f"{stats['p99_ms']:.2f}", f"{stats['min_ms']:.2f}-{stats['max_ms']:.2f}",
            f"{stats['qps']:.1f}", f"{stats['samples_per_s']:.1f}")


def write_json(path: Path, payload: dict) -> None:
    from trt_converters.atomic import atomic_write_text

    atomic_write_text(Path(path), json.dumps(payload, indent=2, default=str) + "\n")


# -- a trt-convert report and one model's run ---------------------------------------------------------------------


def precision_label(path: Path) -> str:
    """model.onnx -> fp32, model.fp16.onnx -> fp16, model.ort-int8-dynamic.onnx -> ort-int8-dynamic."""
    name = Path(path).name
    for suffix in (".onnx", ".plan", ".engine"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    parts = name.split(".", 1)
    return parts[1] if len(parts) == 2 else "fp32"


def artifacts_from_report(report_path: Path) -> dict:
    """The graphs and engine a trt-convert report.json lists: {'onnx': {label: path}, 'engines': {...}, 'io', 'model'}."""
    report_path = Path(report_path)
    if not report_path.is_file():
        raise UserError(f"--report {report_path} does not exist; pass the report.json a trt-convert run wrote")
    try:
        report = json.loads(report_path.read_text())
    except json.JSONDecodeError as exc:
        raise UserError(f"--report {report_path} is not valid JSON ({exc.msg})") from None
    stages = report.get("stages") if isinstance(report, dict) else None
    if not isinstance(stages, dict):
        raise UserError(f"--report {report_path} has no 'stages': is it a trt-convert report.json?")
    onnx, engines = {}, {}
    for stage, entry in stages.items():
        path = entry.get("path") if isinstance(entry, dict) else None
        if not path:
            continue
        path = Path(path)
        if not path.is_absolute() and not path.exists():
            path = report_path.parent / path.name
        if not path.is_file():
            continue
        if stage == "build":  # the engine has the precision of the graph it was built from
            engines[str(report.get("precision") or precision_label(path))] = path
        elif path.suffix == ".onnx":
            onnx[precision_label(path)] = path
    return {"onnx": onnx, "engines": engines, "io": report.get("io"), "model": report.get("model") or {}}


def bench_model(artifacts: ModelArtifacts, settings: BenchSettings, **runner_options) -> dict:
    """Times every runtime over the grid; returns {'machine', 'settings', 'rows'} (JSON-ready)."""
    show_progress = runner_options.pop("show_progress", True)
    runners = make_runners(artifacts, **runner_options)
    try:
        rows = run_grid(artifacts.io, runners, settings, show_progress=show_progress)
    finally:
        for runner in runners:
            if isinstance(runner, Runner):
                runner.close()
    return {"machine": machine_facts(), "settings": asdict(settings),
            "artifacts": {"onnx": {k: str(v) for k, v in artifacts.onnx.items()},
                          "engines": {k: str(v) for k, v in artifacts.engines.items()},
                          "checkpoint": str(artifacts.checkpoint) if artifacts.checkpoint else "random weights"},
            "rows": rows}
