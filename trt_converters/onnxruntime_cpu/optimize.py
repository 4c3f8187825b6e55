"""ONNX Runtime graph optimizations (constant folding, fusions) saved as a graph for serving."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from trt_converters.errors import StageError, UserError

LEVELS = ("disabled", "basic", "extended", "all")


def optimize_for_onnxruntime(onnx_path: Path, out_path: Path, *, level: str = "extended") -> Path:
    """Runs ONNX Runtime's CPU graph optimizer at `level` and writes the optimized graph to `out_path`.

    "extended" and "all" fuse into com.microsoft operators that only ONNX Runtime runs, so their result
    is marked as an ONNX Runtime graph; "basic" keeps standard operators and stays unmarked. "all" adds layout changes tuned to this machine's CPU; prefer
    "extended" for graphs served elsewhere.
    """
    import onnx
    import onnxruntime as ort

    from trt_converters.onnxruntime_cpu.targets import mark_onnxruntime_target

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if level not in LEVELS:
        raise UserError(f"optimization level {level!r} is not one of {', '.join(LEVELS)}")
    if not onnx_path.is_file():
        raise UserError(f"ONNX file {onnx_path} does not exist; pass the path of a .onnx graph")
    levels = {"disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
              "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
              "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
              "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ort-opt-", dir=out_path.parent) as tmp:
        optimized = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = levels[level]
        options.optimized_model_filepath = str(optimized)
        options.log_severity_level = 3
        try:
            ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several pybind types
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise StageError(f"ONNX Runtime could not load {onnx_path.name} to optimize it: {first}") from exc
        model = onnx.load(str(optimized))
        if level in ("extended", "all"):
            mark_onnxruntime_target(model, f"optimized-{level}")
        staged = Path(tmp) / out_path.name
        onnx.save_model(model, str(staged))
        os.replace(staged, out_path)
    return out_path
