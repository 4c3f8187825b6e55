"""The export stage: the PyTorch model to a verified FP32 ONNX graph (or the existing graph at --onnx-path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trt_converters import progress
from trt_converters.errors import StageError, UserError
from trt_converters.shapes import synthetic_inputs
from trt_converters.stages.context import RunContext, file_facts, log, progress_lines, to_device
from trt_converters.stages.references import LoadedModel
from trt_converters.stages.verification import Verifier
from trt_converters.triton.backends import TENSORRT_PLAN, ServingChoice


@dataclass(frozen=True)
class ExportedGraph:
    """The FP32 graph later stages start from (None: none exported and none at --onnx-path), the inputs it
    takes, and the report entries of its export and verification (none for an existing graph)."""

    onnx: Path | None
    graph_inputs: list[str] | None
    entry: dict | None = None
    verification: dict | None = None


def export_graph(run: RunContext, loaded: LoadedModel, verifier: Verifier) -> ExportedGraph:
    """Tries the exporters in turn (--exporter auto: legacy, then dynamo) and keeps the first graph that exports
    and verifies."""
    from trt_converters.export import export_onnx

    options = run.options
    sample = synthetic_inputs(run.io, loaded.export_shapes, seed=0, vocabulary=loaded.vocabulary)
    target = run.staged(options.resolved_onnx_path())
    exporters = ["legacy", "dynamo"] if options.exporter == "auto" else [options.exporter]
    attempts = []
    for exporter in exporters:
        log(f"[export] {exporter} exporter, opset {options.opset}, sample shapes "
            + ", ".join(f"{k}{list(v)}" for k, v in loaded.export_shapes.items()))
        try:
            with progress_lines("export"), progress.heartbeat(f"{exporter} export",
                                                             _export_seconds(loaded.model, exporter)):
                result = export_onnx(loaded.model, run.io, to_device(sample, options.device), run.profiles, target,
                                     exporter=exporter, opset=options.opset)
            verification = None if options.skip_verify else verifier.verify(target, "fp32",
                                                                            f"{exporter} ONNX export")
        except StageError as exc:
            attempts.append(f"{exporter}: {exc}")
            if options.verbose:  # the fallback is routine; the report's export entry says why
                log(f"[export] {exporter} rejected: {exc}")
            continue
        entry = {
            "exporter": exporter, "why": ("the first exporter that exported and verified; rejected: " + "; ".join(attempts))
            if attempts else (f"asked for with --exporter {exporter}" if options.exporter != "auto"
                              else "legacy exporter tried first (fast); it verified at shapes other than the sample"),
            "opset": result.opset, "seconds": round(result.seconds, 3), "graph_inputs": result.graph_inputs,
            "notes": result.notes, **file_facts(target, final=options.resolved_onnx_path())}
        return ExportedGraph(target, result.graph_inputs, entry, verification)
    raise StageError("no exporter produced a verified graph: " + " | ".join(attempts))


def existing_graph(run: RunContext, serving: ServingChoice) -> ExportedGraph:
    """Without --generate-onnx, later stages start from the ONNX graph at --onnx-path."""
    import onnx

    options = run.options
    path = options.resolved_onnx_path()
    if not path.is_file():
        if options.generate_trt or (options.generate_triton_config and serving.backend != TENSORRT_PLAN):
            raise UserError(f"--onnx-path {path} does not exist: pass --generate-onnx or point --onnx-path at a graph")
        return ExportedGraph(None, None)
    return ExportedGraph(path, [i.name for i in onnx.load(str(path), load_external_data=False).graph.input])


def _export_seconds(model, exporter: str) -> float:
    tensors = model.state_dict()
    megabytes = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6
    return progress.export_seconds(megabytes, len(tensors), exporter)
