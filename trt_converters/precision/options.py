"""The precision choices of one run, as one frozen value (built and validated by ConvertOptions.precision_options)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class PrecisionOptions:
    """The precision choices of one run, validated together (ConvertOptions.precision_options): the mode, the
    calibration, the budget overrides and the INT8 search. precision/ and the ONNX Runtime INT8 lowering take it
    whole; `mode` is the precision one lowering makes (fp16, int8, int8_fp16) or the run's mode (also fp32, auto)."""

    mode: str = "fp32"  # fp32, fp16, int8, int8_fp16, auto
    calib_method: str = "max"  # canonical name from precision/methods.py
    calib_percentile: float | None = None  # None: DEFAULT_PERCENTILE (methods.py)
    calib_data: Path | None = None
    calib_samples: int | None = None
    calibration_cache: Path | None = None
    tokenizer_path: Path | None = None
    image_options: dict | None = None
    int8_search: bool | None = None  # None: search when the INT8 graph misses its budget
    int8_outlier_channels: bool = True  # outlier input channels of INT8 MatMuls computed apart (outlier_channels.py)
    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None

    def tolerance(self, precision: str):
        """The budget for a graph of `precision`: its default with the user's overrides."""
        from trt_converters.precision import tolerance_key
        from trt_converters.verify import DEFAULT_TOLERANCES

        return DEFAULT_TOLERANCES[tolerance_key(precision)].with_overrides(self.atol, self.rtol, self.min_cosine)

    def for_precision(self, precision: str) -> "PrecisionOptions":
        """These options for one lowering to `precision`."""
        return replace(self, mode=precision)
