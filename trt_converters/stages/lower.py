"""The lowering stage for TensorRT: the FP32 graph to FP16 or INT8 Q/DQ, verified; --precision auto keeps the
first of INT8 (with its exclusion search), FP16 and FP32 that meets its budget."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from trt_converters import library_logs
from trt_converters.errors import StageError
from trt_converters.precision.options import PrecisionOptions
from trt_converters.stages.context import RunContext, file_facts, log, progress_lines, warnings_logged
from trt_converters.stages.verification import Budgets, Verifier

# --precision auto: the order tried. The INT8 step searches for nodes to keep out of INT8 when the plain INT8
# graph misses the budget (measured on the verification data itself), so it covers "INT8 with exclusions".
AUTO_ORDER = ("int8", "fp16", "fp32")
# Candidate graphs a lowering fallback tried and dropped: routine, kept for the report and --verbose.
_REJECTED_CANDIDATE = re.compile(r" graph rejected: | failed \(")


@dataclass(frozen=True)
class LoweredGraph:
    """The graph kept (staged path; None where FP32 was kept), its report entry under `lower_<precision>`, and
    for --precision auto the report's `precision_choice`."""

    graph: Path | None
    precision: str
    entry: dict | None = None
    choice: dict | None = None

    def report_entries(self) -> dict:
        return {f"lower_{self.precision}": self.entry} if self.entry is not None else {}


@dataclass(frozen=True)
class _Candidate:
    path: Path
    entry: dict
    outputs: list | None  # the graph's outputs on the verification inputs, where the lowering computed them


def lower_for_tensorrt(run: RunContext, precision: PrecisionOptions, fp32_onnx: Path | None, budgets: Budgets,
                       verifier: Verifier | None) -> LoweredGraph:
    """`precision.mode`: fp16, int8, int8_fp16 or auto. `verifier` None: the lowered graph is not verified."""
    from trt_converters.errors import UserError

    if fp32_onnx is None:
        raise UserError("lowering precision needs an FP32 ONNX graph: pass --generate-onnx or an existing --onnx-path")
    if precision.mode == "auto":
        return _choose_precision(run, precision, fp32_onnx, budgets, verifier)
    candidate = _lower(run, precision.for_precision(precision.mode), fp32_onnx, budgets, verifier)
    entry = candidate.entry
    if verifier is not None:
        entry = {**entry, "verify": verifier.verify(candidate.path, precision.mode, f"{precision.mode} graph",
                                                    candidate.outputs)}
    return LoweredGraph(candidate.path, precision.mode, entry)


def _lower(run: RunContext, precision: PrecisionOptions, fp32_onnx: Path, budgets: Budgets,
           verifier: Verifier | None) -> _Candidate:
    """Lowers the FP32 graph to `precision.mode` in the staging area."""
    from trt_converters.precision import LoweringCheck, lower_graph

    options = run.options
    final = options.lowered_onnx_path(precision.mode)
    log(f"[lower] {precision.mode} for TensorRT")
    tolerance = budgets.tolerance(precision.mode)
    check, calibration = LoweringCheck(tolerance), None
    if verifier is not None:
        # The lowering judges its candidates on the verification data: the kept one is verified by that run.
        data = verifier.data.for_precision(precision.mode)
        check = LoweringCheck(tolerance, data.input_sets, data.references)
        calibration = verifier.data.calibration
    with warnings_logged() as warned, library_logs.captured(echo=options.verbose) as library_log, \
            progress_lines("lower"):
        result = lower_graph(fp32_onnx, run.staged(final), precision, io=run.io, profiles=run.profiles, check=check,
                             calibration=calibration, log=lambda m: log(f"[lower] {m}"))
    for note in result.notes:
        if note not in warned and (options.verbose or not _REJECTED_CANDIDATE.search(note)):
            log(f"[lower] {note}")
    entry = {"seconds": round(result.seconds, 3), "notes": result.notes, "library_log": library_log,
             **file_facts(result.path, final=final)}
    if result.details:
        entry["int8"] = result.details
    return _Candidate(result.path, entry, result.check_outputs)


def _choose_precision(run: RunContext, precision: PrecisionOptions, fp32_onnx: Path, budgets: Budgets,
                      verifier: Verifier | None) -> LoweredGraph:
    steps: list[dict] = []
    kept: tuple[str, Path, dict] | None = None
    for step in AUTO_ORDER:
        if step == "fp32":
            steps.append({"precision": "fp32", "why": "no lowered graph met its budget" if steps else "asked for",
                          "met_budget": True})
            break
        try:
            candidate = _lower(run, precision.for_precision(step), fp32_onnx, budgets, verifier)
        except StageError as exc:
            steps.append({"precision": step, "met_budget": False, "why": f"lowering failed: {exc}",
                          "lowering_failed": True})
            log(f"[precision auto] {step}: lowering failed ({exc}); next")
            continue
        entry, int8 = candidate.entry, candidate.entry.get("int8", {})
        if verifier is not None:
            try:
                entry = {**entry, "verify": verifier.verify(candidate.path, step, f"{step} graph", candidate.outputs)}
            except StageError as exc:
                steps.append({"precision": step, "met_budget": False, "why": _missed_why(int8, exc),
                              "searched": "search" in int8})
                log(f"[precision auto] {step} misses its budget; next")
                candidate.path.unlink(missing_ok=True)
                continue
        elif step == "int8" and not int8.get("met_budget_on_calibration_samples", True):
            steps.append({"precision": step, "met_budget": False, "searched": "search" in int8,
                          "why": "misses its budget on the calibration samples"})
            candidate.path.unlink(missing_ok=True)
            continue
        why = "met its budget"
        if int8.get("excluded_nodes"):
            why += f" with {len(int8['excluded_nodes'])} node(s) kept out of INT8 (the plain INT8 graph missed it)" \
                if int8.get("error_over_budget", 0) > 1 else f" ({len(int8['excluded_nodes'])} node(s) kept out of INT8)"
        steps.append({"precision": step, "met_budget": True, "why": why})
        kept = (step, candidate.path, entry)
        break
    chosen = steps[-1]["precision"]
    chosen_label = chosen
    if chosen == "int8" and kept[2].get("int8", {}).get("excluded_nodes"):
        chosen_label = "int8 with exclusions"
    log(f"[precision auto] chose {chosen_label}: " + "; ".join(f"{s['precision']}: {s['why']}" for s in steps))
    choice = {"chosen": chosen, "label": chosen_label, "steps": steps,
              "budgets_from": "each precision's default budget with --atol/--rtol/--min-cosine applied"}
    if kept is None:
        return LoweredGraph(None, "fp32", None, choice)
    return LoweredGraph(kept[1], kept[0], kept[2], choice)


def _missed_why(int8: dict, exc: StageError) -> str:
    why = str(exc)
    if "search" in int8:
        why = (f"plain INT8 at {int8['error_over_budget']:.3g}x its budget; keeping "
               f"{len(int8.get('excluded_nodes', []))} node(s) out of INT8 left "
               f"{int8['error_over_budget_after_search']:.3g}x: {why}")
    return why
