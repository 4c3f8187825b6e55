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

Heavy modules (torch, onnxruntime, tensorrt) are imported lazily.
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

from trt_converters.errors import UserError
from trt_converters.spec import DYNAMIC, IOSpec

HOST = "host latency"
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


# -- runners ------------------------------------------------------------------------------------------------------

@dataclass
class Skipped:
    """A runtime that cannot run here, with the reason (shown in the table)."""

    name: str
    reason: str


class Runner:
    """One runtime on one model: `prepare(inputs)` once per cell, then `__call__()` per timed run.

    `metric` says which latency `__call__` measures; `gpu_compute()` (CUDA only) times the inference
    alone with CUDA events and returns milliseconds, or None where it does not apply.
    """

    name = "runner"
    metric = HOST

    def prepare(self, inputs: dict) -> None:
        raise NotImplementedError

    def __call__(self) -> None:
        raise NotImplementedError

    def gpu_compute(self) -> float | None:
        return None

    def close(self) -> None:
        pass


class TorchRunner(Runner):
    """PyTorch eager (or torch.compile) on CPU or CUDA, FP32 or FP16 weights."""

    def __init__(self, model, io: IOSpec, *, device: str = "cpu", fp16: bool = False, compile: bool = False,
                 name: str | None = None):
        import torch

        self.torch = torch
        self.io = io
        self.device = device
        self.fp16 = fp16
        model = model.to(device)
        if fp16:
            model = model.half()
        self.model = torch.compile(model) if compile else model
        precision = "fp16" if fp16 else "fp32"
        self.name = name or f"pytorch{'-compile' if compile else ''} {precision} ({device})"
        self.metric = f"{HOST} (with transfers)" if device.startswith("cuda") else HOST
        self._host: dict = {}
        self._device_inputs: list = []

    def _to_device(self, arrays: dict) -> list:
        torch = self.torch
        tensors = []
        for tensor in self.io.inputs:
            value = torch.from_numpy(arrays[tensor.name]).to(self.device)
            if self.fp16 and value.is_floating_point():
                value = value.half()
            tensors.append(value)
        return tensors

    def prepare(self, inputs: dict) -> None:
        self._host = inputs
        self._device_inputs = self._to_device(inputs)

    def _forward(self, tensors: list):
        with self.torch.inference_mode():
            return self.model(*tensors)

    def __call__(self) -> None:
        outputs = self._forward(self._to_device(self._host))
        _torch_outputs_to_host(outputs)

    def gpu_compute(self) -> float | None:
        if not self.device.startswith("cuda"):
            return None
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        self._forward(self._device_inputs)
        end.record()
        end.synchronize()
        return start.elapsed_time(end)


def _torch_outputs_to_host(outputs) -> list:
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    if not isinstance(outputs, (tuple, list)):
        outputs = [outputs]
    return [o.detach().float().cpu().numpy() for o in outputs if hasattr(o, "detach")]


class OrtRunner(Runner):
    """ONNX Runtime InferenceSession: CPU EP, or CUDA EP (with CPU fallback) where it is present."""

    def __init__(self, onnx_path: Path, *, label: str, device: str = "cpu", intra_op_threads: int | None = None):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeError("onnxruntime has no CUDAExecutionProvider here (install onnxruntime-gpu)")
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if intra_op_threads:
            options.intra_op_num_threads = intra_op_threads
        self.session = ort.InferenceSession(str(onnx_path), options, providers=providers)
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.output_names = [o.name for o in self.session.get_outputs()]
        ep = "CUDA EP" if providers[0].startswith("CUDA") else "CPU EP"
        self.name = f"onnxruntime {label} ({ep})"
        self.metric = f"{HOST} (with transfers)" if providers[0].startswith("CUDA") else HOST
        self._feeds: dict = {}

    def prepare(self, inputs: dict) -> None:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise UserError(f"the ONNX graph takes input {missing[0]!r}, which the IO config does not declare")
        self._feeds = {n: inputs[n] for n in self.input_names}

    def __call__(self) -> None:
        self.session.run(self.output_names, self._feeds)


class TensorRTRunner(Runner):
    """A serialized TensorRT engine run with the TensorRT Python API on CUDA, buffers held by torch.

    `__call__` is host latency with transfers (H2D copy, enqueue, D2H copy, synchronize);
    `gpu_compute` is CUDA-event time around `execute_async_v3` alone.
    """

    metric = f"{HOST} (with transfers)"

    def __init__(self, engine_path: Path, trt, *, label: str):
        import torch

        self.torch = torch
        self.trt = trt
        logger = trt.Logger(trt.Logger.ERROR)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise RuntimeError(f"{trt.__name__} could not deserialize {engine_path} on this GPU")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.stream = torch.cuda.Stream()
        self.name = f"tensorrt {label} ({trt.__name__} {trt.__version__})"
        self._host: dict = {}
        self._device: dict = {}
        self._outputs: dict = {}

    def _torch_dtype(self, name: str):
        trt, torch = self.trt, self.torch
        mapping = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                   trt.int8: torch.int8, trt.bool: torch.bool}
        for attr, dtype in (("int64", torch.int64), ("bfloat16", torch.bfloat16), ("uint8", torch.uint8)):
            if hasattr(trt, attr):
                mapping[getattr(trt, attr)] = dtype
        return mapping[self.engine.get_tensor_dtype(name)]

    def prepare(self, inputs: dict) -> None:
        torch = self.torch
        self._host, self._device, self._outputs = {}, {}, {}
        for name in self.input_names:
            if name not in inputs:
                raise UserError(f"the engine takes input {name!r}, which the IO config does not declare")
            host = torch.from_numpy(inputs[name]).to(self._torch_dtype(name)).pin_memory()
            self._host[name] = host
            self._device[name] = host.to("cuda")
            self.context.set_input_shape(name, tuple(host.shape))
            self.context.set_tensor_address(name, self._device[name].data_ptr())
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"output {name!r} has a data-dependent shape {shape}; not supported by trt-bench")
            self._outputs[name] = torch.empty(shape, dtype=self._torch_dtype(name), device="cuda")
            self.context.set_tensor_address(name, self._outputs[name].data_ptr())

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError("execute_async_v3 failed")

    def __call__(self) -> None:
        with self.torch.cuda.stream(self.stream):
            for name, host in self._host.items():
                self._device[name].copy_(host, non_blocking=True)
            self._enqueue()
            results = [out.to("cpu", non_blocking=True) for out in self._outputs.values()]
        self.stream.synchronize()
        del results

    def infer(self, inputs: dict) -> dict:
        """One inference: output name -> numpy array (float outputs as float32), for accuracy checks."""
        self.prepare(inputs)
        with self.torch.cuda.stream(self.stream):
            self._enqueue()
        self.stream.synchronize()
        return {name: (out.float() if out.is_floating_point() else out).cpu().numpy()
                for name, out in self._outputs.items()}

    def gpu_compute(self) -> float | None:
        torch = self.torch
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record(self.stream)
        self._enqueue()
        end.record(self.stream)
        end.synchronize()
        return start.elapsed_time(end)


def tensorrt_runtime_status() -> tuple[object | None, str]:
    """(tensorrt module, "") where engines can run here, else (None, the reason)."""
    try:
        import torch
    except ImportError:
        return None, "torch is not installed"
    if not torch.cuda.is_available():
        return None, "no CUDA GPU here (torch.cuda.is_available() is False); TensorRT engines run only on a GPU"
    import importlib

    errors = []
    for module_name in ("tensorrt", "tensorrt_rtx"):
        try:
            trt = importlib.import_module(module_name)
        except ImportError as exc:
            errors.append(f"{module_name}: {exc}")
            continue
        try:
            runtime = trt.Runtime(trt.Logger(trt.Logger.ERROR))
        except Exception as exc:  # a wheel whose runtime does not support this GPU
            errors.append(f"{module_name}: Runtime failed: {exc}")
            continue
        del runtime
        return trt, ""
    return None, "no runnable TensorRT: " + "; ".join(errors)


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


# -- assembling the runtimes for one model ------------------------------------------------------------------------

@dataclass
class ModelArtifacts:
    """What trt-bench times: the PyTorch model (script, class, kwargs, optional checkpoint) and its graphs."""

    io: IOSpec
    model_script: Path | None = None
    class_name: str | None = None
    checkpoint: Path | None = None
    model_kwargs: dict = field(default_factory=dict)
    onnx: dict[str, Path] = field(default_factory=dict)      # label -> graph
    engines: dict[str, Path] = field(default_factory=dict)   # label -> model.plan


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


def make_runners(artifacts: ModelArtifacts, *, device: str = "cpu", runtimes: tuple[str, ...] = ("torch", "ort", "trt"),
                 torch_fp16: bool = False, torch_compile: bool = False, intra_op_threads: int | None = None,
                 probe_onnx: bool = True) -> list:
    """Runners (or Skipped with a reason) in table order: PyTorch first (the baseline), then ORT, then TensorRT."""
    runners: list = []
    if intra_op_threads:
        import torch

        torch.set_num_threads(intra_op_threads)
    if "torch" in runtimes:
        runners += _torch_runners(artifacts, device=device, fp16=torch_fp16, compile=torch_compile)
    if "ort" in runtimes:
        for label, path in artifacts.onnx.items():
            runners.append(_ort_runner(path, label, device, intra_op_threads, probe_onnx))
    if "trt" in runtimes:
        if not artifacts.engines:
            runners.append(Skipped("tensorrt", "no engine given (--engine or a report with a build stage)"))
        else:
            trt, reason = tensorrt_runtime_status()
            for label, path in artifacts.engines.items():
                if trt is None:
                    runners.append(Skipped(f"tensorrt {label}", reason))
                    continue
                try:
                    runners.append(TensorRTRunner(path, trt, label=label))
                except Exception as exc:
                    runners.append(Skipped(f"tensorrt {label}", f"{type(exc).__name__}: {exc}"))
    if not any(isinstance(r, Runner) for r in runners):
        reasons = "; ".join(f"{r.name}: {r.reason}" for r in runners) or "no runtimes chosen"
        raise UserError(f"nothing to time ({reasons}); give a model script, an ONNX graph or an engine")
    return runners


def _torch_runners(artifacts: ModelArtifacts, *, device: str, fp16: bool, compile: bool) -> list:
    if artifacts.model_script is None or artifacts.class_name is None:
        return [Skipped("pytorch", "no model script/class given (--config or --model-script-path and "
                                   "--model-class-name)")]
    from trt_converters.loading import load_model

    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError("--device cuda asked for, but torch.cuda.is_available() is False here; use --device cpu")
    model, _ = load_model(artifacts.model_script, artifacts.class_name, artifacts.checkpoint,
                          model_kwargs=artifacts.model_kwargs)
    runners = [TorchRunner(model, artifacts.io, device=device)]
    if fp16:
        if device == "cpu":
            runners.append(Skipped("pytorch fp16 (cpu)", "FP16 eager is measured on CUDA only"))
        else:
            import copy

            runners.append(TorchRunner(copy.deepcopy(model), artifacts.io, device=device, fp16=True))
    if compile:
        import copy

        runners.append(TorchRunner(copy.deepcopy(model), artifacts.io, device=device, compile=True))
    return runners


def _ort_runner(path: Path, label: str, device: str, threads: int | None, probe: bool):
    name = f"onnxruntime {label}"
    if not Path(path).is_file():
        raise UserError(f"ONNX graph {path} does not exist")
    if probe:
        # ONNX Runtime CPU has crashed the process on some FP16 graphs (docs/design.md, Verification):
        # load it in a child first.
        reason = probe_onnx_in_child(Path(path))
        if reason:
            return Skipped(name, reason)
    try:
        return OrtRunner(Path(path), label=label, device=device, intra_op_threads=threads)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return Skipped(name, f"cannot load: {first[:300]}")


def probe_onnx_in_child(path: Path, timeout: float = 600.0) -> str:
    """'' when ONNX Runtime CPU can create a session for `path` in a child process, else why not."""
    import subprocess
    import sys

    code = ("import sys, onnxruntime as ort; o = ort.SessionOptions(); o.log_severity_level = 3; "
            "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])")
    try:
        proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return f"ONNX Runtime did not load the graph within {timeout:.0f} s"
    if proc.returncode == 0:
        return ""
    if proc.returncode < 0:
        import signal

        return f"ONNX Runtime crashed loading the graph ({signal.Signals(-proc.returncode).name})"
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    return f"ONNX Runtime cannot load the graph: {(lines[-1] if lines else 'exit ' + str(proc.returncode))[:300]}"


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
