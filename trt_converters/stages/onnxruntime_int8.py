"""The --onnx-int8 stage: the FP32 graph (fused for ONNX Runtime's transformer kernels where that verifies) to an
ONNX Runtime INT8 graph for CPU serving, verified."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from trt_converters import library_logs
from trt_converters.errors import StageError, UserError
from trt_converters.onnxruntime_cpu.quantize import OrtInt8Options
from trt_converters.shapes import synthetic_inputs
from trt_converters.stages.context import RunContext, file_facts, log, to_device, warnings_logged
from trt_converters.stages.references import LoadedModel
from trt_converters.stages.verification import Verifier


@dataclass(frozen=True)
class OrtInt8Graph:
    """The ONNX Runtime INT8 graph (staged path) and its report entries: `ort_fusion` (dynamic mode) and
    `ort_int8_<mode>`."""

    graph: Path
    mode: str
    entry: dict
    fusion: dict | None = None

    def report_entries(self) -> dict:
        fusion = {"ort_fusion": self.fusion} if self.fusion is not None else {}
        return {**fusion, f"ort_int8_{self.mode}": self.entry}


@dataclass(frozen=True)
class FusableExport:
    """The eager-attention legacy export ONNX Runtime's transformer optimizer fuses (`path` None: it failed, `why`
    says why), taken in the export stage so that the PyTorch model is freed before the lowering."""

    path: Path | None
    num_heads: int
    hidden_size: int
    seconds: float
    why: str = ""


def export_fusable_graph(run: RunContext, loaded: LoadedModel) -> FusableExport:
    """The PyTorch model re-exported in the form ONNX Runtime's transformer optimizer fuses (a staged scratch file
    the lowering removes)."""
    from trt_converters.onnxruntime_cpu.fusion import export_fusable, transformer_dims

    options = run.options
    started = time.perf_counter()
    heads, hidden = transformer_dims(loaded.model)
    sample = synthetic_inputs(run.io, loaded.export_shapes, seed=0)
    fusable = run.staged(options.artifact_dir() / ".ort-fusable.onnx")
    log("[fuse] eager-attention legacy export for ONNX Runtime's transformer optimizer")
    try:
        export_fusable(loaded.model, run.io, to_device(sample, options.device), run.profiles, fusable)
    except StageError as exc:
        log(f"warning: no fusable export ({exc}); INT8 from the plain FP32 graph")
        return FusableExport(None, heads, hidden, time.perf_counter() - started, why=str(exc))
    return FusableExport(fusable, heads, hidden, time.perf_counter() - started)


def lower_for_onnxruntime(run: RunContext, ort: OrtInt8Options, fp32_onnx: Path | None,
                          fusable: FusableExport | None, verifier: Verifier | None) -> OrtInt8Graph:
    """`fusable`: the export_fusable_graph result (None without --generate-onnx: the FP32 graph is fused as it
    is). `verifier` None: the graph is not verified."""
    from trt_converters.onnxruntime_cpu import quantize_for_onnxruntime
    from trt_converters.onnxruntime_cpu.targets import CPU_TARGET_KEY, WEIGHT_BITS_KEY, read_metadata

    options = run.options
    if fp32_onnx is None:
        raise UserError("lowering precision needs an FP32 ONNX graph: pass --generate-onnx or an existing --onnx-path")
    final = options.ort_int8_onnx_path()
    # ONNX Runtime's static quantizer fails on fused graphs ("'NoneType' object has no attribute 'extend'",
    # onnxruntime 1.31), so fusion serves the dynamic path.
    source, fusion = fp32_onnx, None
    if options.ort_fusion and ort.mode == "dynamic":
        source, fusion = _fuse_for_cpu(run, fp32_onnx, fusable, verifier)
    log(f"[lower] ONNX Runtime {ort.mode} INT8")
    started = time.perf_counter()
    calibration = _static_calibration(run, verifier) if ort.mode == "static" else None
    with library_logs.captured(echo=options.verbose) as library_log:
        path = quantize_for_onnxruntime(source, run.staged(final), ort, io=run.io, calibration=calibration)
    written = read_metadata(path)
    entry = {"seconds": round(time.perf_counter() - started, 3), "library_log": library_log,
             "cpu_target": written[CPU_TARGET_KEY], "weight_bits": int(written[WEIGHT_BITS_KEY]),
             "fused": source != fp32_onnx, **file_facts(path, final=final)}
    if verifier is not None:
        entry["verify"] = verifier.verify(path, "ort_int8", f"ONNX Runtime {ort.mode} INT8 graph")
    return OrtInt8Graph(path, ort.mode, entry, fusion)


def _static_calibration(run: RunContext, verifier: Verifier | None) -> dict:
    """The calibration arrays (the first --calib-samples): those loaded for verification, else read here."""
    from trt_converters.calibration import load_calibration_data

    options = run.options
    loaded = verifier.data.calibration if verifier is not None else None
    if loaded is not None:
        return {name: value[:options.calib_samples] if options.calib_samples else value
                for name, value in loaded.items()}
    with warnings_logged(), library_logs.captured(echo=options.verbose):
        return load_calibration_data(run.io, run.profiles, source=options.calib_data, samples=options.calib_samples,
                                     tokenizer_path=options.tokenizer_path, image_options=options.image_options)


def _fuse_for_cpu(run: RunContext, fp32_onnx: Path, fusable: FusableExport | None,
                  verifier: Verifier | None) -> tuple[Path, dict]:
    """The FP32 graph in the form ONNX Runtime's transformer optimizer fuses, fused and verified, with the report's
    `ort_fusion` entry; the plain FP32 graph when the fusable re-export failed or the fused graph fails
    verification."""
    from trt_converters.onnxruntime_cpu.fusion import WANTED, fuse_for_onnxruntime

    options = run.options
    final = options.ort_fused_onnx_path()
    started = time.perf_counter()
    heads, hidden, source, exported_s = 0, 0, fp32_onnx, 0.0
    if fusable is not None:
        heads, hidden, exported_s = fusable.num_heads, fusable.hidden_size, fusable.seconds
        if fusable.path is None:
            return fp32_onnx, {"fused": False, "why": fusable.why}
        source = fusable.path
    result = fuse_for_onnxruntime(source, run.staged(final), num_heads=heads, hidden_size=hidden)
    if source != fp32_onnx:
        source.unlink(missing_ok=True)
    entry = {"statistics": result.statistics, "num_heads": heads, "hidden_size": hidden,
             "seconds": round(exported_s + time.perf_counter() - started, 3)}
    log("[fuse] " + (", ".join(f"{k} {v}" for k, v in sorted(result.statistics.items())) or "nothing fused"))
    if not any(result.statistics.get(op) for op in WANTED):
        log("[fuse] no transformer layers fused; INT8 from the plain FP32 graph")
        result.path.unlink(missing_ok=True)
        return fp32_onnx, {**entry, "fused": False, "why": "no Attention or SkipLayerNormalization fused"}
    if verifier is not None:
        try:
            entry["verify"] = verifier.verify(result.path, "fp32", "fused FP32 graph")
        except StageError as exc:
            log(f"warning: {exc}; INT8 from the plain FP32 graph")
            result.path.unlink(missing_ok=True)
            return fp32_onnx, {**entry, "fused": False, "why": str(exc)}
    return result.path, {**entry, "fused": True, **file_facts(result.path, final=final)}
