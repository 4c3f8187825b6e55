"""Refusals before any work: the options are complete, and no artifact lands on an input, on another artifact
or (without --overwrite) on an existing file."""

from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.options import ConvertOptions
from trt_converters.triton.backends import KIND_CPU, TENSORRT_PLAN, ServingChoice

INT8_MODES = ("int8", "int8_fp16")  # the TensorRT Q/DQ precisions


def check_required(options: ConvertOptions, serving: ServingChoice) -> None:
    """What the options ask for is complete and consistent (`serving`: the resolved serving choice)."""
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
    if options.tune and (not options.generate_triton_config or serving.backend == TENSORRT_PLAN
                         or serving.instance_kind != KIND_CPU):
        raise UserError("--tune measures CPU serving: it needs --generate-triton-config with --instance-kind cpu and "
                        "--triton-backend python_onnxruntime, onnxruntime_onnx, python_openvino or openvino")
    if options.tune and (options.intra_op_threads is not None or options.instance_count != 1):
        raise UserError("--tune chooses --intra-op-threads and --instance-count by measurement; give either --tune "
                        "or those flags")
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
    if options.generate_triton_config and serving.backend == TENSORRT_PLAN and not options.generate_trt \
            and not options.resolved_engine_path().is_file():
        raise UserError(f"--generate-triton-config with --triton-backend tensorrt_plan needs an engine: pass "
                        f"--generate-trt or an existing --engine-path (not found: {options.resolved_engine_path()})")


def check_targets(options: ConvertOptions, serving: ServingChoice) -> None:
    """Refuses up front, before any work: two outputs on one path or an output on an input (even with
    --overwrite), and existing artifacts without --overwrite."""
    outputs = planned_outputs(options, serving)
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


def planned_outputs(options: ConvertOptions, serving: ServingChoice) -> list[tuple[str, Path, str]]:
    """What this run writes: (what, path, "file" | "folder" | "cache"); caches are read, then rewritten."""
    from trt_converters.openvino_cpu.stage import output_files as openvino_files, runs_openvino

    outputs = []
    if options.generate_onnx:
        outputs.append(("--onnx-path", options.resolved_onnx_path(), "file"))
    if options.precision_mode == "auto":  # whichever it keeps
        outputs += [(f"the {p} graph", options.lowered_onnx_path(p), "file") for p in ("int8", "fp16")]
    elif options.precision_mode != "fp32":
        outputs.append((f"the {options.precision_mode} graph", options.lowered_onnx_path(), "file"))
    if options.onnx_int8:
        outputs.append(("the ONNX Runtime INT8 graph", options.ort_int8_onnx_path(), "file"))
        if options.ort_fusion and options.onnx_int8 == "dynamic":
            outputs.append(("the fused FP32 graph", options.ort_fused_onnx_path(), "file"))
    if options.generate_trt:
        outputs.append(("--engine-path", options.resolved_engine_path(), "file"))
    if runs_openvino(serving, options.tune):
        outputs += [(label, path, "file") for label, path in openvino_files(options)]
    outputs.append(("--report-path", options.resolved_report_path(), "file"))
    if options.generate_triton_config:
        from trt_converters.triton.versions import core_model_target

        outputs.append((*core_model_target(options), "folder"))
        if options.pipeline:
            from trt_converters.pipelines import pipeline_model_names

            for name in pipeline_model_names(options.pipeline, options.resolved_pipeline_name()):
                outputs.append((f"pipeline model {name!r}", options.triton_repo / name, "folder"))
        for name in entry_models(options):
            outputs.append((f"the input data of {name!r}", input_data_path(options, name), "file"))
    if options.generate_trt and options.timing_cache is not None:
        outputs.append(("--timing-cache", Path(options.timing_cache), "cache"))
    if options.precision_mode in INT8_MODES and options.calibration_cache is not None:
        outputs.append(("--calibration-cache", Path(options.calibration_cache), "cache"))
    return outputs


def entry_models(options: ConvertOptions) -> list[str]:
    return [options.model_name] + ([options.resolved_pipeline_name()] if options.pipeline else [])


def input_data_path(options: ConvertOptions, model: str) -> Path:
    return options.resolved_report_path().parent / f"{model}.input_data.json"


def check_memory(options: ConvertOptions, serving: ServingChoice) -> dict:
    """A run whose estimated peak resident memory exceeds what is available stops here, before the model loads;
    the report's view of the estimate otherwise."""
    from trt_converters.memory import available_memory, estimate_peak, refusal
    from trt_converters.openvino_cpu.stage import runs_openvino

    estimate = estimate_peak(options, runs_openvino(serving, options.tune))
    available, source = available_memory(options.memory_limit)
    problem = refusal(estimate, available, source)
    if problem:
        raise UserError(problem)
    return {"estimate_mb": estimate.stages, "weights_mb": estimate.weights_mb,
            "available_mb": round(available, 1) if available != float("inf") else None, "available_from": source}
