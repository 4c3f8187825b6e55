"""One ONNX graph against the PyTorch references: per output errors under the precision's budget."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import StageError
from trt_converters.precision.options import PrecisionOptions
from trt_converters.reference_check import reference_std
from trt_converters.stages.context import log
from trt_converters.stages.references import VerificationData
from trt_converters.verify import DEFAULT_TOLERANCES, Tolerance, compare_output_sets, failure_message


@dataclass(frozen=True)
class Verifier:
    """Verifies graphs of this run: its data, its budgets, and the FP32 graph a failed lowering is traced in."""

    data: VerificationData
    budgets: "Budgets"
    fp32_onnx: Path | None = None

    def verify(self, onnx_path: Path, precision: str, label: str, outputs: list | None = None) -> dict:
        """The report's verify entry; a StageError naming the first divergence where the graph misses its budget.
        `outputs`: the graph's outputs on the verification inputs where the lowering computed them already."""
        from trt_converters.onnx_runner import run_onnx_model

        started = time.perf_counter()
        tolerance = self.budgets.tolerance(precision)
        data = self.data.for_precision(precision)
        # TensorRT-targeted Q/DQ graphs run unfused (TensorRT's arithmetic); ONNX Runtime INT8 graphs as ORT
        # serves them
        candidates = outputs if outputs is not None else run_onnx_model(onnx_path, data.input_sets,
                                                                         qdq_fusion=precision == "ort_int8")
        comparisons = compare_output_sets(data.references, candidates, tolerance)
        shapes = [{k: list(v.shape) for k, v in s.items()} for s in data.input_sets]
        summary = {"tolerance": vars(tolerance), "inputs": data.label, "input_shapes": shapes,
                   "reference_std": reference_std(data.references),
                   **({"drawn_as": data.drawn_as} if data.drawn_as is not None else {}),
                   "outputs": [c.as_dict() for c in comparisons], "seconds": round(time.perf_counter() - started, 3)}
        if not all(c.passed for c in comparisons):
            message = failure_message(label, comparisons, tolerance)
            if precision != "fp32" and self.fp32_onnx is not None:
                from trt_converters.precision.diagnose import first_divergence, worst_input_set

                worst_set = data.input_sets[worst_input_set(data.references, candidates)]
                divergence = first_divergence(self.fp32_onnx, onnx_path, worst_set, tolerance=tolerance)
                if divergence:
                    message += f"; first divergence: {divergence}"
            raise StageError(message)
        worst = max(comparisons, key=lambda c: c.max_rel_error)
        log(f"[verify] {label}: max rel error {worst.max_rel_error:.2e} ({worst.name}), "
            f"min cosine {min(c.cosine for c in comparisons):.6f} on {data.label}")
        return summary


@dataclass(frozen=True)
class Budgets:
    """Each precision's default budget; --atol/--rtol/--min-cosine override the budget of the precision asked
    for (`requested`: the run's precision mode, or ort_int8 with --onnx-int8)."""

    precision: PrecisionOptions
    requested: str

    def tolerance(self, precision: str) -> Tolerance:
        from trt_converters.precision import tolerance_key

        if precision != self.requested and self.requested != "auto":
            return DEFAULT_TOLERANCES[tolerance_key(precision)]
        return self.precision.tolerance(precision)
