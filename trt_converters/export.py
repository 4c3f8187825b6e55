"""PyTorch module -> checked ONNX graph with a dynamic batch dim and every -1 dim dynamic.

Two exporters (docs/design.md, Export): the dynamo exporter (`torch.export` with `Dim`s) keeps
dynamic sizes symbolic where the legacy TorchScript exporter can freeze them into Reshape constants;
the legacy exporter is faster and handles some models dynamo cannot trace. `auto` (convert.py) tries
legacy first and falls back to dynamo when legacy fails to export or its graph fails verification at
other shapes (the caller verifies and asks for the fallback).
"""

from __future__ import annotations

import contextlib
import io as _io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.errors import StageError
from trt_converters.shapes import ShapeProfile
from trt_converters.spec import DYNAMIC, IOSpec

DEFAULT_OPSET = 18  # the dynamo exporter's native opset; TensorRT >= 8.6 and ONNX Runtime >= 1.14 parse it
TWO_GIB = 2 * 1024**3
EXPORTERS = ("dynamo", "legacy")


@dataclass
class ExportResult:
    path: Path
    exporter: str
    opset: int
    seconds: float
    graph_inputs: list[str]
    graph_outputs: list[str]
    notes: list[str] = field(default_factory=list)


def export_onnx(model, io: IOSpec, sample_inputs: dict, profiles: dict[str, ShapeProfile], out_path: Path, *,
                exporter: str = "dynamo", opset: int = DEFAULT_OPSET) -> ExportResult:
    """Exports with one exporter, checks the graph (onnx.checker, full check) and writes `out_path`."""
    import time

    import onnx

    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}")
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    args = tuple(_as_tensor(sample_inputs[t.name]) for t in io.inputs)
    started = time.perf_counter()
    scratch = out_path.with_name(out_path.name + f".{exporter}-export.onnx")
    try:
        captured = _io.StringIO()
        with warnings.catch_warnings(), contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            warnings.simplefilter("ignore")
            if exporter == "dynamo":
                _export_dynamo(model, io, args, profiles, scratch, opset)
            else:
                _export_legacy(model, io, args, scratch, opset)
        graph = onnx.load(str(scratch), load_external_data=True)
    except StageError:
        _remove_scratch(scratch)
        raise
    except Exception as exc:  # exporters raise many types; the message is what the user needs
        _remove_scratch(scratch)
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StageError(f"{exporter} ONNX export failed: {type(exc).__name__}: {message}") from exc
    try:
        renamed = _name_outputs(graph, io)
        dropped = _drop_unused_inputs(graph)
        actual_opset = next((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), opset)
        notes = [f"input {name!r} is not used by the model and was removed from the graph" for name in dropped]
        if actual_opset != opset:
            notes.append(f"asked for opset {opset}, the {exporter} exporter wrote opset {actual_opset}")
        # The exporter's own single-file graph is kept when nothing was changed in it: saving the same graph
        # again costs seconds on a base-size model (a 500 MB protobuf).
        unchanged = (not renamed and not dropped and not scratch.with_name(scratch.name + ".data").exists()
                     and scratch.stat().st_size <= TWO_GIB)  # the file is the serialized graph
        _save_checked(graph, out_path, written=scratch if unchanged else None)
    finally:
        _remove_scratch(scratch)
    return ExportResult(path=out_path, exporter=exporter, opset=actual_opset,
                        seconds=time.perf_counter() - started,
                        graph_inputs=[i.name for i in graph.graph.input],
                        graph_outputs=[o.name for o in graph.graph.output], notes=notes)


def _as_tensor(value):
    import torch

    return value if isinstance(value, torch.Tensor) else torch.from_numpy(value)


def _legacy_dynamic_axes(io: IOSpec) -> dict[str, dict[int, str]]:
    """Inputs with a dynamic dim at the same axis share its symbolic name (e.g. ids and mask length)."""
    axes = {}
    for tensor in io.inputs + io.outputs:
        prefix = "" if tensor in io.inputs else f"{tensor.name}_"
        names = {0: "batch"}
        names.update({axis + 1: f"{prefix}dim{axis + 1}" for axis, d in enumerate(tensor.shape) if d == DYNAMIC})
        axes[tensor.name] = names
    return axes


def _export_legacy(model, io: IOSpec, args: tuple, path: Path, opset: int) -> None:
    import torch

    with torch.no_grad():
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=opset,
                          input_names=[t.name for t in io.inputs], output_names=[t.name for t in io.outputs],
                          dynamic_axes=_legacy_dynamic_axes(io), do_constant_folding=True)


def _export_dynamo(model, io: IOSpec, args: tuple, profiles: dict[str, ShapeProfile], path: Path, opset: int) -> None:
    import torch
    from torch.export import Dim

    dims: dict[str, object] = {}

    def dim(name: str, low: int, high: int):
        if name not in dims:
            dims[name] = Dim(name, min=max(low, 1), max=max(high, 2))
        return dims[name]

    dynamic_shapes = []
    for tensor, sample in zip(io.inputs, args):
        profile = profiles[tensor.name]
        spec = {0: dim("batch", 1, profile.max[0])}
        for axis, d in enumerate(tensor.shape):
            if d == DYNAMIC:
                full_axis = axis + 1
                spec[full_axis] = dim(f"dim{full_axis}_{profile.min[full_axis]}_{profile.max[full_axis]}",
                                      profile.min[full_axis], profile.max[full_axis])
        dynamic_shapes.append(spec)
    with torch.no_grad():
        program = torch.onnx.export(model, args, dynamo=True, opset_version=opset, dynamic_shapes=tuple(dynamic_shapes),
                                    input_names=[t.name for t in io.inputs], output_names=[t.name for t in io.outputs],
                                    optimize=True, verbose=False, report=False)
        if program is None:
            raise StageError("the dynamo exporter returned no program")
        program.save(str(path), external_data=False)


def _name_outputs(graph, io: IOSpec) -> bool:
    """Renames graph outputs to the IO spec's names where the exporter chose others (same order); True if any."""
    expected = [t.name for t in io.outputs]
    actual = [o.name for o in graph.graph.output]
    if len(actual) != len(expected):
        raise StageError(f"the model returned {len(actual)} outputs but the IO config declares {len(expected)} "
                         f"({', '.join(expected)}); make forward() return them in that order")
    renames = {old: new for old, new in zip(actual, expected) if old != new}
    if not renames:
        return False
    for node in graph.graph.node:
        node.output[:] = [renames.get(n, n) for n in node.output]
        node.input[:] = [renames.get(n, n) for n in node.input]
    for output in graph.graph.output:
        output.name = renames.get(output.name, output.name)
    return True


def _drop_unused_inputs(graph) -> list[str]:
    """Removes graph inputs no node reads (the legacy exporter does this itself; dynamo keeps them)."""
    consumed = _names_read(graph.graph)
    unused = [i for i in graph.graph.input if i.name not in consumed]
    for graph_input in unused:
        graph.graph.input.remove(graph_input)
    return [i.name for i in unused]


def _names_read(graph_proto) -> set[str]:
    """Every tensor name a node reads, subgraphs (If/Loop bodies) included, plus the graph's outputs."""
    names = {o.name for o in graph_proto.output}
    for node in graph_proto.node:
        names.update(node.input)
        for attribute in node.attribute:
            for subgraph in [attribute.g] if attribute.HasField("g") else list(attribute.graphs):
                names |= _names_read(subgraph)
    return names


def _remove_scratch(scratch: Path) -> None:
    for leftover in (scratch, scratch.with_name(scratch.name + ".data")):
        leftover.unlink(missing_ok=True)


def _save_checked(graph, out_path: Path, *, written: Path | None = None) -> None:
    """Writes `graph` (or moves `written`, a single-file copy of it) to `out_path` and checks the file."""
    import os

    import onnx

    data_name = out_path.name + ".data"
    if written is not None:
        os.replace(written, out_path)
    else:
        from trt_converters.onnx_files import save_model

        save_model(graph, out_path, limit=TWO_GIB)  # tensors in `data_name` beside it above the limit
    try:
        onnx.checker.check_model(str(out_path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        first = str(exc).strip().splitlines()[0]
        out_path.unlink(missing_ok=True)
        out_path.with_name(data_name).unlink(missing_ok=True)
        raise StageError(f"the exported graph fails onnx.checker: {first}") from None

