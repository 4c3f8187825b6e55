"""`trt-bench`: time PyTorch eager, ONNX Runtime and a TensorRT engine side by side on the same inputs, or
(--triton) load-test a model served by Triton at several concurrency levels.

Exit status: 0 done, 1 an unexpected failure, 2 a usage error (one line on stderr).
"""

from __future__ import annotations

from pathlib import Path

import click

from trt_converters.cli_errors import errors_reported
from trt_converters.cli_options import MODEL_FLAGS, apply_options
from trt_converters.errors import UserError

EPILOG = """\b
Examples:
  trt-bench --config configs/roberta_emotion.yaml --model-kwargs '{"num_hidden_layers": 2}' \\
            --report trt_out/roberta_emotion/report.json --batch-sizes 1,8 --lengths 64,128
  trt-bench --config configs/e5_small_v2.yaml --onnx fp32=model.onnx --onnx int8=model.int8.onnx
  trt-bench --config configs/roberta_emotion.yaml --engine model.plan --device cuda --torch-fp16 --torch-compile
Without --ckpt-path the PyTorch model has random weights (the timing does not depend on them).
  trt-bench --triton http://127.0.0.1:8000 --model minilm_l6_e5 --concurrency 1,2,4,8 --plot load.png
  trt-bench --triton http://127.0.0.1:8000 --model minilm_l6_e5 --input-data trt_out/minilm_l6/minilm_l6_e5.input_data.json
With --triton: a closed loop of N clients per --concurrency level against a served model (perf_analyzer's
vocabulary: throughput and client-side p50/p90/p99 latency); requests from --input-data (perf_analyzer's JSON,
as trt-convert writes it beside the report) or derived from the model's config.
Latency vocabulary: "host latency" = inputs in host memory to outputs in host memory (on CUDA: with
H2D/D2H transfers); "GPU compute" = CUDA events around the inference alone (without transfers).
"""


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UserError(f"{flag} takes comma-separated integers, e.g. 1,8; got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise UserError(f"{flag} needs positive integers, e.g. 1,8; got {text!r}")
    return values


def _labelled_paths(values, flag: str) -> dict[str, Path]:
    from trt_converters.bench import precision_label

    result = {}
    for value in values:
        label, separator, path = value.partition("=")
        path = Path(path if separator else label)
        if not path.is_file():
            raise UserError(f"{flag} {path} does not exist")
        result[label if separator else precision_label(path)] = path
    return result


def _shape_overrides(values) -> dict[str, tuple[int, ...]]:
    overrides = {}
    for value in values:
        name, separator, dims = value.partition("=")
        try:
            parsed = tuple(int(d) for d in dims.lower().split("x"))
        except ValueError:
            parsed = ()
        if not separator or not name or not parsed or any(d < 1 for d in parsed):
            raise UserError(f"--shape {value!r} must be NAME=DIMS without the batch, e.g. images=3x640x640")
        overrides[name] = parsed
    return overrides


def resolve_artifacts(model_flags: dict, report_path, onnx, engine):
    """ModelArtifacts from the model flags (MODEL_FLAGS' names), --config and --report, by options.build_options:
    flags > the checkpoint's config.json > --config > the report > defaults."""
    from trt_converters.bench import ModelArtifacts, artifacts_from_report
    from trt_converters.config_file import read_config_file
    from trt_converters.options import build_options

    config_path = model_flags.get("config_path")
    config = read_config_file(Path(config_path)) if config_path else {}
    from_report = artifacts_from_report(Path(report_path)) if report_path else {"onnx": {}, "engines": {}}
    report_model = from_report.get("model") or {}
    report_layer = {"model_io_config": from_report.get("io"), "model_class_name": report_model.get("class"),
                    "model_kwargs": report_model.get("kwargs")}
    given = {k: v for k, v in model_flags.items() if v is not None and k not in ("config_path", "device")}
    options = build_options(config, given, report_values={k: v for k, v in report_layer.items() if v})
    if options.model_io_config is None:
        raise UserError("no IO spec: pass --config, --model-io-config or a --report from trt-convert")
    kwargs = dict(options.model_kwargs)
    onnx_paths = {**from_report["onnx"], **_labelled_paths(onnx, "--onnx")}
    engines = {**from_report["engines"], **_labelled_paths(engine, "--engine")}
    return ModelArtifacts(io=options.model_io_config, model_script=options.model_script_path,
                          class_name=options.model_class_name, checkpoint=options.ckpt_path, model_kwargs=kwargs,
                          onnx=onnx_paths, engines=engines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}, epilog=EPILOG)
@apply_options([MODEL_FLAGS[name] for name in ("config_path", "model_script_path", "model_class_name",
                                                "model_io_config", "model_kwargs", "ckpt_path")])
@click.option("--report", "report_path", type=click.Path(dir_okay=False), help="A trt-convert report.json: its ONNX graphs and engine.")
@click.option("--onnx", multiple=True, help="[LABEL=]PATH of an ONNX graph to time (repeatable).")
@click.option("--engine", multiple=True, help="[LABEL=]PATH of a TensorRT engine to time (repeatable; GPU only).")
@click.option("--batch-sizes", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--lengths", default="128", show_default=True, help="Comma-separated sizes for dynamic dims (text: sequence length).")
@click.option("--shape", "shapes", multiple=True, help="NAME=DIMS (no batch) fixing one input's shape, e.g. images=3x640x640.")
@click.option("--warmup", default=3, show_default=True, type=click.IntRange(0, 10_000), help="Untimed runs per cell.")
@click.option("--iterations", default=30, show_default=True, type=click.IntRange(1, 100_000), help="Most timed runs per cell.")
@click.option("--max-seconds", default=20.0, show_default=True, type=click.FloatRange(0.0, 86_400), help="Time cap per cell (after 3 runs).")
@click.option("--runtimes", default="torch,ort,trt", show_default=True, help="Subset of torch,ort,trt.")
@apply_options([MODEL_FLAGS["device"]])
@click.option("--torch-fp16", is_flag=True, help="Also time PyTorch with FP16 weights (CUDA).")
@click.option("--torch-compile", is_flag=True, help="Also time torch.compile.")
@click.option("--threads", type=int, help="Intra-op threads for PyTorch and ONNX Runtime alike [their defaults].")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the results as JSON here.")
@click.option("--no-progress", is_flag=True, help="No tqdm progress bar.")
@click.option("--triton", "triton_url", help="Load-test a served model at this HTTP URL instead (with --model); "
                                            "URL1,URL2,...: replicas, the clients spread over them.")
@click.option("--model", "triton_model", help="--triton: the model (or pipeline entry model) to load.")
@click.option("--concurrency", default="1,2,4,8", show_default=True, help="--triton: comma-separated client counts.")
@click.option("--input-data", type=click.Path(dir_okay=False, path_type=Path),
              help="--triton: perf_analyzer-style request data [derived from the model config].")
@click.option("--measurement-seconds", default=5.0, show_default=True, type=click.FloatRange(0.5, 3600),
              help="--triton: measurement window per concurrency level (after 1 s of warm-up).")
@click.option("--request-batch-size", default=1, show_default=True, type=click.IntRange(1, 1_000_000),
              help="--triton: rows per request.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="--triton: seconds one request may take.")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path),
              help="--triton: PNG of throughput against p99 latency per concurrency.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
@click.pass_context
def main(ctx, config_path, model_script_path, model_class_name, model_io_config, model_kwargs, ckpt_path, report_path,
         onnx, engine, batch_sizes, lengths, shapes, warmup, iterations, max_seconds, runtimes, device, torch_fp16,
         torch_compile, threads, json_path, no_progress, triton_url, triton_model, concurrency, input_data,
         measurement_seconds, request_batch_size, timeout, plot, verbose):
    """Time PyTorch eager, ONNX Runtime (CPU; CUDA EP where present) and TensorRT engines on the same inputs,
    or (--triton) load-test a model served by Triton."""
    with errors_reported(verbose):
        _check_mode(ctx, triton_url)
        if triton_url:
            from trt_converters.triton.load import LoadSettings

            if not triton_model:
                raise UserError("--triton needs --model NAME (the served model to load)")
            settings = LoadSettings(concurrency=_int_list(concurrency, "--concurrency"),
                                    measurement_seconds=measurement_seconds, batch_size=request_batch_size,
                                    timeout=timeout)
            return _triton_load(triton_url, triton_model, settings, input_data=input_data, plot=plot,
                                json_path=json_path, no_progress=no_progress)
        from trt_converters.bench import BenchSettings, bench_model, render_table, write_json

        chosen = tuple(r.strip() for r in runtimes.split(",") if r.strip())
        unknown = [r for r in chosen if r not in ("torch", "ort", "trt")]
        if unknown or not chosen:
            raise UserError(f"--runtimes takes a subset of torch,ort,trt; got {runtimes!r}")
        settings = BenchSettings(batch_sizes=_int_list(batch_sizes, "--batch-sizes"),
                                 lengths=_int_list(lengths, "--lengths"), warmup=warmup, iterations=iterations,
                                 max_seconds=max_seconds, shape_overrides=_shape_overrides(shapes))
        model_flags = {"config_path": config_path, "model_script_path": model_script_path,
                       "model_class_name": model_class_name, "model_io_config": model_io_config,
                       "model_kwargs": model_kwargs, "ckpt_path": ckpt_path}
        artifacts = resolve_artifacts(model_flags, report_path, onnx, engine)
        unknown_shapes = [n for n in settings.shape_overrides if n not in {t.name for t in artifacts.io.inputs}]
        if unknown_shapes:
            raise UserError(f"--shape names {unknown_shapes[0]!r}, which is not an input of the IO spec")
        result = bench_model(artifacts, settings, device=device or "cpu", runtimes=chosen, torch_fp16=torch_fp16,
                             torch_compile=torch_compile, intra_op_threads=threads, show_progress=not no_progress)
        machine = result["machine"]
        click.echo(f"# {machine['cpu']}, {machine['logical_cpus']} logical CPUs"
                   + (f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU")
                   + f"; load {machine.get('load_average')}; weights: {result['artifacts']['checkpoint']}")
        click.echo(render_table(result["rows"]))
        if json_path:
            write_json(Path(json_path), result)
            click.echo(f"wrote {json_path}")


TRITON_ONLY = ("triton_model", "concurrency", "input_data", "measurement_seconds", "request_batch_size", "timeout", "plot")
SHARED = ("json_path", "no_progress", "verbose", "triton_url")


def _check_mode(ctx: click.Context, triton_url) -> None:
    """--triton options and local-runtime options do not mix: one is refused rather than silently ignored."""
    from click.core import ParameterSource

    given = [name for name in ctx.params if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE
             and name not in SHARED]
    wrong = [n for n in given if (n not in TRITON_ONLY) == bool(triton_url)]
    if wrong:
        flag = "--" + next(p.opts[0] for p in ctx.command.params if p.name == wrong[0]).lstrip("-")
        raise UserError(f"{flag} does not apply {'with' if triton_url else 'without'} --triton"
                        + ("" if triton_url else " (it belongs to the served-model load test)"))


def _triton_load(url, model, settings, *, input_data, plot, json_path, no_progress) -> None:
    from trt_converters.bench import machine_facts, write_json
    from trt_converters.triton.load import plot_load, render_load_table, run_load

    progress = None if no_progress else (lambda c: click.echo(f"concurrency {c} ...", err=True))
    result = run_load(url, model, settings, input_data=input_data, progress=progress)
    machine = machine_facts()
    result["machine"] = machine
    click.echo(f"# {model} at {url}: closed loop, batch {settings.batch_size}, {settings.measurement_seconds:g} s "
               "per level after 1 s "
               f"warm-up; requests: {result['input_data']}")
    click.echo(f"# client and server on {machine['cpu']}, {machine['logical_cpus']} logical CPUs; "
               f"load before {machine.get('load_average')}")
    click.echo(render_load_table(result["rows"]))
    if plot:
        plot_load(result["rows"], plot, f"{model}: throughput vs p99 latency")
        click.echo(f"wrote {plot}")
    if json_path:
        write_json(Path(json_path), result)
        click.echo(f"wrote {json_path}")


if __name__ == "__main__":
    main()
