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

from trt_converters.errors import UserError
from trt_converters.shapes import ShapeProfile
from trt_converters.spec import IOSpec

PRECISIONS = ("fp16", "int8", "int8_fp16")
# Which DEFAULT_TOLERANCES entry verifies each precision: INT8 error dominates in int8_fp16.
TOLERANCE_KEYS = {"fp16": "fp16", "int8": "int8", "int8_fp16": "int8"}


@dataclass
class LoweringResult:
    path: Path
    precision: str
    seconds: float
    notes: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)
    check_outputs: list | None = None  # the graph's outputs on `check`'s input sets, when lower_graph was given one


def lower_graph(fp32_onnx: Path, out_path: Path, *, precision: str, io: IOSpec, profiles: dict[str, ShapeProfile],
                calib_data: Path | None = None, calib_samples: int | None = None, calib_method: str = "max",
                tokenizer_path: Path | None = None, image_options: dict | None = None,
                calibration_cache: Path | None = None, calib_percentile: float | None = None,
                int8_search: bool | None = None, int8_outlier_channels: bool = True, tolerance=None, log=None,
                check: tuple | None = None,
                calibration: dict | None = None) -> LoweringResult:
    """Writes the lowered graph to `out_path` (moved into place only when complete)."""
    from trt_converters.errors import StageError

    fp32_onnx, out_path = Path(fp32_onnx), Path(out_path)
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if not fp32_onnx.is_file():
        raise UserError(f"ONNX graph {fp32_onnx} does not exist; export the FP32 graph first")
    _require_precision_packages()
    if precision != "fp16":
        from trt_converters.precision.int8 import calibration_method

        calibration_method(calib_method)  # reject a bad name before any work
    started = time.perf_counter()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="trtc-lower-", dir=out_path.parent) as tmp:
        work_dir = Path(tmp)
        staged = work_dir / out_path.name
        details: dict = {}
        check_outputs = None
        if precision == "fp16":
            notes, check_outputs = _lower_fp16(fp32_onnx, staged, io, profiles, work_dir, check)
        else:
            notes, details, check_outputs = _lower_int8(
                fp32_onnx, staged, precision, io, profiles, work_dir, check=check, calibration=calibration,
                calib_data=calib_data,
                                         calib_samples=calib_samples, calib_method=calib_method,
                                         tokenizer_path=tokenizer_path, image_options=image_options,
                                         calibration_cache=Path(calibration_cache) if calibration_cache else None,
                                         percentile=calib_percentile, search=int8_search, tolerance=tolerance,
                                         outlier_channels=int8_outlier_channels,
                                         log=log or (lambda message: None))
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
                check: tuple | None):
    from trt_converters.precision.fp16 import lower_fp16

    return lower_fp16(fp32_onnx, staged, check_inputs=check_inputs_for(io, profiles), work_dir=work_dir, check=check)


def _lower_int8(fp32_onnx: Path, staged: Path, precision: str, io: IOSpec, profiles: dict[str, ShapeProfile],
                work_dir: Path, *, calib_data, calib_samples, calib_method, tokenizer_path, image_options,
                calibration_cache, percentile, search, tolerance, log, check, outlier_channels,
                calibration) -> tuple[list[str], dict, list | None]:
    from trt_converters.calibration import SYNTHETIC_WARNING, load_calibration_data
    from trt_converters.precision.int8 import quantize_int8
    from trt_converters.precision.methods import DEFAULT_PERCENTILE
    from trt_converters.shapes import synthetic_inputs

    source_notes: list[str] = []

    def load_calibration() -> dict:
        if calib_data is None:
            source_notes.append(SYNTHETIC_WARNING)
        else:
            source_notes.append(f"calibration data from {calib_data}")
        if calibration is not None:  # loaded by the caller already (from `calib_data`)
            return {name: value[:calib_samples] if calib_samples else value for name, value in calibration.items()}
        return load_calibration_data(io, profiles, source=Path(calib_data) if calib_data else None,
                                     samples=calib_samples, tokenizer_path=tokenizer_path, image_options=image_options)

    def synthetic_for_shapes(shapes: dict) -> dict:
        graph_io = io.with_inputs(list(shapes))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return synthetic_inputs(graph_io, shapes, seed=0)

    opt_batch = max(p.opt[0] for p in profiles.values())
    outcome = quantize_int8(fp32_onnx, staged, high_precision="fp16" if precision == "int8_fp16" else "fp32",
                            method=calib_method, load_calibration=load_calibration,
                            synthetic_for_shapes=synthetic_for_shapes, opt_batch=opt_batch,
                            cache=calibration_cache, work_dir=work_dir, percentile=percentile or DEFAULT_PERCENTILE,
                            search=search, tolerance=tolerance, log=log, check=check,
                            outlier_channels=outlier_channels)
    notes = outcome.notes
    if precision == "int8_fp16":
        from trt_converters.precision.fp16 import describe_fp32_ops, ops_kept_in_fp32
        import onnx

        notes.append(describe_fp32_ops(ops_kept_in_fp32(onnx.load(str(staged)))))
    return source_notes + notes, outcome.details, outcome.check_outputs

