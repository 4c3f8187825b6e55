"""Makes sure a verification can fail: the PyTorch reference must vary with the inputs.

A check that compares a constant with itself passes any graph. So before verifying, per output:
`reference_std` is the largest per-element standard deviation of the reference across all verification
samples (rows of equal per-sample shape are compared with each other); 0 means every sample gave the
same output. Each input is then redrawn alone (the others kept) and the largest change of each output,
relative to the output's largest magnitude, is its `input_effect`. An output that is constant across the
samples fails, naming the inputs it ignores, unless it is listed in `--allow-constant-output`.
"""

from __future__ import annotations

from trt_converters.errors import StageError, UserError

# Relative spread below which an output counts as constant: rows of one batch computed from the same values
# can differ by rounding between batch positions and batch sizes, never by more than this.
CONSTANT_RELATIVE_STD = 1e-6
IGNORED_RELATIVE_EFFECT = 1e-6


def reference_std(references: list[dict]) -> dict[str, float | None]:
    """Per output: the largest per-element std across samples; None with fewer than two samples of one shape."""
    import numpy as np

    rows: dict[str, dict[tuple, list]] = {}
    for reference in references:
        for name, array in reference.items():
            array = np.asarray(array, dtype=np.float64)
            groups = rows.setdefault(name, {})
            for row in array.reshape(array.shape[0], -1) if array.ndim else array.reshape(1, 1):
                groups.setdefault(array.shape[1:], []).append(row)
    spread: dict[str, float | None] = {}
    for name, groups in rows.items():
        stds = [float(np.std(np.stack(group), axis=0).max()) for group in groups.values()
                if len(group) > 1 and group[0].size]
        spread[name] = max(stds) if stds else None
    return spread


def _scale(references: list[dict], name: str) -> float:
    import numpy as np

    return max((float(np.abs(r[name]).max()) for r in references if np.size(r[name])), default=0.0)


def input_effects(run, inputs: dict, reference: dict, redrawn: dict) -> dict[str, dict[str, float]]:
    """{input: {output: max|change| / max|reference|}} when that input alone takes its redrawn values."""
    import numpy as np

    effects = {}
    for name in inputs:
        changed = run({**inputs, name: redrawn[name]})
        effects[name] = {}
        for output, ref in reference.items():
            scale = float(np.abs(ref).max()) if np.size(ref) else 0.0
            delta = float(np.abs(np.asarray(changed[output], np.float64) - ref).max()) if np.size(ref) else 0.0
            effects[name][output] = delta / scale if scale > 0 else delta
    return effects


def check_references(run, input_sets: list[dict], references: list[dict], *, redraw,
                     allow_constant: list[str] = ()) -> dict:
    """The report entry: reference_std, input_effect, and the outputs accepted as constant. Raises StageError
    for an output constant across samples that is not in `allow_constant`.

    `run(inputs) -> outputs` computes the reference; `redraw(inputs) -> inputs` draws other values at the
    same shapes. The effects are measured on the input set with the most samples."""
    declared = set(references[0]) if references else set()
    unknown = [name for name in allow_constant if name not in declared]
    if unknown:
        raise UserError(f"--allow-constant-output names {unknown[0]!r}, which is not an output "
                        f"({', '.join(sorted(declared))})")
    spread = reference_std(references)
    largest = max(range(len(input_sets)), key=lambda i: len(next(iter(input_sets[i].values()))))
    effects = input_effects(run, input_sets[largest], references[largest], redraw(input_sets[largest]))
    entry = {"reference_std": spread, "input_effect": effects,
             "samples": sum(len(next(iter(s.values()))) for s in input_sets),
             "allowed_constant": list(allow_constant)}
    for output, std in spread.items():
        scale = _scale(references, output)
        ignored = [name for name, by_output in effects.items() if by_output[output] <= IGNORED_RELATIVE_EFFECT]
        constant = (std is not None and std <= CONSTANT_RELATIVE_STD * scale) or (
            std is None and len(ignored) == len(effects))
        if constant and output not in allow_constant:
            ignores = ", ".join(ignored) if ignored else "none of its inputs alone"
            raise StageError(
                f"output {output!r} is the same for all {entry['samples']} verification samples (reference std "
                f"{std or 0:.3g}) and ignores input(s) {ignores}, so verifying it would compare a constant with "
                "itself; check forward() and the IO config's inputs, or pass --allow-constant-output "
                f"{output} if a constant is expected")
    return entry
