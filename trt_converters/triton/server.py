"""Run the real Triton Inference Server shipped in the nvidia-pytriton wheel, on 127.0.0.1.

The wheel carries `tritonserver` 2.51, its shared libraries and the Python backend, but keeps
the per-Python-version backend stubs apart from the backend. `LocalTritonServer` assembles a
backend directory with the stub that matches this interpreter, starts the server on free ports
and waits for readiness. `check_repository` uses the same server as a config validator.

The stub takes its packages from the first `python` on PATH (it ignores PYTHONPATH). The server
gets a small serving environment first on PATH: this interpreter, this environment's
site-packages, and in front of them a package per hidden module whose import fails. By default
`trt_converters` is hidden, so served models see what a stock Triton container with the
repository's requirements.txt installed sees: a model that imports this package fails to load.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Mapping

from trt_converters.errors import StageError, UserError
from trt_converters.storage.location import is_url, server_repository
from trt_converters.triton.distribution import (TritonDistribution, find_triton_distribution, interpreter_libdir,
                                                serving_environment)

_LOG_TAIL_LINES = 40
_PORT_ATTEMPTS = 3
_ERROR_LINE = re.compile(r"^(E\d{4} |\[libprotobuf ERROR|error: )")
# Logged on every start on a machine without a GPU driver; not a cause of failure.
_NOISE = ("CudaDriverHelper has not been initialized",)


class TritonServerError(StageError):
    """The server process failed to start, exited early, or did not become ready in time."""


class PortInUseError(TritonServerError):
    """A port the caller asked for is taken by another process."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _http_status(url: str, *, method: str = "GET", timeout: float = 2.0) -> int:
    """HTTP status of a request, 0 when the server is not answering."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, OSError):
        return 0


def _tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The server's error lines (its option table would otherwise fill the tail), else the tail."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    errors = [
        line[:2000] for line in text.splitlines()
        if _ERROR_LINE.match(line) and not any(noise in line for noise in _NOISE)
    ]
    return "\n".join(errors[-lines:] or text.splitlines()[-lines:])


@dataclasses.dataclass(frozen=True)
class ServerLaunch:
    """How LocalTritonServer starts the server, beyond the repository, the log and the startup wait.

    `ports` (http, grpc, metrics) on `host`: a taken one raises PortInUseError; None: free 127.0.0.1 ports.
    `metrics` serves the metrics endpoint. `env` adds or overrides environment variables for the server.
    `wait_for`: "ready" (every model loaded) or "live". `exit_timeout`: seconds the server has to exit.
    `hidden_modules`: top-level packages python-backend models cannot import (see the module doc). `user`
    runs the server as that user (this process must be root), as a container does with a mounted repository.
    """

    extra_args: tuple[str, ...] = ()
    metrics: bool = False
    env: Mapping[str, str] = dataclasses.field(default_factory=dict)
    exit_timeout: int = 5
    wait_for: str = "ready"
    hidden_modules: tuple[str, ...] = ("trt_converters",)
    host: str = "127.0.0.1"
    ports: tuple[int, int, int] | None = None
    distribution: TritonDistribution | None = None
    user: str | None = None


class LocalTritonServer:
    """A real tritonserver child process serving `repo`, started as `launch` says (ServerLaunch).

    Use as a context manager, or call start() and stop(). After start(), `http_url` and
    `grpc_url` are "127.0.0.1:PORT" strings as tritonclient expects them; `metrics_url` is set
    only with `launch.metrics`.
    """

    def __init__(self, repo: Path | str, *, log_path: Path | None = None, startup_timeout: float = 90.0,
                 launch: ServerLaunch = ServerLaunch()) -> None:
        if launch.wait_for not in ("ready", "live"):
            raise ValueError("wait_for must be 'ready' or 'live'")
        self.repo = repo if is_url(repo) else Path(repo)  # a folder, or an s3:// URL Triton reads itself
        self.log_path = Path(log_path) if log_path is not None else None
        self.startup_timeout = startup_timeout
        self.extra_args = tuple(launch.extra_args)
        self.metrics = launch.metrics
        self.env = dict(launch.env)
        self.exit_timeout = launch.exit_timeout
        self.wait_for = launch.wait_for
        self.hidden_modules = tuple(launch.hidden_modules)
        self.host = launch.host
        self.ports = tuple(launch.ports) if launch.ports is not None else None
        self.distribution = launch.distribution
        self.user = launch.user
        self.http_url: str | None = None
        self.grpc_url: str | None = None
        self.metrics_url: str | None = None
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._serving_bin: Path | None = None
        self._log_file = None

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> "LocalTritonServer":
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def start(self) -> "LocalTritonServer":
        """Start the server and block until it is ready; raise TritonServerError otherwise."""
        if self._process is not None:
            raise RuntimeError("server already started")
        if isinstance(self.repo, Path) and not self.repo.is_dir():
            raise UserError(
                f"model repository {self.repo} is not a directory: "
                "pass the folder that holds <model>/config.pbtxt"
            )
        dist = self.distribution or find_triton_distribution()
        self._workdir = Path(tempfile.mkdtemp(prefix="trtc-triton-"))
        if self.user is not None:
            self._workdir.chmod(0o755)  # the assembled backend folder and the working folder
        try:
            backends = self._prepare_backends(dist)
            self._serving_bin = (serving_environment(self._workdir / "python", self.hidden_modules)
                                 if self.hidden_modules else Path(sys.prefix) / "bin")
            for _ in range(1 if self.ports else _PORT_ATTEMPTS):
                if self._launch(dist, backends):
                    return self
            if self.ports:
                raise PortInUseError(f"a port of {self._port_text()} on {self.host} is already in use (another "
                                     "server?); choose free ports")
            raise TritonServerError(
                f"tritonserver could not bind free ports after {_PORT_ATTEMPTS} attempts:\n"
                + _tail(self._current_log())
            )
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate the server this object started (SIGTERM, bounded wait, SIGKILL)."""
        process, self._process = self._process, None
        if process is not None:
            self._terminate(process)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        atexit.unregister(self.stop)

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- conveniences ----------------------------------------------------------------------
    def model_ready(self, name: str, version: str = "") -> bool:
        """Whether `name` (optionally one version) is loaded and ready to infer."""
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "") + "/ready"
        return _http_status(f"http://{self.http_url}{path}") == 200

    def repository_index(self) -> list[dict]:
        """The server's repository index: name, version, state and reason per model."""
        request = urllib.request.Request(
            f"http://{self.http_url}/v2/repository/index", method="POST", data=b"{}"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def log_text(self) -> str:
        """The server log so far (stdout and stderr together)."""
        path = self._current_log()
        return path.read_text(errors="replace") if path.exists() else ""

    def log_errors(self, lines: int = 3) -> str:
        """The server's last error lines (else the log's tail), on one line."""
        return _tail(self._current_log(), lines).replace("\n", " | ")

    # -- internals -------------------------------------------------------------------------
    def _current_log(self) -> Path:
        if self.log_path is not None:
            return self.log_path
        return (self._workdir or Path(tempfile.gettempdir())) / "tritonserver.log"

    def _port_text(self) -> str:
        http, grpc, metrics = self.ports
        return f"HTTP {http}, gRPC {grpc}" + (f", metrics {metrics}" if self.metrics else "")

    def _prepare_backends(self, dist: TritonDistribution) -> Path:
        if dist.backend_directory is not None:
            return dist.backend_directory
        # The stub must sit next to the backend library; the wheel keeps it apart, so the
        # backend directory is assembled in our temp folder.
        backends = self._workdir / "backends"
        python_dir = backends / "python"
        python_dir.mkdir(parents=True)
        for item in dist.python_backend.iterdir():
            if item.is_file():
                shutil.copy2(item, python_dir / item.name)
        shutil.copy2(dist.python_stub, python_dir / "triton_python_backend_stub")
        return backends

    def _environment(self, dist: TritonDistribution) -> dict[str, str]:
        env = os.environ.copy()
        # The copied stub and backend lose their RPATH to the wheel's libraries. The stub links the system
        # libpython3.11; this interpreter's own libpython comes first, or a virtualenv on another 3.11 build
        # fails to import its stdlib's C extensions in the stub (`_ssl`: undefined symbol _PyModule_Add),
        # which breaks any model that imports transformers.
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (interpreter_libdir(), str(dist.libs), env.get("LD_LIBRARY_PATH", "")) if p
        )
        env["PATH"] = os.pathsep.join(p for p in (str(self._serving_bin), env.get("PATH", "")) if p)
        env.update(self.env)
        return env

    def _command(self, dist: TritonDistribution, backends: Path, http: int, grpc: int, metrics: int) -> list[str]:
        cmd = [
            str(dist.binary),
            f"--model-repository={server_repository(self.repo)}",
            f"--backend-directory={backends}",
            f"--cache-directory={dist.caches}",
            f"--http-address={self.host}",
            f"--http-port={http}",
            f"--grpc-address={self.host}",
            f"--grpc-port={grpc}",
            "--disable-auto-complete-config",
            f"--exit-timeout-secs={self.exit_timeout}",
        ]
        if self.metrics:
            cmd += ["--allow-metrics=true", f"--metrics-address={self.host}", f"--metrics-port={metrics}"]
        else:
            cmd += ["--allow-metrics=false"]
        return cmd + list(self.extra_args)

    def _launch(self, dist: TritonDistribution, backends: Path) -> bool:
        """One start attempt; False when a port was taken meanwhile (caller retries)."""
        http, grpc, metrics = self.ports or (_free_port(), _free_port(), _free_port())
        if len({http, grpc, metrics}) < 3:
            if self.ports:
                raise UserError(f"the HTTP, gRPC and metrics ports must differ; got {self._port_text()}")
            return False
        log_path = self._current_log()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        if self._log_file is not None:
            self._log_file.close()
        self._log_file = open(log_path, "wb")
        began = time.monotonic()
        self._process = subprocess.Popen(
            self._command(dist, backends, http, grpc, metrics),
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=self._environment(dist),
            cwd=self._workdir,
            **({"user": self.user, "group": _primary_group(self.user), "extra_groups": []} if self.user else {}),
        )
        atexit.register(self.stop)
        self.pid = self._process.pid
        # A server bound to all interfaces is reached through the loopback address.
        reach = "127.0.0.1" if self.host in ("0.0.0.0", "") else ("[::1]" if self.host == "::" else self.host)
        self.http_url = f"{reach}:{http}"
        self.grpc_url = f"{reach}:{grpc}"
        self.metrics_url = f"{reach}:{metrics}" if self.metrics else None

        health = f"http://{self.http_url}/v2/health/{self.wait_for}"
        deadline = began + self.startup_timeout
        delay = 0.05
        while time.monotonic() < deadline:
            code = self._process.poll()
            if code is not None:
                log = _tail(log_path)
                self._process = None
                if "already in use" in log:
                    return False
                raise TritonServerError(
                    f"tritonserver exited with status {code} while starting "
                    f"(repository {self.repo}); last log lines:\n{log}"
                )
            if _http_status(health, timeout=1.0) == 200:
                self.startup_seconds = time.monotonic() - began
                return True
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)
        raise TritonServerError(
            f"tritonserver was not {self.wait_for} within {self.startup_timeout:.0f} s "
            f"(repository {self.repo}); last log lines:\n{_tail(log_path)}"
        )

    def _terminate(self, process: subprocess.Popen) -> None:
        if process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=self.exit_timeout + 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


_POLL_FAILED = re.compile(r"Poll failed for model directory '([^']+)': (.*?)\"?$")
_LOAD_FAILED = re.compile(r"failed to load model '([^']+)': (.*?)\"?$")
_PROTOBUF_ERROR = re.compile(r"\[libprotobuf ERROR [^\]]*\] (.*)$")


def _log_failures(log: str) -> dict[str, str]:
    """Reasons the server only logs: config files it could not read or accept."""
    reasons: dict[str, str] = {}
    last_protobuf = ""
    for line in log.splitlines():
        proto = _PROTOBUF_ERROR.search(line)
        if proto:
            last_protobuf = proto.group(1).strip()
            continue
        match = _POLL_FAILED.search(line) or _LOAD_FAILED.search(line)
        if match:
            name, reason = match.group(1), match.group(2).strip()
            if last_protobuf and "text proto" in reason:
                reason = f"{reason}: {last_protobuf}"
            reasons.setdefault(name, reason)
        last_protobuf = ""
    return reasons


def check_repository(repo: Path, *, startup_timeout: float = 90.0) -> dict[str, str]:
    """Load `repo` in the real server and report each model's outcome.

    Returns model name -> "READY", "UNAVAILABLE: <reason>" (config accepted, load failed, e.g.
    "unable to find backend library for backend 'tensorrt'") or "CONFIG_ERROR: <reason>"
    (the server rejected the directory or its config.pbtxt: syntax, semantics, naming).
    Models without a backend here are expected to be UNAVAILABLE, never CONFIG_ERROR.
    """
    server = LocalTritonServer(Path(repo), startup_timeout=startup_timeout, launch=ServerLaunch(
        extra_args=("--exit-on-error=false", "--strict-readiness=false"), exit_timeout=2, wait_for="live"))
    with server:
        return model_states(server)


def model_states(server: LocalTritonServer, *, explicit: bool = False) -> dict[str, str]:
    """Each model of a running server's repository: "READY", "<STATE>: <reason>" or "CONFIG_ERROR: <reason>".

    With `explicit` (explicit model control), models the server was not asked to load are left out.
    """
    index = server.repository_index()
    logged = _log_failures(server.log_text())
    result: dict[str, str] = {}
    for entry in index:  # one entry per version; a model is READY only if all its versions are
        name = entry["name"]
        state = entry.get("state", "")
        reason = entry.get("reason", "")
        if state == "READY":
            outcome = "READY"
        elif state:
            outcome = f"{state}: {reason or logged.get(name, '')}".rstrip(": ")
        elif explicit and name not in logged:
            continue
        else:
            outcome = f"CONFIG_ERROR: {logged.get(name, 'rejected by the server (see its log)')}"
        if result.get(name, "READY") == "READY":
            result[name] = outcome
    for name, reason in logged.items():
        result.setdefault(name, f"CONFIG_ERROR: {reason}")
    return result


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid


