"""--tune across runtimes: runtime x precision x instances x intra-op threads on the machine at hand.

Contenders are the graphs this run verified within their budget: ONNX Runtime on the served ONNX graph,
OpenVINO FP32, BF16 and INT8 (runtime.py). Each (instances, threads) candidate of
onnxruntime_cpu.tune.candidates is measured as that module measures ONNX Runtime alone: `instances`
sessions (one compiled model each, as Triton's instances are), `concurrency` client threads sending
batch-1 requests at the profile's opt shape, in rotating order, each row keeping its better round. The
most runs per second wins; the whole table, the CPU features found and the winner go into the report.
Precisions that missed their budget are listed in the table, unmeasured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from trt_converters.errors import StageError


@dataclass(frozen=True)
class Contender:
    runtime: str  # onnxruntime or openvino
    precision: str  # fp32, bf16, int8 (ONNX Runtime: the served graph's)
    path: Path  # ONNX graph or OpenVINO model.xml
    within_budget: bool = True


@dataclass
class RuntimeTuneResult:
    winner: dict
    table: list[dict] = field(default_factory=list)
    cpu_features: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"winner": self.winner, "table": self.table, "cpu_features": self.cpu_features,
                "cpus": os.cpu_count(), "measure": "runs per second, batch-1 requests from 4 client threads, "
                                                   "best of the rounds"}


def _sessions(contender: Contender, instances: int, threads: int) -> list:
    if contender.runtime == "openvino":
        from trt_converters.openvino_cpu.runtime import OpenVINOSession

        return [OpenVINOSession(contender.path, contender.precision, threads=threads) for _ in range(instances)]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return [ort.InferenceSession(str(contender.path), options, providers=["CPUExecutionProvider"])
            for _ in range(instances)]


def tune_runtimes(contenders: list[Contender], inputs: dict, *, cores: int | None = None, concurrency: int = 4,
                  seconds: float = 1.0, rounds: int = 2) -> RuntimeTuneResult:
    """Measures every contender within budget at every candidate and returns the fastest row and the table."""
    from trt_converters.onnxruntime_cpu.tune import _runs_per_second, candidates
    from trt_converters.openvino_cpu.runtime import cpu_features

    cores = max(1, cores or os.cpu_count() or 1)
    rows = [(c, instances, threads) for c in contenders if c.within_budget for instances, threads in candidates(cores)]
    if not rows:
        raise StageError("--tune has no contender within its accuracy budget to measure")
    best: dict[int, float] = {}
    for round_index in range(rounds):
        shift = round_index % len(rows)
        for index in [*range(shift, len(rows)), *range(shift)]:
            contender, instances, threads = rows[index]
            try:
                sessions = _sessions(contender, instances, threads)
            except Exception as exc:  # both runtimes raise their own types
                raise StageError(f"--tune could not load {contender.runtime} {contender.precision}: "
                                 f"{str(exc).strip().splitlines()[-1] if str(exc).strip() else exc}") from exc
            rate = _runs_per_second(sessions, inputs, concurrency, seconds)
            best[index] = max(best.get(index, 0.0), rate)
            del sessions
    table = [{"runtime": c.runtime, "precision": c.precision, "instances": i, "threads": t, "within_budget": True,
              "runs_per_s": round(best[k], 2)} for k, (c, i, t) in enumerate(rows)]
    table += [{"runtime": c.runtime, "precision": c.precision, "within_budget": False, "runs_per_s": None}
              for c in contenders if not c.within_budget]
    winner = max((row for row in table if row["within_budget"]), key=lambda row: row["runs_per_s"])
    return RuntimeTuneResult(winner=dict(winner), table=table, cpu_features=cpu_features())


def contenders_of_run(onnx_graph: Path | None, openvino, runtime: str, onnx_precision: str) -> list[Contender]:
    """What this run can serve: the ONNX Runtime graph (runtime auto) and the OpenVINO precisions it verified."""
    found = []
    if runtime == "auto" and onnx_graph is not None:
        found.append(Contender("onnxruntime", onnx_precision, Path(onnx_graph)))
    if openvino is not None:
        found += [Contender("openvino", precision, xml, bool(openvino.met_budget.get(precision)))
                  for precision, xml in openvino.irs.items()]
    return found
