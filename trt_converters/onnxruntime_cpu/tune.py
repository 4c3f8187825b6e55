"""--tune: intra-op threads and instance count for CPU serving, chosen by a small measured search.

Each candidate (instances x intra-op threads, at most the machine's cores in all) runs the graph in
ONNX Runtime the way Triton would: `instances` sessions, `concurrency` client threads sending batch-1
requests at the profile's opt shape, each taking a free session. The candidate with the most runs per
second wins; every measurement goes into the report. Candidates are measured in rotating order, twice,
and each keeps its better run, so that a burst of load from other processes does not decide alone.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.errors import StageError
from trt_converters.threads import run_side_by_side


@dataclass(frozen=True)
class TuneResult:
    instances: int
    intra_op_threads: int
    measurements: list[dict] = field(default_factory=list)  # {"instances", "threads", "runs_per_s"} per run

    def as_dict(self) -> dict:
        return {"instances": self.instances, "intra_op_threads": self.intra_op_threads,
                "measurements": self.measurements, "cpus": os.cpu_count()}


def candidates(cores: int) -> list[tuple[int, int]]:
    """(instances, threads) pairs using at most `cores` threads: one instance with all cores, one per core, ..."""
    pairs = {(1, cores), (cores, 1), (1, 1)}
    if cores >= 4:
        pairs |= {(2, cores // 2), (cores // 2, 2)}
    return sorted(pairs)


def tune_cpu_serving(onnx_path: Path, inputs: dict, *, cores: int | None = None, concurrency: int = 4,
                     seconds: float = 2.0, rounds: int = 2) -> TuneResult:
    """Measures each candidate on `inputs` (one batch-1 request) and returns the fastest."""
    import onnxruntime as ort

    cores = max(1, cores or os.cpu_count() or 1)
    measurements = []
    best: dict[tuple[int, int], float] = {}
    pairs = candidates(cores)
    for round_index in range(rounds):
        order = pairs[round_index % len(pairs):] + pairs[:round_index % len(pairs)]
        for instances, threads in order:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            try:
                sessions = [ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
                            for _ in range(instances)]
            except Exception as exc:  # ORT raises several pybind types
                raise StageError(f"--tune could not load {Path(onnx_path).name}: {str(exc).splitlines()[0]}") from exc
            rate = _runs_per_second(sessions, inputs, concurrency, seconds)
            measurements.append({"round": round_index, "instances": instances, "threads": threads,
                                 "runs_per_s": round(rate, 2), "load": round(os.getloadavg()[0], 2)})
            best[(instances, threads)] = max(best.get((instances, threads), 0.0), rate)
    instances, threads = max(best, key=lambda pair: best[pair])
    return TuneResult(instances, threads, measurements)


def _runs_per_second(sessions: list, inputs: dict, concurrency: int, seconds: float) -> float:
    free: queue.Queue = queue.Queue()
    for session in sessions:
        session.run(None, inputs)  # warm-up
        free.put(session)
    done = [0]
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < deadline:
            session = free.get()
            try:
                session.run(None, inputs)
            finally:
                free.put(session)
            with lock:
                done[0] += 1

    wall = run_side_by_side(client, concurrency, join_timeout=seconds + 300)
    return done[0] / wall
