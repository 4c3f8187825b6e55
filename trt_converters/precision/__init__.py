"""Lowering a verified FP32 ONNX graph to FP16 (AutoCast) or INT8 Q/DQ (ModelOpt), decided in the graph.

TensorRT 11 / TensorRT-RTX build strongly typed networks: the precision of each layer is the
precision of its tensors in the ONNX graph, so lowering happens here, not in builder flags.
"""

from __future__ import annotations

import shutil
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from trt_converters.errors import UserError
from trt_converters.shapes import ShapeProfile
from trt_converters.spec import IOSpec

if TYPE_CHECKING:
    from trt_converters.precision.options import PrecisionOptions

PRECISIONS = ("fp16", "int8", "int8_fp16")
# Which DEFAULT_TOLERANCES entry (verify.py) verifies a graph of each precision: INT8 error dominates in int8_fp16;
# ort_int8 is the ONNX Runtime INT8 graph (onnxruntime_cpu/).
TOLERANCE_KEYS = {"fp32": "fp32", "fp16": "fp16", "bf16": "bf16", "int8": "int8", "int8_fp16": "int8",
                  "ort_int8": "int8"}


def tolerance_key(precision: str) -> str:
    return TOLERANCE_KEYS[precision]


@dataclass(frozen=True)
class LoweringCheck:
    """What a lowering measures its candidate graphs against: the budget and, optionally, the caller's input sets
    with their reference outputs (else the lowering's own calibration samples and the FP32 graph's outputs)."""

    tolerance: object = None  # verify.Tolerance; None: the precision's default budget
    input_sets: list | None = None
    references: list | None = None


@dataclass
class LoweringResult:
    path: Path
    precision: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    check_outputs: list | None = None  # the graph's outputs on the check's input sets, when it had some


def lower_graph(fp32_onnx: Path, out_path: Path, options: "PrecisionOptions", *, io: IOSpec,
                profiles: dict[str, ShapeProfile], check: LoweringCheck | None = None, calibration: dict | None = None,
                log=None) -> LoweringResult:
    """Writes the graph lowered to `options.mode` (fp16, int8, int8_fp16) to `out_path` (moved into place only
    when complete). `calibration`: calibration arrays the caller loaded from `options.calib_data` already."""
    from trt_converters.errors import StageError
    from trt_converters.precision.methods import resolve_method

    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    precision = options.mode
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not fp32_onnx.is_file():
        raise UserError(f"ONNX graph {fp32_onnx} does not exist; export the FP32 graph first")
    _require_precision_packages()
    if precision != "fp16":
        resolve_method(options.calib_method, path="tensorrt")  # a direct caller's bad name, before any work
    started = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trtc-lower-", dir=out_path.parent) as tmp:
        work_dir = Path(tmp)
        staged = work_dir / out_path.name
        details: dict = {}
        check = check or LoweringCheck()
        if precision == "fp16":
            notes, check_outputs = _lower_fp16(fp32_onnx, staged, io, profiles, work_dir, check)
        else:
            source, source_notes = _calibration_source(options, io, profiles, calibration)
            notes, details, check_outputs = _lower_int8(fp32_onnx, staged, options, source=source, work_dir=work_dir,
                                                        check=check, log=log or (lambda message: None))
            notes = source_notes + notes
        if not staged.is_file():
            raise StageError(f"{precision} lowering wrote no graph")
        for produced in (staged, staged.with_name(staged.name + ".data")):
            if produced.exists():
                shutil.move(str(produced), str(out_path.with_name(produced.name)))
    return LoweringResult(out_path, precision, time.perf_counter() - started, notes, details, check_outputs)


# Module -> the package that provides it: what ModelOpt's ONNX paths import beyond nvidia-modelopt itself
# (its [onnx] extra would also pull onnxruntime-gpu and CuPy, which these CPU paths never use).
REQUIRED_MODULES = {"modelopt": "nvidia-modelopt", "onnx_graphsurgeon": "onnx-graphsurgeon", "onnxslim": "onnxslim",
                    "onnxscript": "onnxscript", "lief": "lief", "polygraphy": "polygraphy"}


def _require_precision_packages() -> None:
    import importlib.util

    missing = [package for module, package in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise UserError(f"FP16/INT8 lowering needs {', '.join(missing)}: pip install 'trt-converters[precision]'")


def check_inputs_for(io: IOSpec, profiles: dict[str, ShapeProfile]) -> dict:
    """Inputs at the profiles' opt shapes for the lowering's own sanity checks."""
    from trt_converters.shapes import synthetic_inputs

    return synthetic_inputs(io, {name: p.opt for name, p in profiles.items()}, seed=1)


def _lower_fp16(fp32_onnx: Path, staged: Path, io: IOSpec, profiles: dict[str, ShapeProfile], work_dir: Path,
                check: LoweringCheck):
    from trt_converters.precision.fp16 import lower_fp16

    sets = (check.input_sets, check.references, check.tolerance) if check.input_sets is not None else None
    return lower_fp16(fp32_onnx, staged, check_inputs=check_inputs_for(io, profiles), work_dir=work_dir, check=sets)


def _calibration_source(options: "PrecisionOptions", io: IOSpec, profiles: dict[str, ShapeProfile],
                        calibration: dict | None):
    """The INT8 quantizer's data source, and the notes (where the data came from) it fills when it loads."""
    from trt_converters.calibration import SYNTHETIC_WARNING, load_calibration_data
    from trt_converters.precision.modelopt_calibration import CalibrationSource
    from trt_converters.shapes import synthetic_inputs

    source_notes: list[str] = []
    calib_data, calib_samples = options.calib_data, options.calib_samples

    def load_calibration() -> dict:
        if calib_data is None:
            source_notes.append(SYNTHETIC_WARNING)
        else:
            source_notes.append(f"calibration data from {calib_data}")
        if calibration is not None:  # loaded by the caller already (from `calib_data`)
            return {name: value[:calib_samples] if calib_samples else value for name, value in calibration.items()}
        return load_calibration_data(io, profiles, source=Path(calib_data) if calib_data else None,
                                     samples=calib_samples, tokenizer_path=options.tokenizer_path,
                                     image_options=options.image_options)

    def synthetic_for_shapes(shapes: dict) -> dict:
        graph_io = io.with_inputs(list(shapes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return synthetic_inputs(graph_io, shapes, seed=0)

    source = CalibrationSource(load=load_calibration, synthetic_for_shapes=synthetic_for_shapes,
                               opt_batch=max(p.opt[0] for p in profiles.values()))
    return source, source_notes


def _lower_int8(fp32_onnx: Path, staged: Path, options: "PrecisionOptions", *, source, work_dir: Path,
                check: LoweringCheck, log) -> tuple[list[str], dict, list | None]:
    from trt_converters.precision.int8 import quantize_int8

    outcome = quantize_int8(fp32_onnx, staged, options, source=source, work_dir=work_dir, check=check, log=log)
    notes = outcome.notes
    if options.mode == "int8_fp16":
        from trt_converters.precision.fp16 import describe_fp32_ops, ops_kept_in_fp32
        import onnx

        notes.append(describe_fp32_ops(ops_kept_in_fp32(onnx.load(str(staged)))))
    return notes, outcome.details, outcome.check_outputs
