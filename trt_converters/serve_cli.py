"""`trt-serve REPO`: run the real Triton server on a model repository (a folder or s3://...), in the foreground.

It prints each model's state (READY, or the server's own reason), the URLs and one ready-to-paste `curl` per
entry point, then serves until Ctrl-C (or SIGTERM), which stops the server cleanly.
Exit status: 0 stopped by the user, 1 the server could not serve (port in use, broken repository, server
exited), 2 a usage error. Errors are one line on stderr.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from pathlib import Path

import click

from trt_converters.cli_errors import errors_reported
from trt_converters.errors import StageError, UserError

EPILOG = """\b
Examples:
  trt-serve quickstart/model_repository
  trt-serve repo --http-port 9000 --grpc-port 9001 --metrics-port 9002 --model minilm_l6_e5 --log-file triton.log
  trt-serve s3://models/prod --model-control-mode poll --repository-poll-secs 15   (AWS_* credentials)
Then: trt-infer --model NAME "a sentence", or the printed curl commands.
"""


class ServeError(StageError):
    """The server cannot serve this repository here (exit status 1)."""


def check_repository_folder(repo: Path, models: tuple[str, ...], shown: str | None = None) -> None:
    """`repo` holds models and every --model; messages name `shown` (a remote repository's URL) when given."""
    name = shown or repo
    if not repo.is_dir():
        raise ServeError(f"model repository {name} is not a directory: pass the folder that holds <model>/config.pbtxt")
    found = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    if not found:
        raise ServeError(f"{name} holds no model (no {name}/<model>/config.pbtxt): pass a Triton model repository, "
                         "e.g. the --triton-repo of trt-convert")
    missing = [m for m in models if m not in found]
    if missing:
        raise UserError(f"--model {missing[0]!r} is not in {name} (models: {', '.join(found)})")


DEFAULT_CACHE_BYTES = 64 << 20


def response_cache_bytes(repo: Path, models: tuple[str, ...], cache_size: str) -> int:
    """Bytes for Triton's local response cache: a model's `response_cache { enable: true }` is ignored unless
    the server starts a cache, so 'auto' starts one exactly when a served config asks for it."""
    from trt_converters.spec import parse_byte_size
    from trt_converters.triton.examples import repository_configs

    if cache_size.strip() == "0":
        return 0
    if cache_size.strip().lower() != "auto":
        try:
            return parse_byte_size(cache_size)
        except (ValueError, UserError):
            raise UserError(f"--cache-size {cache_size!r}: give bytes (67108864), a size (64M, 1G), 0 or auto") from None
    configs = repository_configs(repo)
    wanted = [config for name, config in configs.items() if not models or name in models]
    return DEFAULT_CACHE_BYTES if any(config.response_cache.enable for config in wanted) else 0


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """One clear line before starting anything when a port is taken."""
    for label, port in ports.items():
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            # as servers do: a port whose last connections are in TIME_WAIT is free, one with a listener is not
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((host, port))
            except OSError as exc:
                flag = {"HTTP": "--http-port", "gRPC": "--grpc-port", "metrics": "--metrics-port"}[label]
                raise ServeError(f"{label} port {port} on {host} is in use or not available ({exc.strerror}): "
                                 f"stop the other server or pass {flag}") from None


def _server_version(http_url: str) -> str:
    import json
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{http_url}/v2", timeout=5) as response:
            return str(json.loads(response.read()).get("version", ""))
    except Exception:
        return ""


def render_models(states: dict[str, str]) -> str:
    width = max([len("model")] + [len(n) for n in states])
    lines = [f"{'model'.ljust(width)}  state"]
    for name in sorted(states):
        lines.append(f"{name.ljust(width)}  {states[name]}")
    return "\n".join(lines)


def render_examples(repo: Path, states: dict[str, str], http_url: str) -> str:
    from trt_converters.triton.examples import curl_command, entry_points, model_inputs, repository_configs

    configs = {n: c for n, c in repository_configs(repo).items() if states.get(n) == "READY"}
    lines = []
    for name in entry_points(configs):
        config = configs[name]
        inputs = ", ".join(f"{i.name} ({i.datatype} {list(i.dims)})" for i in model_inputs(config))
        outputs = ", ".join(o.name for o in config.output)
        lines.append(f"# {name}: {inputs} -> {outputs}")
        lines.append(curl_command(http_url, name, config))
    return "\n".join(lines)


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}, epilog=EPILOG)
@click.argument("repo", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--http-port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option("--grpc-port", default=8001, show_default=True, type=click.IntRange(1, 65535))
@click.option("--metrics-port", default=8002, show_default=True, type=click.IntRange(1, 65535))
@click.option("--model", "models", multiple=True, help="Serve only this model (repeatable; Triton's explicit model "
                                                       "control). An ensemble brings its steps.  [default: all]")
@click.option("--model-control-mode", type=click.Choice(["none", "poll", "explicit"]), default="none",
              show_default=True, help="poll: load new and changed models and versions while serving (every "
                                      "--repository-poll-secs); explicit: only --model.")
@click.option("--repository-poll-secs", type=click.IntRange(1, 86_400),
              help="Seconds between repository polls with --model-control-mode poll.  [default: 15]")
@click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path), help="Keep the server's log here.")
@click.option("--startup-timeout", default=300.0, show_default=True, type=click.FloatRange(1, 86_400),
              help="Seconds to wait for the server and its models.")
@click.option("--cache-size", default="auto", show_default=True,
              help="Response cache size (bytes, 64M, 1G): 'auto' starts Triton's local cache with 64M when a served "
                   "config enables response_cache, 0 starts none.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
def main(repo, host, http_port, grpc_port, metrics_port, models, model_control_mode, repository_poll_secs, log_file,
         startup_timeout, cache_size, verbose):
    """Serve a Triton model repository with the real tritonserver, in the foreground (Ctrl-C stops it)."""
    with errors_reported(verbose):
        from trt_converters.triton.server import (LocalTritonServer, PortInUseError, ServerLaunch, TritonServerError,
                                                  find_triton_distribution, model_states)

        from trt_converters.storage.location import is_url
        from trt_converters.storage.serving import model_control_args, repository_view

        control = model_control_args(model_control_mode, repository_poll_secs, models)
        configs = repository_view(repo)  # the folder, or the remote configs copied here
        check_repository_folder(configs, models, shown=repo if is_url(repo) else None)
        if not is_url(repo):
            repo = configs
        ports = {"HTTP": http_port, "gRPC": grpc_port, "metrics": metrics_port}
        if len(set(ports.values())) < 3:
            raise UserError(f"--http-port, --grpc-port and --metrics-port must differ; got {http_port}, {grpc_port}, "
                            f"{metrics_port}")
        check_ports_free(host, ports)
        distribution = find_triton_distribution(prefer_installed=True)
        extra = ["--exit-on-error=false", "--strict-readiness=false"]
        extra += control
        cache_bytes = response_cache_bytes(configs, models, cache_size)
        if cache_bytes:
            extra.append(f"--cache-config=local,size={cache_bytes}")
        server = LocalTritonServer(repo, log_path=log_file, startup_timeout=startup_timeout, launch=ServerLaunch(
            extra_args=tuple(extra), metrics=True, host=host, ports=(http_port, grpc_port, metrics_port),
            distribution=distribution, wait_for="live", exit_timeout=10))
        _stop_on_sigterm()
        try:
            try:
                server.start()
            except PortInUseError as exc:
                raise ServeError(str(exc)) from None
            except TritonServerError as exc:
                lines = str(exc).splitlines()
                raise ServeError(f"{lines[0]} {' | '.join(lines[1:4])}".strip()) from None
            states = model_states(server, explicit=bool(models) or model_control_mode == "explicit")
            if not any(state == "READY" for state in states.values()):
                first = next(iter(sorted(states.items())), ("", "the server found no model"))
                raise ServeError(f"no model of {repo} loaded; {first[0]}: {first[1]}"
                                 + (f" (and {len(states) - 1} more failed)" if len(states) > 1 else ""))
            which = "Triton install" if distribution.backend_directory else "nvidia-pytriton wheel"
            version = _server_version(server.http_url)
            click.echo(f"tritonserver {version} ({which}, {distribution.binary}) serving {repo}, pid {server.pid}")
            click.echo(render_models(states))
            click.echo(f"\nHTTP     http://{server.http_url}\ngRPC     {server.grpc_url}\n"
                       f"metrics  http://{server.metrics_url}/metrics")
            if log_file:
                click.echo(f"log      {log_file}")
            if cache_bytes:
                click.echo(f"cache    local response cache, {cache_bytes >> 20} MiB")
            examples = render_examples(configs, states, server.http_url)
            if examples:
                click.echo(f"\n{examples}")
            failed = sorted(n for n, s in states.items() if s != "READY")
            if failed:
                click.echo(f"\nwarning: {len(failed)} model(s) did not load: {', '.join(failed)}", err=True)
            click.echo("\nReady. Ctrl-C stops the server.", nl=True)
            sys.stdout.flush()
            while server.is_running():
                time.sleep(0.5)
            raise ServeError(f"tritonserver exited unexpectedly: {server.log_errors(3)}")
        except KeyboardInterrupt:
            click.echo("stopping tritonserver ...", err=True)
            server.stop()
            click.echo("stopped", err=True)
        finally:
            server.stop()


def _stop_on_sigterm() -> None:
    """SIGTERM (kill PID, service managers) and SIGINT stop the server like Ctrl-C does; background jobs of a
    non-interactive shell start with SIGINT ignored, so both are installed explicitly."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGINT, interrupt)


if __name__ == "__main__":
    main()
