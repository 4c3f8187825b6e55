"""Runs an ONNX graph with ONNX Runtime (CPU) in a child process.

A native crash in ONNX Runtime (seen on some FP16 graphs; docs/design.md, Verification) then ends the
child, not the CLI; the parent turns it into a StageError.

With `qdq_fusion=False`, Q/DQ graphs run as TensorRT computes them: ONNX Runtime's QDQ fusion would
otherwise run them with its own integer kernels, which on AVX2 CPUs without VNNI saturate int8 x int8
products (measured on a tiny text model: max rel error 0.27 fused, 0.01 unfused; TensorRT accumulates
exactly). Keep fusion on for graphs that ONNX Runtime itself serves.

Child usage: python -m trt_converters.onnx_runner MODEL INPUTS.npz OUTPUTS.npz [--no-qdq-fusion]
(MODEL may be @LIST: a file naming one graph a line, run one after another in the same child.)
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from trt_converters.errors import StageError

InputSet = dict  # tensor name -> numpy array
PEAK_KEY = "peak_rss_mb"  # the child's own resident peak, beside its outputs (memory.py)


def run_onnx_model(model_path: Path, input_sets: list[InputSet], *, qdq_fusion: bool = True,
                   timeout: float = 900.0) -> list[dict]:
    """Outputs (graph output name -> array) for each input set, computed in a child process."""
    return run_onnx_models([model_path], input_sets, qdq_fusion=qdq_fusion, timeout=timeout)[0]


def run_onnx_models(model_paths: list[Path], input_sets: list[InputSet], *, qdq_fusion: bool = True,
                    timeout: float = 900.0) -> list[list[dict]]:
    """run_onnx_model for several graphs on the same inputs, in one child (one start-up, one input transfer)."""
    import numpy as np

    names = ", ".join(Path(p).name for p in model_paths[:3]) + (" ..." if len(model_paths) > 3 else "")
    with tempfile.TemporaryDirectory(prefix="trtc-ort-") as tmp:
        inputs_file, outputs_file = Path(tmp) / "inputs.npz", Path(tmp) / "outputs.npz"
        np.savez(inputs_file, **{f"{i}/{name}": value for i, s in enumerate(input_sets) for name, value in s.items()})
        target = str(model_paths[0])
        if len(model_paths) > 1:
            listing = Path(tmp) / "models.txt"
            listing.write_text("".join(f"{p}\n" for p in model_paths))
            target = f"@{listing}"
        try:
            proc = subprocess.run([sys.executable, "-m", "trt_converters.onnx_runner", target,
                                   str(inputs_file), str(outputs_file)] + ([] if qdq_fusion else ["--no-qdq-fusion"]),
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StageError(f"ONNX Runtime did not finish {names} within {timeout:.0f} s") from None
        if proc.returncode != 0:
            raise StageError(f"ONNX Runtime failed on {names}: {_child_failure(proc)}")
        results: list[list[dict]] = [[{} for _ in input_sets] for _ in model_paths]
        with np.load(outputs_file) as saved:
            for key in saved.files:
                if key == PEAK_KEY:
                    from trt_converters.memory import note_child_peak

                    note_child_peak(float(saved[key]))
                    continue
                model, index, name = key.split("/", 2)
                results[int(model)][int(index)][name] = saved[key]
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
    paths = Path(model_path[1:]).read_text().splitlines() if model_path.startswith("@") else [model_path]
    with np.load(inputs_file) as saved:
        sets: dict[str, dict] = {}
        for key in saved.files:
            index, name = key.split("/", 1)
            sets.setdefault(index, {})[name] = saved[key]
    results = {}
    for number, path in enumerate(paths):
        session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        wanted = [i.name for i in session.get_inputs()]
        output_names = [o.name for o in session.get_outputs()]
        for index, feeds in sets.items():
            outputs = session.run(output_names, {name: feeds[name] for name in wanted})
            results.update({f"{number}/{index}/{name}": value for name, value in zip(output_names, outputs)})
        del session
    from trt_converters.memory import vmhwm_mb

    np.savez(outputs_file, **results, **{PEAK_KEY: np.float64(vmhwm_mb() or 0.0)})


if __name__ == "__main__":
    _child_main(*sys.argv[1:])
