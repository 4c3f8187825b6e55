"""The conversion run: load -> export -> verify -> lower -> build -> package -> report.

Every artifact is written into a private staging folder and moved into place only when all stages
succeeded, so a failed or interrupted run leaves the user's files as they were.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters import library_logs, progress
from trt_converters.atomic import Staging, atomic_write_text
from trt_converters.errors import StageError, UserError
from trt_converters.options import ConvertOptions
from trt_converters.reference_check import check_references, reference_std
from trt_converters.shapes import export_sample_shapes, profiles_for, synthetic_inputs, verification_shapes
from trt_converters.spec import IOSpec
from trt_converters.synthetic_inputs import drawn_as, vocabulary_of
from trt_converters.verify import DEFAULT_TOLERANCES, Tolerance, compare_output_sets, failure_message


@dataclass
class RunState:
    """What the stages hand each other within one run."""

    options: ConvertOptions
    staging: Staging
    io: IOSpec
    profiles: dict
    report: dict = field(default_factory=dict)
    model: object = None
    input_sets: list = field(default_factory=list)
    references: list = field(default_factory=list)
    onnx_fp32: Path | None = None
    serving_onnx: Path | None = None
    engine_onnx: Path | None = None
    engine: Path | None = None
    graph_inputs: list[str] | None = None
    calibration_data: dict | None = None
    real_samples: object = None  # verification_data.RealSamples once loaded; False: there are none
    vocabulary: dict | None = None  # the checkpoint's special ids, pad id and vocabulary size (synthetic ids)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _progress_lines(stage: str):
    """Long opaque calls inside the block show their progress as `[stage] ...` lines (progress.py)."""
    stream = sys.stderr  # bound now: the exporters redirect sys.stderr while they run, for every thread
    return progress.reporting(lambda message: print(f"[{stage}] {message}", file=stream, flush=True))


def run_conversion(options: ConvertOptions) -> dict:
    """Runs the stages the options ask for and returns the report (also written as JSON)."""
    from trt_converters.triton.backends import choose_serving

    serving = choose_serving(options)
    options = options.model_copy(update={"triton_backend": serving.backend, "instance_kind": serving.instance_kind})
    _check_required(options)
    io = options.model_io_config
    profiles = profiles_for(io, max_batch_size=options.max_batch_size, input_size=options.input_size)
    _check_targets(options)
    for key, derived in options.derived_values().items():
        log(f"[options] {key} = {derived['value']} (from {derived['from']})")
    if options.generate_triton_config:
        from trt_converters.triton.repository import core_model_config

        core_model_config(options, io.with_inputs(options.triton_inputs or [t.name for t in io.inputs]), profiles)
        log(f"[serve] Triton backend {serving.backend}, KIND_{serving.instance_kind.upper()} ({serving.why})")
        for warning in serving.warnings:
            log(f"warning: {warning}")
        if options.response_cache:
            log("[serve] response cache on: trt-serve starts Triton's cache for it; another server needs "
                "--cache-config local,size=BYTES")
    with Staging() as staging:
        state = RunState(options=options, staging=staging, io=io, profiles=profiles,
                         report=_report_header(options, profiles))
        if options.generate_triton_config:
            state.report["serving"] = serving.as_report()
        if options.generate_onnx:
            _stage_export(state)
        else:
            _use_existing_onnx(state)
        if options.precision != "fp32" or options.onnx_int8:
            _stage_lower(state)
        if options.generate_trt:
            _stage_build(state)
        if options.generate_triton_config:
            _stage_package(state)
        from trt_converters.report import render_json

        atomic_write_text(staging.path_for(options.resolved_report_path()), render_json(state.report))
        written = staging.commit()
    state.report["written"] = [str(p) for p in written]
    return state.report


def _check_required(options: ConvertOptions) -> None:
    if not (options.generate_onnx or options.generate_trt or options.generate_triton_config):
        raise UserError("nothing to do: pass --generate-onnx, --generate-trt and/or --generate-triton-config")
    needed = ["model_io_config", "model_name"]
    if options.generate_onnx:
        needed += ["ckpt_path", "model_script_path", "model_class_name"]
    if options.generate_triton_config:
        needed += ["triton_repo"]
    missing = [name for name in needed if getattr(options, name) is None]
    if missing:
        flags = ", ".join(f"--{m.replace('_', '-')}" for m in missing)
        raise UserError(f"missing {flags} (pass the flag or set it in --config)")
    if options.tune and (not options.generate_triton_config or options.triton_backend == "tensorrt_plan"
                         or options.instance_kind != "cpu"):
        raise UserError("--tune measures CPU serving: it needs --generate-triton-config with --instance-kind cpu and "
                        "--triton-backend python_onnxruntime or onnxruntime_onnx")
    if options.tune and (options.intra_op_threads is not None or options.instance_count != 1):
        raise UserError("--tune chooses --intra-op-threads and --instance-count by measurement; give either --tune "
                        "or those flags")
    if options.use_int8 and options.onnx_int8:
        raise UserError("--use-int8 (TensorRT Q/DQ) and --onnx-int8 (ONNX Runtime integer kernels) target different "
                        "runtimes; pick one per run")
    if options.onnx_int8 and options.generate_trt:
        raise UserError("--onnx-int8 makes an ONNX Runtime graph that TensorRT cannot build; drop --generate-trt "
                        "or use --use-int8 for a TensorRT INT8 engine")
    cache_reused = options.calibration_cache is not None and Path(options.calibration_cache).is_file()
    if options.calib_data is not None and not (cache_reused and not Path(options.calib_data).exists()):
        # a rebuild from --calibration-cache needs the data no more
        from trt_converters.calibration import check_calibration_source

        check_calibration_source(options.calib_data, options.model_io_config)
    if options.verify_data is not None:
        from trt_converters.verification_data import check_verify_source

        check_verify_source(options.verify_data, options.model_io_config)
    if options.generate_triton_config and options.triton_backend == "tensorrt_plan" and not options.generate_trt \
            and not options.resolved_engine_path().is_file():
        raise UserError(f"--generate-triton-config with --triton-backend tensorrt_plan needs an engine: pass "
                        f"--generate-trt or an existing --engine-path (not found: {options.resolved_engine_path()})")


def _check_targets(options: ConvertOptions) -> None:
    """Refuses up front, before any work: two outputs on one path or an output on an input (even with
    --overwrite), and existing artifacts without --overwrite."""
    outputs = _outputs(options)
    inputs = [(f"--{name.replace('_', '-')}", Path(getattr(options, name)))
              for name in ("ckpt_path", "model_script_path", "calib_data", "verify_data", "tokenizer_path")
              if getattr(options, name) is not None]
    if not options.generate_onnx:
        inputs.append(("--onnx-path", options.resolved_onnx_path()))
    folders = [(label, path) for label, path, kind in outputs if kind == "folder"]
    for position, (label, path, _) in enumerate(outputs):
        resolved = path.resolve()
        for other, other_path, _ in outputs[:position]:
            if resolved == other_path.resolve():
                raise UserError(f"{label} and {other} are both {path}: two artifacts cannot share one path "
                                "(not even with --overwrite); give them different paths")
        for other, folder in folders:
            if other != label and resolved.is_relative_to(folder.resolve()) and resolved != folder.resolve():
                raise UserError(f"{label} {path} lies inside {other} {folder}, which this run writes as a whole; "
                                "put it elsewhere (e.g. --output-dir outside --triton-repo)")
        for flag, source in inputs:
            if resolved == source.resolve():
                raise UserError(f"{label} {path} would replace {flag} {source}, an input of this run "
                                "(not even --overwrite allows that); write it elsewhere")
    if options.overwrite:
        return
    existing = [path for _, path, kind in outputs if kind != "cache" and path.exists()]
    if existing:
        raise UserError(f"{existing[0]} already exists; pass --overwrite to replace it")


def _outputs(options: ConvertOptions) -> list[tuple[str, Path, str]]:
    """What this run writes: (what, path, "file" | "folder" | "cache"); caches are read, then rewritten."""
    outputs = []
    if options.generate_onnx:
        outputs.append(("--onnx-path", options.resolved_onnx_path(), "file"))
    if options.precision == "auto":  # whichever it keeps
        outputs += [(f"the {p} graph", options.lowered_onnx_path(p), "file") for p in ("int8", "fp16")]
    elif options.precision != "fp32":
        outputs.append((f"the {options.precision} graph", options.lowered_onnx_path(), "file"))
    if options.onnx_int8:
        outputs.append(("the ONNX Runtime INT8 graph", options.ort_int8_onnx_path(), "file"))
        if options.ort_fusion and options.onnx_int8 == "dynamic":
            outputs.append(("the fused FP32 graph", options.ort_fused_onnx_path(), "file"))
    if options.generate_trt:
        outputs.append(("--engine-path", options.resolved_engine_path(), "file"))
    outputs.append(("--report-path", options.resolved_report_path(), "file"))
    if options.generate_triton_config:
        outputs.append(("the Triton model folder", options.triton_repo / options.model_name, "folder"))
        if options.pipeline:
            from trt_converters.pipelines import pipeline_model_names

            for name in pipeline_model_names(options.pipeline, options.resolved_pipeline_name()):
                outputs.append((f"pipeline model {name!r}", options.triton_repo / name, "folder"))
        for name in _entry_models(options):
            outputs.append((f"the input data of {name!r}", input_data_path(options, name), "file"))
    if options.generate_trt and options.timing_cache is not None:
        outputs.append(("--timing-cache", Path(options.timing_cache), "cache"))
    if options.use_int8 and options.calibration_cache is not None:
        outputs.append(("--calibration-cache", Path(options.calibration_cache), "cache"))
    return outputs


def _report_header(options: ConvertOptions, profiles: dict) -> dict:
    from trt_converters.report import tool_versions

    return {
        "model_name": options.model_name,
        "precision": options.precision,
        "versions": tool_versions(),
        "io": options.model_io_config.model_dump(exclude_none=True),
        "profiles": {name: {"min": p.min, "opt": p.opt, "max": p.max} for name, p in profiles.items()},
        "option_sources": options.option_sources(),
        "derived_values": options.derived_values(),
        "stages": {},
    }


def _tolerance(options: ConvertOptions, precision: str) -> Tolerance:
    """The precision's default budget; --atol/--rtol/--min-cosine override the budget of the precision asked for."""
    key = "int8" if precision.startswith("int8") or precision == "ort_int8" else precision
    requested = "ort_int8" if options.onnx_int8 else options.precision
    if precision != requested and requested != "auto":
        return DEFAULT_TOLERANCES[key]
    return options.precision_options().tolerance(precision)


def _stage_export(state: RunState) -> None:
    from trt_converters.export import export_onnx
    from trt_converters.loading import load_model

    options = state.options
    log(f"[load] {options.model_class_name} from {options.model_script_path}, weights {options.ckpt_path}")
    model, load_info = load_model(options.model_script_path, options.model_class_name, options.ckpt_path,
                                  model_kwargs=options.model_kwargs, strict=options.strict, device=options.device,
                                  input_names=[t.name for t in state.io.inputs])
    state.model = model
    sources = options.option_sources()
    state.report["model"] = {**load_info, "kwargs_sources": {k: sources.get(f"model_kwargs.{k}", "default")
                                                             for k in load_info["kwargs"]},
                             "checkpoint": _file_facts(options.ckpt_path)}
    export_shapes = export_sample_shapes(state.profiles, options.input_size)
    state.vocabulary = special = vocabulary_of(options.tokenizer_path, options.ckpt_path)
    sample = synthetic_inputs(state.io, export_shapes, seed=0, vocabulary=special)
    state.input_sets = [synthetic_inputs(state.io, shapes, seed=i + 1, vocabulary=special)
                        for i, shapes in enumerate(verification_shapes(state.profiles, export_shapes))]
    state.references = [_run_torch(model, state.io, inputs, options.device) for inputs in state.input_sets]
    _check_finite_references(state.references, load_info["non_finite_weights"])
    if not options.skip_verify:
        state.report["stages"]["reference_check"] = check_references(
            lambda inputs: _run_torch(model, state.io, inputs, options.device), state.input_sets, state.references,
            redraw=lambda inputs: synthetic_inputs(state.io, {k: v.shape for k, v in inputs.items()}, seed=1000,
                                                   vocabulary=special),
            allow_constant=options.allow_constant_output)
    target = state.staging.path_for(options.resolved_onnx_path())
    exporters = ["legacy", "dynamo"] if options.exporter == "auto" else [options.exporter]
    attempts = []
    for exporter in exporters:
        log(f"[export] {exporter} exporter, opset {options.opset}, sample shapes "
            + ", ".join(f"{k}{list(v)}" for k, v in export_shapes.items()))
        try:
            with _progress_lines("export"), progress.heartbeat(f"{exporter} export",
                                                              _export_seconds(model, exporter)):
                result = export_onnx(model, state.io, _to_device(sample, options.device), state.profiles, target,
                                     exporter=exporter, opset=options.opset)
            verification = None if options.skip_verify else _verify(state, target, "fp32", f"{exporter} ONNX export")
        except StageError as exc:
            attempts.append(f"{exporter}: {exc}")
            if options.verbose:  # the fallback is routine; the report's export entry says why
                log(f"[export] {exporter} rejected: {exc}")
            continue
        state.onnx_fp32 = state.serving_onnx = state.engine_onnx = target
        state.graph_inputs = result.graph_inputs
        state.report["stages"]["export"] = {
            "exporter": exporter, "why": ("the first exporter that exported and verified; rejected: " + "; ".join(attempts))
            if attempts else (f"asked for with --exporter {exporter}" if options.exporter != "auto"
                              else "legacy exporter tried first (fast); it verified at shapes other than the sample"),
            "opset": result.opset, "seconds": round(result.seconds, 3), "graph_inputs": result.graph_inputs,
            "notes": result.notes, **_file_facts(target, final=options.resolved_onnx_path())}
        if verification is not None:
            state.report["stages"]["verify_fp32"] = verification
        return
    raise StageError("no exporter produced a verified graph: " + " | ".join(attempts))


def _export_seconds(model, exporter: str) -> float:
    tensors = model.state_dict()
    megabytes = sum(t.numel() * t.element_size() for t in tensors.values()) / 1e6
    return progress.export_seconds(megabytes, len(tensors), exporter)


def _to_device(inputs: dict, device: str) -> dict:
    import torch

    return {k: torch.from_numpy(v).to(device) for k, v in inputs.items()}


def _run_torch(model, io: IOSpec, inputs: dict, device: str) -> dict:
    """The PyTorch reference outputs; forward() failing on the IO config's inputs, or returning something other
    than the IO config's outputs, is a UserError that says which."""
    import torch

    forward = f"{type(model).__name__}.forward()"
    with torch.no_grad():
        tensors = _to_device(inputs, device)
        try:
            outputs = model(*[tensors[t.name] for t in io.inputs])
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            given = ", ".join(f"{t.name} {t.dtype}{list(inputs[t.name].shape)}" for t in io.inputs)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(f"{forward} failed on inputs made from --model-io-config ({given}): "
                            f"{type(exc).__name__}: {first}; check the IO config's inputs (order, dtype, shape, "
                            "value_range) against what forward() expects") from exc
    declared = [t.name for t in io.outputs]
    if isinstance(outputs, dict):
        missing = [name for name in declared if name not in outputs]
        if missing:
            raise UserError(f"{forward} returned a dict with keys {', '.join(map(repr, outputs))} but "
                            f"--model-io-config declares output {missing[0]!r}; name the outputs as forward() does")
        outputs = tuple(outputs[name] for name in declared)
    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    described = ", ".join(f"{type(o).__name__}{list(o.shape)}" if isinstance(o, torch.Tensor) else type(o).__name__
                          for o in outputs)
    if len(outputs) != len(io.outputs) or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise UserError(f"{forward} returned {len(outputs)} value(s) ({described}) but --model-io-config declares "
                        f"{len(io.outputs)} output tensor(s) ({', '.join(declared)}); make them match")
    for spec, output in zip(io.outputs, outputs):
        dims = list(output.shape[1:])
        if len(dims) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, dims)):
            raise UserError(f"{forward} returned output {spec.name!r} of shape {list(output.shape)} but "
                            f"--model-io-config declares {spec.shape} (without the batch dim); fix its shape "
                            "(-1 for a dynamic dim)")
    return {t.name: o.detach().float().cpu().numpy() for t, o in zip(io.outputs, outputs)}


def _check_finite_references(references: list[dict], non_finite_weights: list[str],
                             inputs: str = "the synthetic inputs") -> None:
    """A NaN/inf PyTorch output leaves nothing to verify against: the model or checkpoint is broken."""
    import numpy as np

    from trt_converters.verify import non_finite_reference_message

    for reference in references:
        for name, array in reference.items():
            bad = int((~np.isfinite(array)).sum())
            if bad:
                more = f" (+{len(non_finite_weights) - 3} more)" if len(non_finite_weights) > 3 else ""
                cause = (f"--ckpt-path holds NaN/inf in {', '.join(non_finite_weights[:3])}{more}"
                         if non_finite_weights else "")
                raise UserError(non_finite_reference_message(name, bad, "the PyTorch reference", where=f" on {inputs}",
                                                             cause=cause))


def _verify(state: RunState, onnx_path: Path, precision: str, label: str, outputs: list | None = None) -> dict:
    """`outputs`: the graph's outputs on the verification inputs where the lowering computed them already."""
    from trt_converters.onnx_runner import run_onnx_model

    started = time.perf_counter()
    tolerance = _tolerance(state.options, precision)
    input_sets, references, inputs_used = _verification_data(state, precision)
    # TensorRT-targeted Q/DQ graphs run unfused (TensorRT's arithmetic); ONNX Runtime INT8 graphs as ORT serves them
    candidates = outputs if outputs is not None else run_onnx_model(onnx_path, input_sets,
                                                                     qdq_fusion=precision == "ort_int8")
    comparisons = compare_output_sets(references, candidates, tolerance)
    shapes = [{k: list(v.shape) for k, v in s.items()} for s in input_sets]
    summary = {"tolerance": vars(tolerance), "inputs": inputs_used, "input_shapes": shapes,
               "reference_std": reference_std(references),
               **({"drawn_as": drawn_as(state.io, state.vocabulary)}
                  if state.input_sets and input_sets and input_sets[0] is state.input_sets[0] else {}),
               "outputs": [c.as_dict() for c in comparisons], "seconds": round(time.perf_counter() - started, 3)}
    if not all(c.passed for c in comparisons):
        message = failure_message(label, comparisons, tolerance)
        if precision != "fp32" and state.onnx_fp32 is not None:
            from trt_converters.precision.diagnose import first_divergence, worst_input_set

            worst_set = input_sets[worst_input_set(references, candidates)]
            divergence = first_divergence(state.onnx_fp32, onnx_path, worst_set, tolerance=tolerance)
            if divergence:
                message += f"; first divergence: {divergence}"
        raise StageError(message)
    worst = max(comparisons, key=lambda c: c.max_rel_error)
    log(f"[verify] {label}: max rel error {worst.max_rel_error:.2e} ({worst.name}), "
        f"min cosine {min(c.cosine for c in comparisons):.6f} on {inputs_used}")
    return summary


def _verification_data(state: RunState, precision: str) -> tuple[list, list, str]:
    """Input sets, PyTorch references, and what they are: the synthetic sets (profile min/middle/max shapes) and
    the real samples of --verify-data or held back from --calib-data (verification_data.py). INT8 is judged on
    the real samples alone where there are some: its scales are made for data like them (random token ids gave
    cosine 0.87 on the real all-MiniLM-L6-v2 where real sentences gave 0.97)."""
    from trt_converters.verification_data import load_real_samples

    options = state.options
    synthetic = (state.input_sets, state.references, f"synthetic inputs at {len(state.input_sets)} shape sets")
    if state.model is None:
        return synthetic
    if state.real_samples is None:
        state.real_samples = load_real_samples(
            state.io, state.profiles, options=options,
            run=lambda inputs: _run_torch(state.model, state.io, inputs, options.device)) or False
        if state.real_samples:
            _check_finite_references(state.real_samples.references, [], state.real_samples.label)
            if state.real_samples.calibration is not None:
                state.calibration_data = state.real_samples.calibration  # the lowerings calibrate on the rest
    real = state.real_samples
    if not real:
        return synthetic
    if precision.startswith("int8") or precision == "ort_int8":
        return real.input_sets, real.references, real.label
    return (state.input_sets + real.input_sets, state.references + real.references,
            f"{synthetic[2]} and {real.label}")


def _use_existing_onnx(state: RunState) -> None:
    """Without --generate-onnx, later stages start from the ONNX graph at --onnx-path."""
    import onnx

    path = state.options.resolved_onnx_path()
    if not path.is_file():
        if state.options.generate_trt or (state.options.generate_triton_config
                                          and state.options.triton_backend != "tensorrt_plan"):
            raise UserError(f"--onnx-path {path} does not exist: pass --generate-onnx or point --onnx-path at a graph")
        return
    state.onnx_fp32 = state.serving_onnx = state.engine_onnx = path
    state.graph_inputs = [i.name for i in onnx.load(str(path), load_external_data=False).graph.input]


def _stage_lower(state: RunState) -> None:
    options = state.options
    if state.onnx_fp32 is None:
        raise UserError("lowering precision needs an FP32 ONNX graph: pass --generate-onnx or an existing --onnx-path")
    if not state.references:
        log("warning: the lowered graph is not verified: without --generate-onnx there is no PyTorch reference")
    if options.precision == "auto":
        _choose_precision(state)
    elif options.precision != "fp32":
        entry = _lower(state, options.precision)
        if state.references and not options.skip_verify:
            entry["verify"] = _verify(state, Path(entry["staged"]), options.precision, f"{options.precision} graph",
                                      entry.pop("_outputs"))
        _keep_lowered(state, options.precision, entry)
    if options.onnx_int8:
        from trt_converters.onnxruntime_cpu import quantize_for_onnxruntime

        final = options.ort_int8_onnx_path()
        # ONNX Runtime's static quantizer fails on fused graphs ("'NoneType' object has no attribute 'extend'",
        # onnxruntime 1.31), so fusion serves the dynamic path.
        fuse = options.ort_fusion and options.onnx_int8 == "dynamic"
        source = _fuse_for_cpu(state) if fuse else state.onnx_fp32
        log(f"[lower] ONNX Runtime {options.onnx_int8} INT8")
        started = time.perf_counter()
        calibration = None
        if options.onnx_int8 == "static":
            from trt_converters.calibration import load_calibration_data

            if state.references and not options.skip_verify:
                _verification_data(state, "ort_int8")  # loads the calibration data once for both
            if state.calibration_data is not None:
                calibration = {name: value[:options.calib_samples] if options.calib_samples else value
                               for name, value in state.calibration_data.items()}
            else:
                with _warnings_logged(), library_logs.captured(echo=options.verbose):
                    calibration = load_calibration_data(state.io, state.profiles, source=options.calib_data,
                                                        samples=options.calib_samples,
                                                        tokenizer_path=options.tokenizer_path,
                                                        image_options=options.image_options)
        with library_logs.captured(echo=options.verbose) as library_log:
            path = quantize_for_onnxruntime(source, state.staging.path_for(final), mode=options.onnx_int8,
                                            io=state.io, calibration=calibration,
                                            calib_method=options.calib_method,
                                            calib_percentile=options.calib_percentile, cpu_target=options.cpu_target)
        from trt_converters.onnxruntime_cpu.targets import CPU_TARGET_KEY, WEIGHT_BITS_KEY, read_metadata

        written = read_metadata(path)
        entry = {"seconds": round(time.perf_counter() - started, 3), "library_log": library_log,
                 "cpu_target": written[CPU_TARGET_KEY], "weight_bits": int(written[WEIGHT_BITS_KEY]),
                 "fused": source != state.onnx_fp32,
                 **_file_facts(path, final=final)}
        if state.references and not options.skip_verify:
            entry["verify"] = _verify(state, path, "ort_int8", f"ONNX Runtime {options.onnx_int8} INT8 graph")
        state.report["stages"][f"ort_int8_{options.onnx_int8}"] = entry
        state.serving_onnx = path


def _fuse_for_cpu(state: RunState) -> Path:
    """The FP32 graph in the form ONNX Runtime's transformer optimizer fuses, fused and verified; the plain
    FP32 graph when there is no PyTorch model to re-export or the fused graph fails verification."""
    from trt_converters.onnxruntime_cpu.fusion import WANTED, export_fusable, fuse_for_onnxruntime, transformer_dims

    options = state.options
    entry: dict = {}
    state.report["stages"]["ort_fusion"] = entry
    final = options.ort_fused_onnx_path()
    started = time.perf_counter()
    heads, hidden = (0, 0)
    if state.model is not None:
        heads, hidden = transformer_dims(state.model)
        sample = synthetic_inputs(state.io, export_sample_shapes(state.profiles, options.input_size), seed=0)
        fusable = state.staging.path_for(options.artifact_dir() / ".ort-fusable.onnx")
        log("[fuse] eager-attention legacy export for ONNX Runtime's transformer optimizer")
        try:
            export_fusable(state.model, state.io, _to_device(sample, options.device), state.profiles, fusable)
        except StageError as exc:
            log(f"warning: no fusable export ({exc}); INT8 from the plain FP32 graph")
            entry.update(fused=False, why=str(exc))
            return state.onnx_fp32
    else:
        fusable = state.onnx_fp32
    result = fuse_for_onnxruntime(fusable, state.staging.path_for(final), num_heads=heads, hidden_size=hidden)
    if fusable != state.onnx_fp32:
        fusable.unlink(missing_ok=True)
    entry.update(statistics=result.statistics, num_heads=heads, hidden_size=hidden,
                 seconds=round(time.perf_counter() - started, 3))
    log("[fuse] " + (", ".join(f"{k} {v}" for k, v in sorted(result.statistics.items())) or "nothing fused"))
    if not any(result.statistics.get(op) for op in WANTED):
        log("[fuse] no transformer layers fused; INT8 from the plain FP32 graph")
        result.path.unlink(missing_ok=True)
        entry.update(fused=False, why="no Attention or SkipLayerNormalization fused")
        return state.onnx_fp32
    if state.references and not options.skip_verify:
        try:
            entry["verify"] = _verify(state, result.path, "fp32", "fused FP32 graph")
        except StageError as exc:
            log(f"warning: {exc}; INT8 from the plain FP32 graph")
            result.path.unlink(missing_ok=True)
            entry.update(fused=False, why=str(exc))
            return state.onnx_fp32
    entry.update(fused=True, **_file_facts(result.path, final=final))
    return result.path


# Candidate graphs a lowering fallback tried and dropped: routine, kept for the report and --verbose.
_REJECTED_CANDIDATE = re.compile(r" graph rejected: | failed \(")


# --precision auto: the order tried. The INT8 step searches for nodes to keep out of INT8 when the plain INT8
# graph misses the budget (measured on the verification data itself), so it covers "INT8 with exclusions".
AUTO_ORDER = ("int8", "fp16", "fp32")


def _lower(state: RunState, precision: str, *, int8_search: bool | None = None) -> dict:
    """Lowers the FP32 graph to `precision` in the staging area; returns the report entry (path: the final path)."""
    from trt_converters.precision import lower_graph

    options = state.options
    precision_options = options.precision_options()
    final = options.lowered_onnx_path(precision)
    log(f"[lower] {precision} for TensorRT")
    check = None
    if state.references and not options.skip_verify:
        # The lowering judges its candidates on the verification data: the kept one is verified by that run.
        input_sets, references, _ = _verification_data(state, precision)
        check = (input_sets, references, _tolerance(options, precision))
    with _warnings_logged() as warned, library_logs.captured(echo=options.verbose) as library_log, \
            _progress_lines("lower"):
        result = lower_graph(state.onnx_fp32, state.staging.path_for(final), precision=precision,
                             io=state.io, profiles=state.profiles, calib_data=options.calib_data,
                             calib_samples=options.calib_samples, calib_method=precision_options.calib_method,
                             tokenizer_path=options.tokenizer_path, image_options=options.image_options,
                             calibration_cache=options.calibration_cache,
                             calib_percentile=precision_options.calib_percentile,
                             int8_search=precision_options.int8_search if int8_search is None else int8_search,
                             int8_outlier_channels=precision_options.int8_outlier_channels,
                             tolerance=_tolerance(options, precision), log=lambda m: log(f"[lower] {m}"),
                             check=check, calibration=state.calibration_data)
    for note in result.notes:
        if note not in warned and (options.verbose or not _REJECTED_CANDIDATE.search(note)):
            log(f"[lower] {note}")
    entry = {"seconds": round(result.seconds, 3), "notes": result.notes, "library_log": library_log,
             **_file_facts(result.path, final=final), "staged": str(result.path), "_outputs": result.check_outputs}
    if result.details:
        entry["int8"] = result.details
    return entry


def _keep_lowered(state: RunState, precision: str, entry: dict) -> None:
    staged = Path(entry.pop("staged"))
    entry.pop("_outputs", None)
    state.report["stages"][f"lower_{precision}"] = entry
    state.engine_onnx = state.serving_onnx = staged


def _choose_precision(state: RunState) -> None:
    """--precision auto: INT8 (with its exclusion search), FP16, FP32; the first graph that meets its budget."""
    options = state.options
    steps = []
    verified = bool(state.references) and not options.skip_verify
    for precision in AUTO_ORDER:
        if precision == "fp32":
            steps.append({"precision": "fp32", "why": "no lowered graph met its budget" if steps else "asked for",
                          "met_budget": True})
            break
        try:
            entry = _lower(state, precision)
        except StageError as exc:
            steps.append({"precision": precision, "met_budget": False, "why": f"lowering failed: {exc}",
                          "lowering_failed": True})
            log(f"[precision auto] {precision}: lowering failed ({exc}); next")
            continue
        int8 = entry.get("int8", {})
        if verified:
            try:
                entry["verify"] = _verify(state, Path(entry["staged"]), precision, f"{precision} graph",
                                          entry.pop("_outputs"))
            except StageError as exc:
                why = str(exc)
                if "search" in int8:
                    why = (f"plain INT8 at {int8['error_over_budget']:.3g}x its budget; keeping "
                           f"{len(int8.get('excluded_nodes', []))} node(s) out of INT8 left "
                           f"{int8['error_over_budget_after_search']:.3g}x: {why}")
                steps.append({"precision": precision, "met_budget": False, "why": why,
                              "searched": "search" in int8})
                log(f"[precision auto] {precision} misses its budget; next")
                Path(entry["staged"]).unlink(missing_ok=True)
                continue
        elif precision == "int8" and not int8.get("met_budget_on_calibration_samples", True):
            steps.append({"precision": precision, "met_budget": False, "searched": "search" in int8,
                          "why": "misses its budget on the calibration samples"})
            Path(entry["staged"]).unlink(missing_ok=True)
            continue
        why = "met its budget"
        if int8.get("excluded_nodes"):
            why += f" with {len(int8['excluded_nodes'])} node(s) kept out of INT8 (the plain INT8 graph missed it)" \
                if int8.get("error_over_budget", 0) > 1 else f" ({len(int8['excluded_nodes'])} node(s) kept out of INT8)"
        steps.append({"precision": precision, "met_budget": True, "why": why})
        _keep_lowered(state, precision, entry)
        break
    chosen = steps[-1]["precision"]
    chosen_label = chosen
    if chosen == "int8" and state.report["stages"]["lower_int8"].get("int8", {}).get("excluded_nodes"):
        chosen_label = "int8 with exclusions"
    log(f"[precision auto] chose {chosen_label}: " + "; ".join(f"{s['precision']}: {s['why']}" for s in steps))
    state.report["precision_choice"] = {"chosen": chosen, "label": chosen_label, "steps": steps,
                                        "budgets_from": "each precision's default budget with --atol/--rtol/"
                                                        "--min-cosine applied"}


@contextlib.contextmanager
def _warnings_logged():
    """Shows the stage's Python warnings as `warning:` lines (every time, not once per process)."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield messages
    for warning in caught:
        if issubclass(warning.category, UserWarning) and str(warning.message) not in messages:
            messages.append(str(warning.message))
            log(f"warning: {warning.message}")


def _stage_build(state: RunState) -> None:
    from trt_converters.build import BuildOptions, build_engine, where_plan_loads

    options = state.options
    if state.engine_onnx is None:
        raise UserError("--generate-trt needs an ONNX graph: pass --generate-onnx or an existing --onnx-path")
    from trt_converters.onnxruntime_cpu import refuse_for_tensorrt

    refuse_for_tensorrt(state.engine_onnx)
    final = options.resolved_engine_path()
    log(f"[build] {state.engine_onnx.name} -> {final} (workspace {options.memory_pool_limit >> 20} MiB)")
    result = build_engine(state.engine_onnx, state.staging.path_for(final), state.profiles, BuildOptions(
        memory_pool_limit=options.memory_pool_limit, builder_optimization_level=options.builder_optimization_level,
        timing_cache=options.timing_cache, backend=options.trt_backend, tf32=options.tf32,
        version_compatible=options.version_compatible,
        hardware_compatibility_level=options.hardware_compatibility_level,
        weak_typing_fp16=options.weak_typing_fp16, verbose=options.verbose))
    state.engine = result.path
    loads_in = where_plan_loads(result.backend, result.backend_version)
    log(f"[build] built by {result.backend} {result.backend_version}: {loads_in}")
    packaged = options.generate_triton_config and options.triton_backend == "tensorrt_plan"
    if packaged and result.backend == "tensorrt-rtx":
        log("warning: --triton-backend tensorrt_plan packages this TensorRT-RTX plan, which Triton's tensorrt "
            "backend cannot load; build with NVIDIA TensorRT (--trt-backend tensorrt) to serve it from Triton")
    state.report["stages"]["build"] = {
        "backend": result.backend, "backend_version": result.backend_version, "loads_in": loads_in,
        "seconds": round(result.seconds, 3),
        "timing_cache": str(options.timing_cache) if options.timing_cache else None,
        "timing_cache_loaded": result.timing_cache_loaded, "notes": result.notes,
        "memory_pool_limit": options.memory_pool_limit, **_file_facts(result.path, final=final)}


def _stage_package(state: RunState) -> None:
    from trt_converters.triton.repository import package_core_model

    options = state.options
    if options.tune:
        options = state.options = _tuned(state)
    served_inputs = _triton_inputs(state)
    io = state.io.with_inputs(served_inputs)
    repo_stage = state.staging.root / "repository"
    model_dir = package_core_model(repo_stage, options, io, engine=state.engine or options.resolved_engine_path(),
                                   onnx_graph=state.serving_onnx, profiles=state.profiles)
    staged = {options.model_name: state.staging.path_for(options.triton_repo / options.model_name)}
    shutil.move(str(model_dir), str(staged[options.model_name]))
    entry = {"repository": str(options.triton_repo), "model": options.model_name,
             "backend": options.triton_backend, "instance_kind": options.instance_kind, "inputs": served_inputs}
    if options.pipeline:
        from trt_converters.pipelines import write_pipeline
        from trt_converters.pipelines.base import PipelineRequest
        from trt_converters.triton.config import PipelineServing

        log(f"[package] pipeline {options.pipeline!r} as {options.resolved_pipeline_name()}")
        request = PipelineRequest(repo=repo_stage, core_model_name=options.model_name,
                                  pipeline_name=options.resolved_pipeline_name(), io=io,
                                  max_batch_size=options.max_batch_size, instance_kind=options.instance_kind,
                                  options=_pipeline_options(options),
                                  checkpoint_dir=options.ckpt_path.parent if options.ckpt_path else None,
                                  serving=PipelineServing(instance_counts=options.pipeline_instance_count or {},
                                                          response_cache=options.response_cache,
                                                          warmup=options.model_warmup
                                                          if options.model_warmup is not None
                                                          else options.triton_backend == "tensorrt_plan"))
        with _warnings_logged():
            written = write_pipeline(options.pipeline, request)
        for folder in sorted({p.relative_to(repo_stage).parts[0] for p in written if p.is_relative_to(repo_stage)}):
            final = options.triton_repo / folder
            if final.exists() and not options.overwrite:
                raise UserError(f"{final} already exists; pass --overwrite to replace it")
            staged[folder] = state.staging.path_for(final)
            shutil.move(str(repo_stage / folder), str(staged[folder]))
        entry["pipeline"] = {"name": options.pipeline, "entry_model": options.resolved_pipeline_name(),
                             "files": [str(p.relative_to(repo_stage)) for p in written if p.is_relative_to(repo_stage)]}
    entry["input_data"] = _write_input_data(state, io, staged)
    requirements = _repository_requirements(options.triton_repo, list(staged.values()))
    if requirements is not None:
        target = options.triton_repo / "requirements.txt"
        atomic_write_text(state.staging.path_for(target), requirements)
        entry["requirements"] = str(target)
    state.report["stages"]["triton"] = entry


def _tuned(state: RunState) -> ConvertOptions:
    """The options with the instance count and intra-op threads that --tune measured fastest."""
    from trt_converters.onnxruntime_cpu.tune import tune_cpu_serving

    graph = state.serving_onnx or state.options.resolved_onnx_path()
    if graph is None or not Path(graph).is_file():
        raise UserError("--tune needs the ONNX graph it serves (--generate-onnx or an existing --onnx-path)")
    shapes = {name: (1, *profile.opt[1:]) for name, profile in state.profiles.items()}
    log("[tune] measuring instances x intra-op threads (batch-1 requests, opt shape)")
    result = tune_cpu_serving(graph, synthetic_inputs(state.io, shapes, seed=0))
    state.report["stages"]["tune"] = result.as_dict()
    log(f"[tune] {result.instances} instance(s) x {result.intra_op_threads} intra-op thread(s)")
    return state.options.model_copy(update={"instance_count": result.instances,
                                            "intra_op_threads": result.intra_op_threads})


def _repository_requirements(repo: Path, staged_models: list[Path]) -> str | None:
    """requirements.txt for the repository as it will be: its other models and this run's."""
    from trt_converters.triton.requirements import repository_requirements

    names = {p.name for p in staged_models}
    others = [p for p in repo.iterdir() if p.is_dir() and p.name not in names] if repo.is_dir() else []
    return repository_requirements([*others, *staged_models])


def _write_input_data(state: RunState, io: IOSpec, staged: dict[str, Path]) -> dict[str, str]:
    """perf_analyzer-style request samples for each model users call (the core model and the pipeline entry)."""
    from trt_converters.triton.examples import input_data_for, input_data_text

    options = state.options
    # text models: token inputs from real sentences, tokenized as the pipeline does
    tokenizer = options.tokenizer_path or (options.ckpt_path.parent if options.ckpt_path else None)
    written = {}
    for name in _entry_models(options):
        final = input_data_path(state.options, name)
        data = input_data_for(staged[name], io=io, profiles=state.profiles, tokenizer_dir=tokenizer)
        atomic_write_text(state.staging.path_for(final), input_data_text(data))
        written[name] = str(final)
    return written


def _entry_models(options: ConvertOptions) -> list[str]:
    return [options.model_name] + ([options.resolved_pipeline_name()] if options.pipeline else [])


def input_data_path(options: ConvertOptions, model: str) -> Path:
    return options.resolved_report_path().parent / f"{model}.input_data.json"


def _pipeline_options(options: ConvertOptions) -> dict:
    from trt_converters.pipelines import pipeline_module

    merged = dict(options.pipeline_options)
    if options.tokenizer_path is not None and "tokenizer_path" in pipeline_module(options.pipeline).OPTIONS:
        merged["tokenizer_path"] = str(options.tokenizer_path)
    return merged


def _triton_inputs(state: RunState) -> list[str]:
    """--triton-inputs may drop only inputs that the graph does not take; default: the graph's inputs."""
    declared = [t.name for t in state.io.inputs]
    graph = state.graph_inputs if state.graph_inputs is not None else declared
    requested = state.options.triton_inputs
    if requested is None:
        return [name for name in declared if name in graph]
    unknown = [name for name in requested if name not in declared]
    if unknown:
        raise UserError(f"--triton-inputs names {unknown[0]!r}, which is not an input in --model-io-config "
                        f"({', '.join(declared)})")
    needed = [name for name in graph if name not in requested]
    if needed:
        raise UserError(f"--triton-inputs leaves out {needed[0]!r}, which the exported graph needs; add it "
                        f"(the graph takes {', '.join(graph)})")
    not_taken = [name for name in requested if name not in graph]
    if not_taken:
        raise UserError(f"--triton-inputs lists {not_taken[0]!r}, which the exported graph does not take "
                        f"(the model does not use it); drop it from --triton-inputs")
    return [name for name in declared if name in requested]


def _file_facts(path: Path | None, *, final: Path | None = None) -> dict:
    import hashlib

    if path is None or not Path(path).is_file():
        return {}
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"path": str(final or path), "bytes": Path(path).stat().st_size, "sha256": digest.hexdigest()}
