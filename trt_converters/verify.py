"""Numerical comparison of a candidate (ONNX Runtime, a lowered graph) against a reference (PyTorch).

The rule per output: max|candidate - reference| <= atol + rtol * max|reference|, and the cosine
similarity of the flattened outputs >= min_cosine. Relative error is reported against the reference's
largest magnitude, so near-zero elements do not blow it up (random-weight logits are often near zero).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from trt_converters.errors import StageError


@dataclass(frozen=True)
class Tolerance:
    atol: float
    rtol: float
    min_cosine: float

    def with_overrides(self, atol: float | None = None, rtol: float | None = None,
                       min_cosine: float | None = None) -> "Tolerance":
        return Tolerance(atol=self.atol if atol is None else atol, rtol=self.rtol if rtol is None else rtol,
                         min_cosine=self.min_cosine if min_cosine is None else min_cosine)


DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.99999),
    "fp16": Tolerance(atol=1e-3, rtol=1e-2, min_cosine=0.999),  # measured on tiny models: rel <= 4.3e-4, cos >= 0.9999999
    # BF16 keeps 8 significant bits (FP16 11): OpenVINO BF16 on a tiny RoBERTa max abs error 4e-3 (logits ~0.3)
    "bf16": Tolerance(atol=1e-2, rtol=5e-2, min_cosine=0.998),
    # INT8 measured (Q/DQ unfused): tiny models rel <= 0.043, cos >= 0.9998; the real all-MiniLM-L6-v2 on its
    # calibration samples rel 0.25, cos 0.976. The budget catches broken lowerings (quantized residual Adds
    # gave cos 0.65 there), not small quality losses: judge those on your own data.
    "int8": Tolerance(atol=5e-2, rtol=0.3, min_cosine=0.97),
}


@dataclass(frozen=True)
class OutputComparison:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    max_rel_error: float
    cosine: float
    passed: bool
    reference_non_finite: int = 0  # NaN/inf elements: in the reference, the model itself is broken
    candidate_non_finite: int = 0  # only where the reference is finite: the conversion is broken

    def as_dict(self) -> dict:
        return asdict(self)


def compare_arrays(name: str, reference, candidate, tolerance: Tolerance, *,
                   matching_non_finite_ok: bool = False) -> OutputComparison:
    """Judges one output. A non-finite reference fails: there is nothing to verify against. With
    `matching_non_finite_ok` (intermediate tensors, e.g. -inf attention masks), non-finite values that the
    candidate reproduces exactly are left out of the error and the cosine instead."""
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    if ref.shape != cand.shape:
        raise StageError(f"output {name!r}: shape {tuple(cand.shape)} differs from the reference's {tuple(ref.shape)}")
    shape = tuple(np.shape(reference))
    if ref.size == 0:
        return OutputComparison(name, shape, 0.0, 0.0, 1.0, True)
    ref, cand = ref.ravel(), cand.ravel()
    ref_bad, cand_bad = ~np.isfinite(ref), ~np.isfinite(cand)
    if matching_non_finite_ok:
        same = ref_bad & ((ref == cand) | (np.isnan(ref) & np.isnan(cand)))
        ref_bad, cand_bad = ref_bad & ~same, cand_bad & ~same
        ref, cand = ref[~same], cand[~same]
    if ref_bad.any() or cand_bad.any():
        return OutputComparison(name, shape, float("inf"), float("inf"), float("nan"), False,
                                reference_non_finite=int(ref_bad.sum()),
                                candidate_non_finite=int((cand_bad & ~ref_bad).sum()))
    if ref.size == 0:
        return OutputComparison(name, shape, 0.0, 0.0, 1.0, True)
    max_abs = float(np.abs(ref - cand).max())
    scale = float(np.abs(ref).max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    cosine = _cosine(ref, cand)
    passed = bool(max_abs <= tolerance.atol + tolerance.rtol * scale and cosine >= tolerance.min_cosine)
    return OutputComparison(name, shape, max_abs, max_rel, cosine, passed)


def _cosine(a, b) -> float:
    import numpy as np

    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 1.0 if float(np.abs(a - b).max()) == 0.0 else 0.0
    return float(np.dot(a, b) / norm)


def compare_output_sets(references: list[dict], candidates: list[dict], tolerance: Tolerance) -> list[OutputComparison]:
    """One comparison per output name, worst case over all input sets (errors max, cosine min)."""
    worst: dict[str, OutputComparison] = {}
    for reference, candidate in zip(references, candidates):
        for name, ref in reference.items():
            if name not in candidate:
                raise StageError(f"output {name!r} is missing from the candidate's outputs ({', '.join(candidate)})")
            result = compare_arrays(name, ref, candidate[name], tolerance)
            previous = worst.get(name)
            worst[name] = result if previous is None else OutputComparison(
                name, result.shape, max(previous.max_abs_error, result.max_abs_error),
                max(previous.max_rel_error, result.max_rel_error), _worse_cosine(previous.cosine, result.cosine),
                previous.passed and result.passed,
                previous.reference_non_finite + result.reference_non_finite,
                previous.candidate_non_finite + result.candidate_non_finite)
    return list(worst.values())


def _worse_cosine(a: float, b: float) -> float:
    return a if math.isnan(a) or (not math.isnan(b) and a <= b) else b


def non_finite_reference_message(name: str, count: int, reference: str = "the reference", *, where: str = "",
                                 cause: str = "") -> str:
    return (f"{reference} itself is non-finite: output {name!r} holds {count} NaN/inf value(s){where}, so there is "
            f"nothing to verify against; the checkpoint or the model is broken ("
            f"{cause or 'e.g. a NaN weight from a diverged training run, or a forward() that computes NaN'}), "
            "not the conversion")


def failure_message(label: str, comparisons: list[OutputComparison], tolerance: Tolerance) -> str:
    broken = next((c for c in comparisons if c.reference_non_finite), None)
    if broken is not None:
        return non_finite_reference_message(broken.name, broken.reference_non_finite)
    defect = next((c for c in comparisons if c.candidate_non_finite), None)
    if defect is not None:
        return (f"{label} computes {defect.candidate_non_finite} NaN/inf value(s) in output {defect.name!r} where "
                "the reference is finite: a defect of the export or lowering (e.g. an FP16 overflow), not of "
                "the model")
    failed = sorted((c for c in comparisons if not c.passed), key=lambda c: (-c.max_rel_error, c.cosine))
    worst = failed[0]
    return (f"{label} does not match the reference: worst output {worst.name!r} has max abs error "
            f"{worst.max_abs_error:.3g}, max rel error {worst.max_rel_error:.3g}, cosine {worst.cosine:.6f} "
            f"(budget atol {tolerance.atol}, rtol {tolerance.rtol}, min cosine {tolerance.min_cosine}; "
            "loosen with --atol/--rtol/--min-cosine if this is expected)")
