"""Accuracy of a lowered graph against FP32 PyTorch: the verify.py metrics plus top-class agreement.

The default budget is DEFAULT_TOLERANCES["int8"], the same budget as TensorRT Q/DQ INT8. Measured
with 7-bit weights on random-weight RoBERTa: tiny graphs rel error 0.0006-0.04, cosine >= 0.999;
RoBERTa-base (length 128) dynamic 0.053 / 0.9988, static 0.062 / 0.9988. Top-class agreement is reported, not
judged: random-weight logits are near-tied (BENCHMARKS.md, ONNX Runtime INT8 notes).
"""

from __future__ import annotations

from dataclasses import dataclass

from trt_converters.verify import DEFAULT_TOLERANCES, OutputComparison, Tolerance, compare_output_sets

INT8_TOLERANCE = DEFAULT_TOLERANCES["int8"]


@dataclass(frozen=True)
class AccuracyReport:
    comparisons: list[OutputComparison]
    top_class_agreement: dict[str, tuple[int, int]]  # output name -> (agreeing rows, rows)
    tolerance: Tolerance

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons)

    def worst(self) -> OutputComparison:
        return max(self.comparisons, key=lambda c: (c.max_rel_error, -c.cosine))


def accuracy_report(references: list[dict], candidates: list[dict],
                    tolerance: Tolerance = INT8_TOLERANCE) -> AccuracyReport:
    """Compares output sets (name -> array per input set); argmax agreement over the last axis, per row."""
    import numpy as np

    comparisons = compare_output_sets(references, candidates, tolerance)
    agreement: dict[str, tuple[int, int]] = {}
    for reference, candidate in zip(references, candidates):
        for name, ref in reference.items():
            ref = np.asarray(ref)
            if ref.ndim == 0 or ref.shape[-1] < 2 or not np.issubdtype(ref.dtype, np.floating):
                continue
            same = np.argmax(ref, axis=-1) == np.argmax(np.asarray(candidate[name]), axis=-1)
            agree, rows = agreement.get(name, (0, 0))
            agreement[name] = (agree + int(same.sum()), rows + int(same.size))
    return AccuracyReport(comparisons, agreement, tolerance)
