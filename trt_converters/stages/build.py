"""The build stage: a TensorRT (or TensorRT-RTX) engine from the graph the lowering kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trt_converters.build import BuildOptions
from trt_converters.errors import UserError
from trt_converters.stages.context import RunContext, file_facts, log
from trt_converters.triton.backends import TENSORRT_PLAN, ServingChoice


@dataclass(frozen=True)
class BuiltEngine:
    """The engine (staged path) and the report's `build` entry."""

    engine: Path
    entry: dict


def build_options(options) -> BuildOptions:
    """The builder's options from the run's."""
    return BuildOptions(memory_pool_limit=options.memory_pool_limit,
                        builder_optimization_level=options.builder_optimization_level,
                        timing_cache=options.timing_cache, backend=options.trt_backend, tf32=options.tf32,
                        version_compatible=options.version_compatible,
                        hardware_compatibility_level=options.hardware_compatibility_level,
                        weak_typing_fp16=options.weak_typing_fp16, verbose=options.verbose)


def build_stage(run: RunContext, build: BuildOptions, graph: Path | None, serving: ServingChoice | None) -> BuiltEngine:
    """`graph`: the ONNX graph to build; `serving`: the serving choice where this run packages the engine."""
    from trt_converters.build import build_engine, where_plan_loads
    from trt_converters.onnxruntime_cpu import refuse_for_tensorrt

    if graph is None:
        raise UserError("--generate-trt needs an ONNX graph: pass --generate-onnx or an existing --onnx-path")
    refuse_for_tensorrt(graph)
    final = run.options.resolved_engine_path()
    log(f"[build] {graph.name} -> {final} (workspace {build.memory_pool_limit >> 20} MiB)")
    result = build_engine(graph, run.staged(final), run.profiles, build)
    loads_in = where_plan_loads(result.backend, result.backend_version)
    log(f"[build] built by {result.backend} {result.backend_version}: {loads_in}")
    if serving is not None and serving.backend == TENSORRT_PLAN and result.backend == "tensorrt-rtx":
        log("warning: --triton-backend tensorrt_plan packages this TensorRT-RTX plan, which Triton's tensorrt "
            "backend cannot load; build with NVIDIA TensorRT (--trt-backend tensorrt) to serve it from Triton")
    entry = {"backend": result.backend, "backend_version": result.backend_version, "loads_in": loads_in,
             "seconds": round(result.seconds, 3),
             "timing_cache": str(build.timing_cache) if build.timing_cache else None,
             "timing_cache_loaded": result.timing_cache_loaded, "notes": result.notes,
             "memory_pool_limit": build.memory_pool_limit, **file_facts(result.path, final=final)}
    return BuiltEngine(result.path, entry)
