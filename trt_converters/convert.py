"""The conversion run: load -> export -> verify -> lower -> build -> package -> report.

Each stage is a function of its inputs that returns a frozen result (trt_converters/stages/); this module
composes them and builds the report once, from the results. Every artifact is written into a private staging
folder and moved into place only when all stages succeeded, so a failed or interrupted run leaves the user's
files as they were.
"""

from __future__ import annotations

from dataclasses import replace

from trt_converters.atomic import Staging, atomic_write_text
from trt_converters.memory import StagePeaks
from trt_converters.options import ConvertOptions
from trt_converters.shapes import profiles_for
from trt_converters.stages.context import RunContext, log
from trt_converters.triton.backends import ServingChoice


def run_conversion(options: ConvertOptions) -> dict:
    """Runs the stages the options ask for and returns the report (also written as JSON)."""
    if options.triton_repo_uri is not None and options.generate_triton_config:  # s3://: staged here, then uploaded
        from trt_converters.storage.publish import convert_to_remote

        return convert_to_remote(options, run_conversion)
    from trt_converters.stages.checks import check_memory, check_required, check_targets
    from trt_converters.triton.backends import choose_serving

    serving = choose_serving(options)
    check_required(options, serving)
    io = options.model_io_config
    profiles = profiles_for(io, max_batch_size=options.max_batch_size, input_size=options.input_size)
    check_targets(options, serving)
    memory = check_memory(options, serving)
    for key, derived in options.derived_values().items():
        log(f"[options] {key} = {derived['value']} (from {derived['from']})")
    if options.generate_triton_config:
        _check_serving(options, serving, profiles)
    with Staging() as staging:
        report = _run_stages(RunContext(options, staging, io, profiles), serving)
        report["memory"].update(memory)
        from trt_converters.report import render_json

        atomic_write_text(staging.path_for(options.resolved_report_path()), render_json(report))
        written = staging.commit()
    report["written"] = [str(p) for p in written]
    return report


def _check_serving(options: ConvertOptions, serving: ServingChoice, profiles: dict) -> None:
    """The core model's config, made once before any work (it is cheap and can refuse the options)."""
    from trt_converters.triton.repository import core_model_config

    io = options.model_io_config
    core_model_config(options, io.with_inputs(options.triton_inputs or [t.name for t in io.inputs]), profiles, serving)
    log(f"[serve] Triton backend {serving.backend}, KIND_{serving.instance_kind.upper()} ({serving.why})")
    for warning in serving.warnings:
        log(f"warning: {warning}")
    if options.response_cache:
        log("[serve] response cache on: trt-serve starts Triton's cache for it; another server needs "
            "--cache-config local,size=BYTES")


def _run_stages(run: RunContext, serving: ServingChoice) -> dict:
    """The stages in order, each on the results of those before; the report from their results."""
    from trt_converters.openvino_cpu.stage import runs_openvino
    from trt_converters.stages.build import build_options, build_stage
    from trt_converters.stages.export import existing_graph, export_graph
    from trt_converters.stages.lower import lower_for_tensorrt
    from trt_converters.stages.onnxruntime_int8 import export_fusable_graph, lower_for_onnxruntime
    from trt_converters.stages.openvino import openvino_stage
    from trt_converters.stages.package import ServedArtifacts, package_stage
    from trt_converters.stages.references import load_model_and_references
    from trt_converters.stages.verification import Budgets, Verifier

    options = run.options
    precision = options.precision_options()
    budgets = Budgets(precision, "ort_int8" if options.onnx_int8 else options.precision_mode)
    memory = StagePeaks()
    with memory.measure("load"):
        loaded = load_model_and_references(run) if options.generate_onnx else None
    verifier = Verifier(loaded.data, budgets) if loaded is not None else None
    with memory.measure("export"):
        exported = export_graph(run, loaded, verifier) if loaded is not None else existing_graph(run, serving)
        fusable = (export_fusable_graph(run, loaded) if loaded is not None and options.onnx_int8 == "dynamic"
                   and options.ort_fusion else None)
    if loaded is not None:
        loaded = replace(loaded, model=None)  # the references are taken and the graphs exported: freed here
    if verifier is not None and not options.skip_verify:
        verifier = Verifier(verifier.data, budgets, exported.onnx)
    else:
        verifier = None
    if loaded is None and (options.precision_mode != "fp32" or options.onnx_int8):
        log("warning: the lowered graph is not verified: without --generate-onnx there is no PyTorch reference")
    lowered = ort_lowered = openvino = None
    if options.precision_mode != "fp32":
        with memory.measure("lower"):
            lowered = lower_for_tensorrt(run, precision, exported.onnx, budgets, verifier)
    if options.onnx_int8:
        with memory.measure("ort_int8"):
            ort_lowered = lower_for_onnxruntime(run, options.ort_int8_options(), exported.onnx, fusable, verifier)
    if runs_openvino(serving, options.tune):
        with memory.measure("openvino"):
            openvino = openvino_stage(run, exported.onnx, loaded, verifier)
        if openvino.chosen is not None:
            serving = replace(serving, openvino_precision=openvino.chosen)
    engine_graph = lowered.graph if lowered is not None and lowered.graph is not None else exported.onnx
    built = packaged = None
    if options.generate_trt:
        with memory.measure("build"):
            built = build_stage(run, build_options(options), engine_graph,
                                serving if options.generate_triton_config else None)
    if options.generate_triton_config:
        served_graph = ort_lowered.graph if ort_lowered is not None else engine_graph
        with memory.measure("package"):
            packaged = package_stage(run, serving, ServedArtifacts(served_graph, built.engine if built else None,
                                                                   exported.graph_inputs, openvino))
    checked = loaded.reference_check if loaded is not None else None
    stages = {**memory.marked({"reference_check": checked} if checked is not None else {}, "load"),
              **memory.marked({"export": exported.entry} if exported.entry is not None else {}, "export"),
              **memory.marked({"verify_fp32": exported.verification} if exported.verification is not None else {},
                              "export"),
              **memory.marked(lowered.report_entries() if lowered is not None else {}, "lower"),
              **memory.marked(ort_lowered.report_entries() if ort_lowered is not None else {}, "ort_int8"),
              **memory.marked({"openvino": openvino.entry} if openvino is not None else {}, "openvino"),
              **memory.marked({"build": built.entry} if built is not None else {}, "build"),
              **memory.marked(packaged.report_entries() if packaged is not None else {}, "package")}
    report = _report_header(options, run.profiles, stages)
    report["memory"] = memory.as_report()
    if options.generate_triton_config:
        report["serving"] = (packaged.serving if packaged is not None else serving).as_report()
    if loaded is not None:
        report["model"] = memory.marked({"model": loaded.entry}, "load")["model"]
    if lowered is not None and lowered.choice is not None:
        report["precision_choice"] = lowered.choice
    return report


def _report_header(options: ConvertOptions, profiles: dict, stages: dict) -> dict:
    from trt_converters.report import tool_versions

    return {
        "model_name": options.model_name,
        "precision": options.precision_mode,
        "versions": tool_versions(),
        "io": options.model_io_config.model_dump(exclude_none=True),
        "profiles": {name: {"min": p.min, "opt": p.opt, "max": p.max} for name, p in profiles.items()},
        "option_sources": options.option_sources(),
        "derived_values": options.derived_values(),
        "stages": stages,
    }
