"""The runtimes trt-bench times, each behind one interface (`Runner`): PyTorch eager or torch.compile,
ONNX Runtime and a TensorRT engine, and `make_runners`, which builds them for one model.

Heavy modules (torch, onnxruntime, tensorrt) are imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.spec import IOSpec

HOST = "host latency"  # the metric every runner measures (bench.py adds CUDA-event GPU compute)


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


# -- assembling the runtimes for one model ------------------------------------------------------------------------

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

