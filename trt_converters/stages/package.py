"""The package stage: the core model's Triton folder (config.pbtxt and the served artifact), the pipeline around
it, request samples for the models users call, and the repository's requirements.txt."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from trt_converters.atomic import atomic_write_text
from trt_converters.errors import UserError
from trt_converters.options import ConvertOptions
from trt_converters.shapes import synthetic_inputs
from trt_converters.spec import IOSpec
from trt_converters.stages.checks import entry_models, input_data_path
from trt_converters.stages.context import RunContext, log, warnings_logged
from trt_converters.triton.backends import TENSORRT_PLAN, ServingChoice
from trt_converters.triton.versions import place_version


@dataclass(frozen=True)
class ServedArtifacts:
    """What the core model serves: the ONNX graph (the lowered one where a lowering ran), the engine, the
    inputs the exported graph takes (None: as declared) and the OpenVINO stage's IRs (where it ran)."""

    onnx: Path | None
    engine: Path | None
    graph_inputs: list[str] | None
    openvino: object = None  # openvino_cpu.stage.OpenVINOArtifacts


@dataclass(frozen=True)
class PackagedModel:
    """The report's `triton` entry, `tune` where --tune measured the serving, and the serving choice as packaged
    (with what --tune chose)."""

    entry: dict
    serving: ServingChoice
    tune: dict | None = None

    def report_entries(self) -> dict:
        return {**({"tune": self.tune} if self.tune is not None else {}), "triton": self.entry}


def package_stage(run: RunContext, serving: ServingChoice, served: ServedArtifacts) -> PackagedModel:
    from trt_converters.triton.repository import package_core_model

    options = run.options
    tune = None
    if options.tune:
        serving, tune = _tuned(run, serving, served)
    served_inputs = _triton_inputs(run, served.graph_inputs)
    io = run.io.with_inputs(served_inputs)
    repo_stage = run.staging.root / "repository"
    openvino_ir = served.openvino.irs.get(serving.openvino_precision) if served.openvino is not None else None
    model_dir = package_core_model(repo_stage, options, io, serving,
                                   engine=served.engine or options.resolved_engine_path(), onnx_graph=served.onnx,
                                   profiles=run.profiles, openvino_ir=openvino_ir)
    staged = {options.model_name: run.staged(options.triton_repo / options.model_name)}
    shutil.move(str(model_dir), str(staged[options.model_name]))
    place_version(staged[options.model_name], options.triton_repo / options.model_name, options.model_version)
    entry = {"repository": str(options.triton_repo), "model": options.model_name,
             "backend": serving.backend, "instance_kind": serving.instance_kind, "inputs": served_inputs}
    if options.pipeline:
        entry["pipeline"] = _write_pipeline(run, serving, io, staged)
    entry["input_data"] = _write_input_data(run, io, staged)
    requirements = _repository_requirements(options.triton_repo, list(staged.values()))
    if requirements is not None:
        target = options.triton_repo / "requirements.txt"
        atomic_write_text(run.staged(target), requirements)
        entry["requirements"] = str(target)
    return PackagedModel(entry, serving, tune)


def _write_pipeline(run: RunContext, serving: ServingChoice, io: IOSpec, staged: dict[str, Path]) -> dict:
    """Writes the pipeline's models beside the core model; adds their staged folders to `staged`."""
    from trt_converters.pipelines import write_pipeline
    from trt_converters.pipelines.base import PipelineRequest
    from trt_converters.triton.config import PipelineServing

    options = run.options
    repo_stage = run.staging.root / "repository"
    log(f"[package] pipeline {options.pipeline!r} as {options.resolved_pipeline_name()}")
    warmup = options.model_warmup if options.model_warmup is not None else serving.backend == TENSORRT_PLAN
    request = PipelineRequest(repo=repo_stage, core_model_name=options.model_name,
                              pipeline_name=options.resolved_pipeline_name(), io=io,
                              max_batch_size=options.max_batch_size, instance_kind=serving.instance_kind,
                              options=_pipeline_options(options),
                              checkpoint_dir=options.ckpt_path.parent if options.ckpt_path else None,
                              serving=PipelineServing(instance_counts=options.pipeline_instance_count or {},
                                                      response_cache=options.response_cache, warmup=warmup))
    with warnings_logged():
        written = write_pipeline(options.pipeline, request)
    for folder in sorted({p.relative_to(repo_stage).parts[0] for p in written if p.is_relative_to(repo_stage)}):
        final = options.triton_repo / folder
        if final.exists() and not options.overwrite:
            raise UserError(f"{final} already exists; pass --overwrite to replace it")
        staged[folder] = run.staged(final)
        shutil.move(str(repo_stage / folder), str(staged[folder]))
    return {"name": options.pipeline, "entry_model": options.resolved_pipeline_name(),
            "files": [str(p.relative_to(repo_stage)) for p in written if p.is_relative_to(repo_stage)]}


def _tuned(run: RunContext, serving: ServingChoice, served: ServedArtifacts) -> tuple[ServingChoice, dict]:
    """The serving choice with the instance count and intra-op threads that --tune measured fastest (and, where
    OpenVINO ran, the runtime and precision)."""
    from trt_converters.onnxruntime_cpu.tune import tune_cpu_serving
    from trt_converters.openvino_cpu.stage import runs_openvino, tune_serving

    graph = served.onnx or run.options.resolved_onnx_path()
    if graph is None or not Path(graph).is_file():
        raise UserError("--tune needs the ONNX graph it serves (--generate-onnx or an existing --onnx-path)")
    shapes = {name: (1, *profile.opt[1:]) for name, profile in run.profiles.items()}
    if runs_openvino(serving, run.options.tune):
        update, report = tune_serving(run.options, serving, graph, served.openvino,
                                      synthetic_inputs(run.io, shapes, seed=0), log)
        return replace(serving, **update), report
    log("[tune] measuring instances x intra-op threads (batch-1 requests, opt shape)")
    result = tune_cpu_serving(graph, synthetic_inputs(run.io, shapes, seed=0))
    log(f"[tune] {result.instances} instance(s) x {result.intra_op_threads} intra-op thread(s)")
    return replace(serving, instance_count=result.instances, intra_op_threads=result.intra_op_threads), \
        result.as_dict()


def _write_input_data(run: RunContext, io: IOSpec, staged: dict[str, Path]) -> dict[str, str]:
    """perf_analyzer-style request samples for each model users call (the core model and the pipeline entry)."""
    from trt_converters.triton.examples import input_data_for, input_data_text

    options = run.options
    # text models: token inputs from real sentences, tokenized as the pipeline does
    tokenizer = options.tokenizer_path or (options.ckpt_path.parent if options.ckpt_path else None)
    written = {}
    for name in entry_models(options):
        final = input_data_path(options, name)
        data = input_data_for(staged[name], io=io, profiles=run.profiles, tokenizer_dir=tokenizer)
        atomic_write_text(run.staged(final), input_data_text(data))
        written[name] = str(final)
    return written


def _repository_requirements(repo: Path, staged_models: list[Path]) -> str | None:
    """requirements.txt for the repository as it will be: its other models and this run's."""
    from trt_converters.triton.requirements import repository_requirements

    names = {p.name for p in staged_models}
    others = [p for p in repo.iterdir() if p.is_dir() and p.name not in names] if repo.is_dir() else []
    return repository_requirements([*others, *staged_models])


def _pipeline_options(options: ConvertOptions) -> dict:
    from trt_converters.pipelines import pipeline_module

    merged = dict(options.pipeline_options)
    if options.tokenizer_path is not None and "tokenizer_path" in pipeline_module(options.pipeline).OPTIONS:
        merged["tokenizer_path"] = str(options.tokenizer_path)
    return merged


def _triton_inputs(run: RunContext, graph_inputs: list[str] | None) -> list[str]:
    """--triton-inputs may drop only inputs that the graph does not take; default: the graph's inputs."""
    declared = [t.name for t in run.io.inputs]
    graph = graph_inputs if graph_inputs is not None else declared
    requested = run.options.triton_inputs
    if requested is None:
        return [name for name in declared if name in graph]
    run.io.check_triton_inputs(requested)
    needed = [name for name in graph if name not in requested]
    if needed:
        raise UserError(f"--triton-inputs leaves out {needed[0]!r}, which the exported graph needs; add it "
                        f"(the graph takes {', '.join(graph)})")
    not_taken = [name for name in requested if name not in graph]
    if not_taken:
        raise UserError(f"--triton-inputs lists {not_taken[0]!r}, which the exported graph does not take "
                        f"(the model does not use it); drop it from --triton-inputs")
    return [name for name in declared if name in requested]
