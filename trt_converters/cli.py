"""`trt-convert`: the original tool's flags (same meaning and defaults) plus the ones this toolkit adds.

Flags > the checkpoint's config.json > `--config FILE` > defaults (options.build_options); the click layer
only parses and hands a ConvertOptions to convert.py.
Exit status: 0 done, 1 a stage failed, 2 a usage error; one line on stderr, a traceback only with --verbose.
"""

from __future__ import annotations

import warnings

import click
from click.core import ParameterSource

from trt_converters.cli_errors import errors_reported
from trt_converters.cli_options import MODEL_FLAGS, apply_options as _apply, option as _option
from trt_converters.errors import UserError
from trt_converters.triton.backends import AUTO, SERVING_BACKENDS


ORIGINAL_FLAGS = [
    MODEL_FLAGS["ckpt_path"],
    MODEL_FLAGS["model_script_path"],
    MODEL_FLAGS["model_class_name"],
    MODEL_FLAGS["model_io_config"],
    _option("--model-name", help="Name of the model in the Triton repository."),
    _option("--onnx-path", type=click.Path(dir_okay=False), help="Where the FP32 ONNX graph goes [OUTPUT_DIR/NAME/model.onnx]."),
    _option("--engine-path", type=click.Path(dir_okay=False), help="Where the TensorRT engine goes [OUTPUT_DIR/NAME/model.plan]."),
    _option("--triton-repo", type=click.Path(file_okay=False),
            help="Triton model repository to write into: a folder or s3://[HOST:PORT/]BUCKET/PREFIX."),
    _option("--generate-onnx/--no-generate-onnx", help="Export and verify the ONNX graph."),
    _option("--generate-trt/--no-generate-trt", help="Build the TensorRT engine."),
    _option("--generate-triton-config/--no-generate-triton-config", help="Write the model (and pipeline) into --triton-repo."),
    _option("--input-size", nargs=2, help="Export sample: BATCH SEQUENCE_LENGTH (text), e.g. 8 128; 'None' for the default."),
    _option("--max-batch-size", type=int, help="Triton max_batch_size and the profile's max batch.  [default: 8]"),
    _option("--preferred-batch-sizes", help="Comma-separated, e.g. 1,8,16.  [default: powers of two up to the max]"),
    _option("--max-queue-delay", type=int, help="Dynamic batching queue delay in microseconds.  [default: 100]"),
    _option("--memory-pool-limit", help="TensorRT workspace limit: bytes or K/M/G, e.g. 2G.  [default: 1<<30]"),
    _option("--dynamic-batching/--no-dynamic-batching", help="Enable Triton dynamic batching."),
    _option("--use-fp16/--no-use-fp16", help="FP16 engine (mixed precision decided in the ONNX graph)."),
    _option("--use-int8/--no-use-int8", help="INT8 engine with explicit Q/DQ from calibration data."),
    _option("--triton-inputs", help="Comma-separated inputs for the Triton config (may drop inputs the graph does not use)."),
    _option("--overwrite/--no-overwrite", help="Replace existing artifacts."),
    MODEL_FLAGS["device"],
]

ADDED_FLAGS = [
    MODEL_FLAGS["config_path"],
    _option("--memory-limit", help="Resident memory this run may use: bytes or K/M/G, e.g. 12G; a run estimated to "
            "need more stops before loading the model.  [default: the cgroup limit or MemAvailable]"),
    MODEL_FLAGS["model_kwargs"],
    _option("--strict/--no-strict", default=None, help="Require checkpoint keys to match exactly.  [default: strict]"),
    _option("--output-dir", type=click.Path(file_okay=False), help="Folder for ONNX, engine and report.  [default: trt_out]"),
    _option("--report-path", type=click.Path(dir_okay=False), help="Report JSON path [OUTPUT_DIR/NAME/report.json]."),
    _option("--opset", type=int, help="ONNX opset.  [default: 18]"),
    _option("--exporter", type=click.Choice(["auto", "dynamo", "legacy"]), help="ONNX exporter.  [default: auto]"),
    _option("--skip-verify", is_flag=True, help="Skip the ONNX Runtime comparison with PyTorch."),
    _option("--allow-constant-output", multiple=True, default=(), help="Output that may be the same for every "
            "verification sample (repeatable); otherwise such an output fails the check."),
    _option("--atol", type=float, help="Absolute tolerance (overrides the precision's default)."),
    _option("--rtol", type=float, help="Tolerance relative to the largest reference magnitude."),
    _option("--min-cosine", type=float, help="Minimum cosine similarity per output."),
    _option("--trt-backend", type=click.Choice(["auto", "tensorrt", "tensorrt-rtx"]), help="Builder to use.  [default: auto]"),
    _option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache to load (if present) and save."),
    _option("--builder-optimization-level", type=int, help="TensorRT builder optimization level 0-5."),
    _option("--tf32/--no-tf32", default=None, help="Allow TF32 for FP32 layers (where supported)."),
    _option("--version-compatible", is_flag=True, help="Build a version-compatible engine."),
    _option("--hardware-compatibility-level", type=click.Choice(["none", "ampere_plus", "same_compute_capability"])),
    _option("--weak-typing-fp16", is_flag=True, help="TensorRT <= 10 only: let TensorRT pick FP16 layers (BuilderFlag.FP16)."),
    _option("--calib-data", type=click.Path(), help="INT8 calibration: .npz, folder of .npy, text file, or image folder."),
    _option("--verify-data", type=click.Path(), help="Real samples that verify every graph (formats of "
            "--calib-data).  [default: synthetic inputs, plus samples held back from --calib-data]"),
    _option("--calib-samples", type=int, help="INT8 calibration with N synthetic samples (not representative)."),
    _option("--calib-method", help="INT8 calibration method: max, entropy, percentile, auto (the smallest measured "
            "error).  [default: max]"),
    _option("--calib-percentile", type=float, help="Percentile of |x| that --calib-method percentile clips at.  "
            "[default: 99.99]"),
    _option("--int8-outlier-channels/--no-int8-outlier-channels", default=None, help="Compute the few input "
            "channels of each INT8 MatMul whose calibration range dwarfs the rest apart, unquantized, so the INT8 "
            "scale fits the others.  [default: on]"),
    _option("--int8-search/--no-int8-search", default=None, help="Search which nodes to keep out of INT8 even when "
            "the INT8 graph meets its budget (--no-int8-search: never).  [default: when it misses the budget]"),
    _option("--precision", "precision_mode", type=click.Choice(["auto", "fp32", "fp16", "int8"]),
            help="Engine precision; auto tries INT8, INT8 with nodes kept out, FP16, FP32 and keeps the first that "
            "meets the budget (replaces --use-fp16/--use-int8)."),
    _option("--calibration-cache", type=click.Path(dir_okay=False),
            help="Calibration cache: reused when made from the same FP32 graph, method and percentile; else "
            "recalibrated and rewritten."),
    _option("--tokenizer-path", type=click.Path(), help="Hugging Face tokenizer folder (text calibration, pipelines)."),
    _option("--onnx-int8", type=click.Choice(["dynamic", "static"]), help="ONNX Runtime INT8 graph for CPU serving."),
    _option("--ort-fusion/--no-ort-fusion", default=None,
            help="With --onnx-int8 dynamic: fuse attention/LayerNorm/GELU with ONNX Runtime's transformer optimizer first.  [default: on]"),
    _option("--cpu-target", type=click.Choice(["auto", "avx2", "avx512", "avx_vnni", "avx512_vnni"]),
            help="CPU the ONNX Runtime INT8 graph is for: 8-bit weights with VNNI, 7-bit without (auto = this machine).  [default: auto]"),
    _option("--cpu-runtime", type=click.Choice(["auto", "onnxruntime", "openvino"]),
            help="CPU serving runtime; auto: ONNX Runtime, or the faster of both measured with --tune.  [default: auto]"),
    _option("--openvino-precision", type=click.Choice(["auto", "fp32", "bf16", "int8"]),
            help="OpenVINO: FP32 or BF16 inference of the FP32 IR, or INT8 by NNCF; auto: OpenVINO's default here "
                 "(BF16 where native), all measured with --tune.  [default: auto]"),
    _option("--triton-backend", type=click.Choice([AUTO, *SERVING_BACKENDS]),
            help="How Triton serves the core model; auto: the engine where this machine has a GPU and TensorRT, "
                 "else ONNX Runtime (or --cpu-runtime openvino) on CPU (python backend).  [default: auto]"),
    _option("--instance-kind", type=click.Choice(["auto", "gpu", "cpu"]),
            help="Triton instance_group kind; auto: GPU for engines, CPU for ONNX Runtime.  [default: auto]"),
    _option("--instance-count", type=int, help="Triton instances per device.  [default: 1]"),
    _option("--model-warmup/--no-model-warmup", default=None,
            help="Warm the core model up at load (batch 1 and the max batch).  [default: on for engines]"),
    _option("--response-cache/--no-response-cache", default=None,
            help="Triton response cache on the model users call (trt-serve starts the cache; other servers need --cache-config).  [default: off]"),
    _option("--max-queue-size", type=int, help="Dynamic batching: requests queued before new ones are rejected."),
    _option("--queue-timeout", type=int, help="Dynamic batching: microseconds a request may wait in the queue."),
    _option("--queue-timeout-action", type=click.Choice(["reject", "delay"]),
            help="What a timed-out request gets.  [default: reject]"),
    _option("--priority-levels", type=int, help="Dynamic batching priority levels (1 is the highest)."),
    _option("--default-priority-level", type=int,
            help="Priority of requests that name none.  [default: the lowest, --priority-levels]"),
    _option("--model-version", type=click.IntRange(min=1),
            help="Write the model as this version beside the versions already in --triton-repo.  [default: 1, "
                 "replacing the model folder]"),
    _option("--version-policy", help="Triton version_policy: all, latest:N or specific:V[,V...]."),
    _option("--pipeline-instance-count", help="CPU instances of each pre/post-processing model: N, or ROLE=N pairs "
                                              "(tokenizer, preprocess, postprocess, entry).  [default: 1]"),
    _option("--triton-parameter", "triton_parameter", multiple=True, default=(),
            help="KEY=VALUE written to the core model's config parameters (repeatable)."),
    _option("--intra-op-threads", type=int, help="ONNX Runtime intra-op threads (CPU serving)."),
    _option("--tune", is_flag=True,
            help="CPU serving: choose runtime (--cpu-runtime auto), precision, intra-op threads and instance count by a short measurement (recorded in the config and report)."),
    _option("--inter-op-threads", type=int, help="ONNX Runtime inter-op threads (CPU serving)."),
    _option("--pipeline", help="Pre/post-processing pipeline to write around the model (classifier, gector, e5, yolox, ...)."),
    _option("--pipeline-name", help="Name of the pipeline's entry model [MODEL_NAME_PIPELINE]."),
    _option("--pipeline-option", "pipeline_option", multiple=True, default=(), help="KEY=VALUE for the pipeline (repeatable)."),
    _option("--verbose", is_flag=True, help="Show tracebacks and builder logs."),
]


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@_apply(ORIGINAL_FLAGS + ADDED_FLAGS)
@click.pass_context
def main(ctx: click.Context, config_path, pipeline_option, triton_parameter, **flags):
    """Convert a PyTorch checkpoint to a verified ONNX graph, a TensorRT engine and a Triton repository."""
    verbose = bool(flags.get("verbose"))
    warnings.formatwarning = lambda message, *_args, **_kwargs: f"warning: {message}\n"
    with errors_reported(verbose, interrupted="interrupted; nothing was written"):
        from trt_converters.convert import run_conversion
        from trt_converters.config_file import read_config_file
        from trt_converters.options import build_options
        from trt_converters.report import render_table

        config_values = read_config_file(config_path) if config_path else {}
        given = {name: value for name, value in flags.items()
                 if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
        if pipeline_option:
            given["pipeline_options"] = _key_values(pipeline_option)
        if triton_parameter:
            given["triton_parameters"] = _key_values(triton_parameter, flag="--triton-parameter", parse=False)
        options = build_options(config_values, given)
        report = run_conversion(options)
        click.echo(render_table(report))
        for path in report.get("written", []):
            click.echo(f"wrote {path}")


def _key_values(pairs, *, flag: str = "--pipeline-option", parse: bool = True) -> dict:
    import yaml

    result = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise UserError(f"{flag} {pair!r} must be KEY=VALUE")
        result[key.strip()] = yaml.safe_load(value) if parse else value
    return result


if __name__ == "__main__":
    main()
