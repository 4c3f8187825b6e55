"""The OpenVINO stage of a conversion: IRs made from the verified FP32 ONNX graph, each precision verified
against PyTorch within its budget (verify.DEFAULT_TOLERANCES, --atol/--rtol/--min-cosine), one chosen.

--openvino-precision fp32|bf16|int8 makes and verifies that one (a miss fails the run). `auto` takes
OpenVINO's own choice on this CPU (bf16 where it is native, fp32 elsewhere) and falls back to fp32 when
BF16 misses its budget; with --tune every precision is made and verified, and the tuner measures those
within budget. INT8 is judged on the first calibration samples when --calib-data is given (as the other
INT8 paths are), top-1 agreement with PyTorch reported beside the budget.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from trt_converters.errors import StageError
from trt_converters.openvino_cpu import PRECISIONS


@dataclass(frozen=True)
class StageInputs:
    """What the stage reads from the run: its options, IO spec, profiles and FP32 graph, where staged files go
    (final path -> staging path), the verification data per precision ((input sets, references, what they
    are), or None when there is nothing to verify against) and the calibration arrays the run loaded."""

    options: object
    io: object
    profiles: dict
    onnx_fp32: Path | None
    staged: Callable[[Path], Path]
    verification_data: Callable[[str], tuple | None]
    calibration: dict | None = None


@dataclass(frozen=True)
class OpenVINOArtifacts:
    """The stage's result: the staged IR of each precision made (fp32 and bf16 share one), whether each met its
    budget, the precision chosen (None where --tune chooses) and the report's `openvino` stage."""

    irs: dict[str, Path]
    met_budget: dict[str, bool]
    chosen: str | None
    entry: dict

    def within_budget(self) -> list[str]:
        return [p for p in PRECISIONS if self.met_budget.get(p)]


def ir_paths(options) -> dict[str, Path]:
    """Where the IRs go (each with its .bin beside it): the FP32 IR serves fp32 and bf16."""
    folder = options.artifact_dir()
    return {"fp32": folder / "model.openvino.xml", "int8": folder / "model.openvino-int8.xml"}


def output_files(options) -> list[tuple[str, Path]]:
    """The files this stage may write, for the up-front overwrite checks."""
    from trt_converters.openvino_cpu.lower import ir_bin

    files = []
    for precision, xml in ir_paths(options).items():
        files += [(f"the OpenVINO {precision} IR", xml), (f"the OpenVINO {precision} IR weights", ir_bin(xml))]
    return files


def wanted_precisions(options) -> list[str]:
    """The precisions to make and verify, in the order a choice without measurement takes them."""
    from trt_converters.openvino_cpu.runtime import default_precision, has_bf16

    if options.openvino_precision != "auto":
        return [options.openvino_precision]
    if options.tune:  # BF16 only where it is native: elsewhere OpenVINO would run it as FP32
        return [p for p in PRECISIONS if p != "bf16" or has_bf16()]
    return list(dict.fromkeys([default_precision(), "fp32"]))


def lower_for_openvino(run: StageInputs, log: Callable) -> OpenVINOArtifacts:
    """Makes and verifies the IRs, chooses one (without --tune); the report entry is `artifacts.entry`."""
    from trt_converters.openvino_cpu.lower import convert_to_ir, ir_bin
    from trt_converters.openvino_cpu.runtime import cpu_features, openvino_module

    options = run.options
    if run.onnx_fp32 is None:
        raise StageError("--cpu-runtime openvino needs the FP32 ONNX graph: pass --generate-onnx or --onnx-path")
    features = cpu_features()
    precisions = wanted_precisions(options)
    paths = {key: run.staged(path) for key, path in ir_paths(options).items()}
    started = time.perf_counter()
    log(f"[openvino] FP32 IR from {Path(run.onnx_fp32).name}")
    irs: dict[str, Path] = {}
    met_budget: dict[str, bool] = {}
    fp32_xml = convert_to_ir(run.onnx_fp32, paths["fp32"])
    entry: dict = {"openvino": openvino_module().__version__, "cpu_features": features, "precisions": {},
                   "files": {"fp32": str(ir_paths(options)["fp32"])}}
    for precision in precisions:
        if precision == "int8":
            xml, details = _quantize(run, fp32_xml, paths["int8"], log)
            entry["files"]["int8"] = str(ir_paths(options)["int8"])
            entry["int8"] = details
        else:
            xml = fp32_xml
        irs[precision] = xml
        result = _verify(run, xml, precision)
        entry["precisions"][precision] = result
        met_budget[precision] = result["met_budget"]
        log(f"[openvino] {precision}: {result['summary']}")
        if not options.tune and result["met_budget"]:
            break
    chosen = _choose(options, met_budget, entry)
    if "int8" in irs and chosen not in (None, "int8") and not options.tune:
        for path in (paths["int8"], ir_bin(paths["int8"])):
            path.unlink(missing_ok=True)
    entry["seconds"] = round(time.perf_counter() - started, 3)
    shown = chosen or ("int8" if "int8" in irs else "fp32")
    final = ir_paths(options)["int8" if shown == "int8" else "fp32"]
    staged = irs.get(shown, fp32_xml)
    entry.update(path=str(final), bytes=staged.stat().st_size + ir_bin(staged).stat().st_size)
    if chosen and entry["precisions"][chosen].get("verified"):
        entry["verify"] = entry["precisions"][chosen]
    return OpenVINOArtifacts(irs=irs, met_budget=met_budget, chosen=chosen, entry=entry)


def _choose(options, met_budget: dict[str, bool], entry: dict) -> str | None:
    """Without --tune: the first precision within budget (an explicit one that misses fails the run)."""
    if options.tune:
        entry["chosen"] = "by --tune"
        return None
    passed = [p for p in PRECISIONS if met_budget.get(p)]
    if not passed:
        tried = "; ".join(f"{p}: {r['summary']}" for p, r in entry["precisions"].items())
        raise StageError(f"no OpenVINO precision met its budget ({tried}); loosen --atol/--rtol/--min-cosine "
                         "or choose another --openvino-precision")
    chosen = [p for p in entry["precisions"] if p in passed][0]
    asked = options.openvino_precision
    entry["chosen"] = chosen
    entry["why"] = (f"--openvino-precision {asked}" if asked != "auto" else
                    "OpenVINO's default on this CPU" if chosen == wanted_precisions(options)[0]
                    else f"{wanted_precisions(options)[0]} missed its budget")
    return chosen


def _quantize(run: StageInputs, fp32_xml: Path, out_xml: Path, log: Callable) -> tuple[Path, dict]:
    from trt_converters.calibration import load_calibration_data
    from trt_converters.openvino_cpu.lower import quantize_ir

    options = run.options
    calibration = run.calibration
    if calibration is None:
        calibration = load_calibration_data(run.io, run.profiles, source=options.calib_data,
                                            samples=options.calib_samples, tokenizer_path=options.tokenizer_path,
                                            image_options=options.image_options)
    elif options.calib_samples:
        calibration = {name: value[:options.calib_samples] for name, value in calibration.items()}
    source = str(options.calib_data) if options.calib_data else "synthetic samples"
    log(f"[openvino] INT8 by NNCF (transformer preset, SmoothQuant) on {source}")
    result = quantize_ir(fp32_xml, out_xml, calibration)
    return result.path, {**result.as_report(), "calibration": source}


def _verify(run: StageInputs, xml: Path, precision: str) -> dict:
    from trt_converters.onnxruntime_cpu.accuracy import accuracy_report
    from trt_converters.openvino_cpu.runtime import inference_hint, run_ir
    from trt_converters.verify import failure_message

    options = run.options
    data = run.verification_data("int8" if precision == "int8" else "fp32")
    if data is None:
        return {"met_budget": True, "verified": False, "inference_precision": inference_hint(precision),
                "summary": "not verified (no PyTorch reference without --generate-onnx)"}
    input_sets, references, inputs_used = data
    tolerance = _tolerance(options, precision)
    try:
        candidates = run_ir(xml, input_sets, precision)
    except RuntimeError as exc:  # a graph OpenVINO cannot compile or run
        lines = [line for line in str(exc).splitlines() if line.strip()]
        return {"met_budget": False, "verified": True, "inference_precision": inference_hint(precision),
                "summary": f"OpenVINO could not run it: {lines[-1].strip() if lines else exc}"}
    report = accuracy_report(references, [{k: c[k] for k in r} for r, c in zip(references, candidates)], tolerance)
    worst = report.worst()
    agreement = {name: f"{agree}/{rows}" for name, (agree, rows) in report.top_class_agreement.items()}
    summary = (f"max rel error {worst.max_rel_error:.2e} ({worst.name}), min cosine "
               f"{min(c.cosine for c in report.comparisons):.6f} on {inputs_used}")
    if not report.passed:
        summary = failure_message(f"OpenVINO {precision}", report.comparisons, tolerance)
    return {"met_budget": report.passed, "verified": True, "inference_precision": inference_hint(precision),
            "tolerance": vars(tolerance), "inputs": inputs_used, "outputs": [c.as_dict() for c in report.comparisons],
            "top1_agreement": agreement, "summary": summary}


def _tolerance(options, precision: str):
    """The precision's budget; --atol/--rtol/--min-cosine apply to the precision asked for (all under auto)."""
    from trt_converters.verify import DEFAULT_TOLERANCES

    if options.openvino_precision in ("auto", precision):
        return options.precision_options().tolerance(precision)
    return DEFAULT_TOLERANCES[precision]


def runs_openvino(serving, tune: bool) -> bool:
    """Whether this run makes OpenVINO IRs (`serving`: the resolved ServingChoice): the CPU runtime is OpenVINO,
    or `auto` where --tune measures both."""
    from trt_converters.openvino_cpu.choice import BACKEND_RUNTIME

    return serving.cpu_runtime == "openvino" or (serving.cpu_runtime == "auto" and tune
                                                 and serving.backend in BACKEND_RUNTIME)


def tune_serving(options, serving, onnx_graph: Path | None, artifacts: OpenVINOArtifacts | None, inputs: dict,
                 log: Callable) -> tuple[dict, dict]:
    """--tune across runtimes: (the ServingChoice fields of the winner, the report's `tune` stage)."""
    from trt_converters.openvino_cpu.choice import BACKEND_RUNTIME, COUNTERPART
    from trt_converters.openvino_cpu.tune import contenders_of_run, tune_runtimes

    onnx_precision = f"int8 ({options.onnx_int8})" if options.onnx_int8 else options.precision_mode
    contenders = contenders_of_run(onnx_graph, artifacts, serving.cpu_runtime, onnx_precision)
    log("[tune] measuring " + ", ".join(f"{c.runtime} {c.precision}" for c in contenders if c.within_budget)
        + " x instances x intra-op threads (batch-1 requests, opt shape)")
    result = tune_runtimes(contenders, inputs)
    winner = result.winner
    backend = serving.backend
    if BACKEND_RUNTIME.get(backend) != winner["runtime"]:
        backend = COUNTERPART[backend]
    update = {"backend": backend, "cpu_runtime": winner["runtime"], "instance_count": winner["instances"],
              "intra_op_threads": winner["threads"], "cpu_runtime_why": "--tune: the fastest row within its budget"}
    if winner["runtime"] == "openvino":
        update["openvino_precision"] = winner["precision"]
    features = ", ".join(name for name, found in result.cpu_features["flags"].items() if found) or "none found"
    log(f"[tune] CPU features: {features}")
    log(f"[tune] {winner['runtime']} {winner['precision']}, {winner['instances']} instance(s) x {winner['threads']} "
        f"thread(s): {winner['runs_per_s']} runs/s; served by --triton-backend {backend}")
    return update, result.as_dict()
