"""ONNX -> serialized TensorRT engine with the real builder (TensorRT, or TensorRT-RTX which builds on a CPU).

Networks are strongly typed: precision is decided in the ONNX graph (TensorRT 11 removed weak typing;
docs/design.md, Precision). Weak-typed FP16 is offered only where the installed TensorRT still has
BuilderFlag.FP16, and only when asked for.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.atomic import atomic_write_bytes
from trt_converters.errors import StageError, UserError
from trt_converters.shapes import ShapeProfile

BACKENDS = {"tensorrt": "tensorrt", "tensorrt-rtx": "tensorrt_rtx"}
INSTALL_HINT = "pip install tensorrt-rtx (builds on any machine) or install NVIDIA TensorRT (pip install tensorrt)"
HARDWARE_LEVELS = {"none": "NONE", "ampere_plus": "AMPERE_PLUS", "same_compute_capability": "SAME_COMPUTE_CAPABILITY"}


@dataclass(frozen=True)
class BuildOptions:
    memory_pool_limit: int = 1 << 30
    builder_optimization_level: int | None = None
    timing_cache: Path | None = None
    backend: str = "auto"
    tf32: bool | None = None
    version_compatible: bool = False
    hardware_compatibility_level: str | None = None
    weak_typing_fp16: bool = False
    progress: bool = True
    verbose: bool = False


@dataclass
class BuildResult:
    path: Path
    backend: str
    backend_version: str
    seconds: float
    engine_bytes: int
    timing_cache_loaded: bool
    notes: list[str] = field(default_factory=list)


def import_tensorrt(backend: str = "auto"):
    """The TensorRT module to build with: `tensorrt` first, then `tensorrt_rtx` (auto), or the one named."""
    import importlib

    if backend != "auto" and backend not in BACKENDS:
        raise UserError(f"--trt-backend {backend!r} is not one of auto, {', '.join(BACKENDS)}")
    candidates = list(BACKENDS.items()) if backend == "auto" else [(backend, BACKENDS[backend])]
    for name, module_name in candidates:
        try:
            return name, importlib.import_module(module_name)
        except ImportError:
            continue
    wanted = "TensorRT" if backend == "auto" else backend
    raise UserError(f"--generate-trt needs {wanted}, which is not installed: {INSTALL_HINT}")


def where_plan_loads(backend: str, version: str) -> str:
    """Which runtimes can deserialize a plan this builder made (plans are tied to the builder and its version)."""
    if backend == "tensorrt-rtx":
        return (f"a TensorRT-RTX {version} plan: it loads only in a TensorRT-RTX {version} runtime (tensorrt_rtx), "
                "not in Triton's tensorrt backend")
    return (f"a TensorRT {version} plan: it loads in TensorRT {version}, e.g. Triton's tensorrt backend of a "
            f"release built with TensorRT {version}, on a GPU like the one that built it")


def build_engine(onnx_path: Path, engine_path: Path, profiles: dict[str, ShapeProfile],
                 options: BuildOptions = BuildOptions()) -> BuildResult:
    backend, trt = import_tensorrt(options.backend)
    started = time.perf_counter()
    logger = _collecting_logger(trt, verbose=options.verbose)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, options))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise StageError(f"{backend} cannot parse {Path(onnx_path).name}: {errors[0] if errors else logger.last_error()}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.memory_pool_limit)
    notes = _apply_flags(trt, config, options)
    config.add_optimization_profile(_profile(builder, network, profiles))
    timing_cache_loaded = _attach_timing_cache(config, options.timing_cache)
    if options.progress and hasattr(trt, "IProgressMonitor"):
        config.progress_monitor = _progress_monitor(trt)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise StageError(f"{backend} failed to build an engine from {Path(onnx_path).name}: {logger.last_error()}")
    atomic_write_bytes(Path(engine_path), bytes(serialized))
    if options.timing_cache is not None:
        atomic_write_bytes(Path(options.timing_cache), bytes(config.get_timing_cache().serialize()))
    return BuildResult(path=Path(engine_path), backend=backend, backend_version=trt.__version__,
                       seconds=time.perf_counter() - started, engine_bytes=Path(engine_path).stat().st_size,
                       timing_cache_loaded=timing_cache_loaded, notes=notes)


def _network_flags(trt, options: BuildOptions) -> int:
    flags = trt.NetworkDefinitionCreationFlag
    if options.weak_typing_fp16:
        if not hasattr(trt.BuilderFlag, "FP16"):
            raise UserError("--weak-typing-fp16 needs a TensorRT with BuilderFlag.FP16 (TensorRT <= 10); "
                            f"{trt.__name__} {trt.__version__} is strongly typed only: use --use-fp16")
        return 1 << int(flags.EXPLICIT_BATCH) if hasattr(flags, "EXPLICIT_BATCH") else 0
    return 1 << int(flags.STRONGLY_TYPED)


def _apply_flags(trt, config, options: BuildOptions) -> list[str]:
    notes = []
    if options.weak_typing_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        notes.append("weak typing: BuilderFlag.FP16 set (TensorRT chooses layer precisions)")
    if options.builder_optimization_level is not None:
        config.builder_optimization_level = options.builder_optimization_level
    if options.tf32 is not None and hasattr(trt.BuilderFlag, "TF32"):
        (config.set_flag if options.tf32 else config.clear_flag)(trt.BuilderFlag.TF32)
    if options.version_compatible:
        if not hasattr(trt.BuilderFlag, "VERSION_COMPATIBLE"):
            raise UserError(f"--version-compatible is not supported by {trt.__name__} {trt.__version__}")
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.hardware_compatibility_level:
        level = HARDWARE_LEVELS.get(options.hardware_compatibility_level)
        if level is None or not hasattr(trt, "HardwareCompatibilityLevel"):
            raise UserError(f"--hardware-compatibility-level {options.hardware_compatibility_level!r} is not "
                            f"supported here; choose one of {', '.join(HARDWARE_LEVELS)}")
        config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, level)
    return notes


def _profile(builder, network, profiles: dict[str, ShapeProfile]):
    profile = builder.create_optimization_profile()
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        shapes = profiles.get(tensor.name)
        if shapes is None:
            raise StageError(f"the ONNX graph has input {tensor.name!r} that the IO config does not declare")
        if len(shapes.min) != len(tensor.shape):
            raise StageError(f"input {tensor.name!r} has rank {len(tensor.shape)} in the graph but "
                             f"{len(shapes.min)} (with batch) in the IO config")
        profile.set_shape(tensor.name, shapes.min, shapes.opt, shapes.max)
    return profile


def _attach_timing_cache(config, cache_path: Path | None) -> bool:
    existing = Path(cache_path).read_bytes() if cache_path is not None and Path(cache_path).is_file() else b""
    cache = config.create_timing_cache(existing)
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise StageError(f"the timing cache {cache_path} was built by another TensorRT version or device; "
                         "delete it or pass another --timing-cache path")
    return bool(existing)


def _collecting_logger(trt, *, verbose: bool):
    """Keeps the builder's messages; prints them only with --verbose.

    TensorRT-RTX on a machine without a GPU logs CUDA errors while it still builds correctly (e.g. when a
    timing cache is loaded); they matter only when the build fails, and then the last one is reported.
    """

    class CollectingLogger(trt.ILogger):
        def __init__(self):
            trt.ILogger.__init__(self)
            self.errors: list[str] = []

        def log(self, severity, message):
            if severity in (trt.ILogger.Severity.ERROR, trt.ILogger.Severity.INTERNAL_ERROR):
                self.errors.append(message)
            if verbose and severity <= trt.ILogger.Severity.WARNING:
                print(f"  [{trt.__name__}] {message}", file=sys.stderr, flush=True)

        def last_error(self) -> str:
            return self.errors[-1] if self.errors else "no error message from the builder"

    return CollectingLogger()


def _progress_monitor(trt):
    class StderrProgress(trt.IProgressMonitor):
        """Prints each top-level builder phase as it starts and ends."""

        def __init__(self):
            trt.IProgressMonitor.__init__(self)
            self._started: dict[str, float] = {}

        def phase_start(self, phase_name, parent_phase, num_steps):
            if parent_phase is None:
                self._started[phase_name] = time.perf_counter()
                print(f"  [build] {phase_name} ({num_steps} steps)", file=sys.stderr, flush=True)

        def step_complete(self, phase_name, step):
            return True  # keep building

        def phase_finish(self, phase_name):
            if phase_name in self._started:
                elapsed = time.perf_counter() - self._started.pop(phase_name)
                print(f"  [build] {phase_name} done in {elapsed:.1f} s", file=sys.stderr, flush=True)

    return StderrProgress()
