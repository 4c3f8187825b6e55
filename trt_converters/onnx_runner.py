"""Runs an ONNX graph with ONNX Runtime (CPU) in a child process.

A native crash in ONNX Runtime (seen on some FP16 graphs; docs/design.md, Verification) then ends the
child, not the CLI; the parent turns it into a StageError.

With `qdq_fusion=False`, Q/DQ graphs run as TensorRT computes them: ONNX Runtime's QDQ fusion would
otherwise run them with its own integer kernels, which on AVX2 CPUs without VNNI saturate int8 x int8
products (measured on a tiny text model: max rel error 0.27 fused, 0.01 unfused; TensorRT accumulates
exactly). Keep fusion on for graphs that ONNX Runtime itself serves.

Child usage: python -m trt_converters.onnx_runner MODEL INPUTS.npz OUTPUTS.npz [--no-qdq-fusion]
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from trt_converters.errors import StageError

InputSet = dict  # tensor name -> numpy array


def run_onnx_model(model_path: Path, input_sets: list[InputSet], *, qdq_fusion: bool = True,
                   timeout: float = 900.0) -> list[dict]:
    """Outputs (graph output name -> array) for each input set, computed in a child process."""
    import numpy as np

    with tempfile.TemporaryDirectory(prefix="trtc-ort-") as tmp:
        inputs_file, outputs_file = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs_file, **{f"{i}/{name}": value for i, s in enumerate(input_sets) for name, value in s.items()})
        try:
            proc = subprocess.run([sys.executable, "-m", "trt_converters.onnx_runner", str(model_path),
                                   str(inputs_file), str(outputs_file)] + ([] if qdq_fusion else ["--no-qdq-fusion"]),
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StageError(f"ONNX Runtime did not finish {model_path.name} within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise StageError(f"ONNX Runtime failed on {model_path.name}: {_child_failure(proc)}")
        with np.load(outputs_file) as saved:
            results: list[dict] = [{} for _ in input_sets]
            for key in saved.files:
                index, name = key.split("/", 1)
                results[int(index)][name] = saved[key]
    return results


def _child_failure(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return f"the process was killed by {signal.Signals(-proc.returncode).name} (a crash inside ONNX Runtime)"
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    return lines[-1] if lines else f"exit status {proc.returncode}"


def _child_main(model_path: str, inputs_file: str, outputs_file: str, *flags: str) -> None:
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if "--no-qdq-fusion" in flags:
        options.add_session_config_entry("session.disable_quant_qdq", "1")
    session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
    wanted = [i.name for i in session.get_inputs()]
    output_names = [o.name for o in session.get_outputs()]
    with np.load(inputs_file) as saved:
        sets: dict[str, dict] = {}
        for key in saved.files:
            index, name = key.split("/", 1)
            sets.setdefault(index, {})[name] = saved[key]
    results = {}
    for index, feeds in sets.items():
        outputs = session.run(output_names, {name: feeds[name] for name in wanted})
        results.update({f"{index}/{name}": value for name, value in zip(output_names, outputs)})
    np.savez(outputs_file, **results)


if __name__ == "__main__":
    _child_main(*sys.argv[1:])
