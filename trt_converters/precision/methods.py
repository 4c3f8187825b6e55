"""The one table of INT8 calibration methods, for both INT8 paths: TensorRT Q/DQ (ModelOpt) and ONNX Runtime INT8.

ModelOpt 0.47's ONNX INT8 quantizer calibrates with max or entropy only (any other name silently becomes
MinMax), so percentile is computed in int8.py from activation histograms and handed to ModelOpt as a
calibration cache; ONNX Runtime's own quantizer has MinMax, Entropy, Percentile and Distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

from trt_converters.errors import UserError

DEFAULT_PERCENTILE = 99.99


@dataclass(frozen=True)
class CalibrationMethod:
    name: str
    tensorrt: bool  # usable for --use-int8 (ModelOpt Q/DQ)
    onnxruntime: str | None  # onnxruntime.quantization.CalibrationMethod member, None where ORT has none
    description: str


METHODS = {
    "max": CalibrationMethod("max", True, "MinMax", "largest |x| seen in calibration (no clipping)"),
    "entropy": CalibrationMethod("entropy", True, "Entropy", "range that minimizes the KL divergence of the histogram"),
    "percentile": CalibrationMethod("percentile", True, "Percentile",
                                    "clips at a percentile of |x| (--calib-percentile, default 99.99)"),
    "auto": CalibrationMethod("auto", True, None, "max, percentile and entropy, keeping the smallest output error"),
    "distribution": CalibrationMethod("distribution", False, "Distribution", "ONNX Runtime's distribution method"),
}
ALIASES = {"minmax": "max"}
# What --calib-method auto tries, cheapest first (percentile reuses the max pass).
AUTO_CANDIDATES = ("max", "percentile", "entropy")


def resolve_method(name: str, *, path: str = "tensorrt") -> CalibrationMethod:
    """The table entry for `name` on an INT8 path ('tensorrt' or 'onnxruntime'); a one-line UserError otherwise."""
    key = str(name).strip().lower()
    key = ALIASES.get(key, key)
    method = METHODS.get(key)
    if method is None:
        raise UserError(f"--calib-method {name!r} is unknown; use one of {', '.join(method_names())}")
    usable = method.tensorrt if path == "tensorrt" else method.onnxruntime is not None
    if not usable:
        which = "--use-int8 (TensorRT Q/DQ)" if path == "tensorrt" else "--onnx-int8 (ONNX Runtime)"
        others = [m.name for m in METHODS.values() if (m.tensorrt if path == "tensorrt" else m.onnxruntime)]
        raise UserError(f"--calib-method {method.name} is not available for {which}; use one of {', '.join(others)}")
    return method


def method_names() -> list[str]:
    return sorted([*METHODS, *ALIASES])


def check_percentile(value: float) -> float:
    value = float(value)
    if not 50.0 < value <= 100.0:
        raise UserError(f"--calib-percentile {value:g} must be in (50, 100], e.g. 99.99")
    return value
