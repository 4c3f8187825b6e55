"""PyTorch GPU baselines for the text classes trt-convert takes, on padded masks.

The peers a user has before converting: the model class run by PyTorch on the GPU, eager FP32 (TF32 off
and on), FP16 weights, BF16 autocast and torch.compile on FP16 weights. Models are built from their
model scripts with random weights (timing does not depend on the values): DeBERTa-v3-large
(`DebertaLargeModel` of model_scripts/deberta.py, the original tool's caption classifier, 434M) and
RoBERTa-base (`RobertaClassifier`, 125M). Inputs: token ids from the vocabulary and attention masks that
are per-row prefixes of ones with lengths drawn in [16, seq] (one full row), at the batch sizes Triton's
dynamic batcher forms.

Per (model, mode, batch): GPU time of the forward pass (CUDA events, inputs already on the device) and host
time of one request (pinned host inputs -> device, forward, logits back, synchronize), each the median and
10th-90th percentiles of `--rounds` x `--iterations` timed calls after warm-up, and the peak memory
PyTorch allocated. Results go to JSON and Markdown as they are measured, so a run cut short keeps what
it measured.

    python benchmarks/gpu_pytorch_baseline.py --out-dir benchmarks/results
    python benchmarks/gpu_pytorch_baseline.py --models roberta_base --batch-sizes 1 --no-compile  # quick
    python benchmarks/gpu_pytorch_baseline.py --table   # Markdown again from the JSON
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # model scripts import trt_converters.serving_runtime (stdlib + numpy only)

MODELS = {
    "deberta_v3_large": ("deberta.py", "DebertaLargeModel", ("input_ids", "input_mask")),
    "roberta_base": ("roberta_classifier.py", "RobertaClassifier", ("input_ids", "attention_mask")),
}
MODES = ("fp32", "tf32", "fp16", "bf16_autocast", "compile_fp16")


def load_class(script: str, class_name: str):
    spec = importlib.util.spec_from_file_location(f"_bench_{Path(script).stem}", ROOT / "model_scripts" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, class_name)


def padded_inputs(torch, vocab_size: int, batch: int, seq: int, seed: int):
    """Token ids (no special ids below 5) and prefix masks: row 0 full, the others 16..seq long."""
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab_size, (batch, seq), generator=generator)
    lengths = torch.randint(16, seq + 1, (batch,), generator=generator)
    lengths[0] = seq
    mask = (torch.arange(seq)[None, :] < lengths[:, None]).to(torch.int64)
    return ids, mask


def percentiles(values: list[float]) -> dict:
    ordered = sorted(values)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * (len(ordered) - 1) + 0.5))]  # noqa: E731
    return {"median": round(statistics.median(ordered), 4), "p10": round(pick(0.1), 4), "p90": round(pick(0.9), 4)}


def prepare(torch, model, mode: str):
    """The module and the autocast context for one mode."""
    import contextlib

    torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
    torch.backends.cudnn.allow_tf32 = mode == "tf32"
    if mode in ("fp16", "compile_fp16"):
        model = model.half()
    elif mode in ("fp32", "tf32", "bf16_autocast"):
        model = model.float()
    if mode == "compile_fp16":
        model = torch.compile(model)
    if mode == "bf16_autocast":
        return model, lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return model, contextlib.nullcontext


def time_one(torch, model, autocast, host_inputs: tuple, args) -> dict:
    device_inputs = tuple(t.cuda() for t in host_inputs)
    with torch.inference_mode():
        for _ in range(args.warmup):
            with autocast():
                model(*device_inputs)
        torch.cuda.synchronize()
        gpu_ms, host_ms = [], []
        for _ in range(args.rounds):
            for _ in range(args.iterations):
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                with autocast():
                    model(*device_inputs)
                end.record()
                end.synchronize()
                gpu_ms.append(start.elapsed_time(end))
            for _ in range(args.iterations):
                began = time.perf_counter()
                moved = tuple(t.to("cuda", non_blocking=True) for t in host_inputs)
                with autocast():
                    out = model(*moved)
                out.float().cpu()
                host_ms.append((time.perf_counter() - began) * 1000)
    return {"gpu_ms": percentiles(gpu_ms), "host_ms": percentiles(host_ms),
            "peak_allocated_mib": round(torch.cuda.max_memory_allocated() / 2**20)}


def machine(torch) -> dict:
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        smi = "nvidia-smi not available"
    import transformers

    return {"gpu": smi, "torch": torch.__version__, "cuda": torch.version.cuda, "transformers": transformers.__version__,
            "python": platform.python_version(), "cpu": platform.processor() or platform.machine()}


def write(results: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "gpu_pytorch_baseline.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["## GPU: PyTorch baselines", "",
             "Eager FP32 (TF32 off and on), FP16 weights, BF16 autocast and torch.compile on FP16 weights; random "
             "weights, token ids from the vocabulary, padded masks (row lengths 16..seq, one full row). GPU ms: CUDA "
             "events around the forward pass, inputs on the device. Host ms: pinned inputs to the device, forward, "
             "logits back, synchronize.", "",
             f"- GPU: {results['machine']['gpu']}; torch {results['machine']['torch']} (CUDA "
             f"{results['machine']['cuda']}), transformers {results['machine']['transformers']}",
             f"- seq {results['seq']}, padded masks; {results['rounds']} rounds x {results['iterations']} timed calls "
             "after warm-up; median (p10-p90) in ms", "",
             "| model | mode | batch | GPU ms | host ms (H2D+forward+D2H) | peak MiB | seq/s (GPU) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in results["rows"]:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['mode']} | {row['batch']} | failed: {row['error']} | | | |")
            continue
        g, h = row["gpu_ms"], row["host_ms"]
        lines.append(f"| {row['model']} ({row['parameters_m']}M) | {row['mode']} | {row['batch']} | "
                     f"{g['median']:.3f} ({g['p10']:.3f}-{g['p90']:.3f}) | {h['median']:.3f} ({h['p10']:.3f}-{h['p90']:.3f}) | "
                     f"{row['peak_allocated_mib']} | {row['batch'] * 1000 / g['median']:.0f} |")
    (out_dir / "gpu_pytorch_baseline.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--out-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--table", action="store_true", help="rewrite the Markdown from the JSON in --out-dir")
    args = parser.parse_args()
    if args.table:
        write(json.loads((args.out_dir / "gpu_pytorch_baseline.json").read_text()), args.out_dir)
        return 0
    import torch

    if not torch.cuda.is_available():
        print("error: needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
        return 2
    modes = [m for m in args.modes.split(",") if not (args.no_compile and m.startswith("compile"))]
    results = {"machine": machine(torch), "seq": args.seq, "rounds": args.rounds, "iterations": args.iterations,
               "rows": []}
    print(results["machine"], flush=True)
    for name in args.models.split(","):
        script, class_name, _ = MODELS[name]
        torch.manual_seed(0)
        base = load_class(script, class_name)().eval()
        parameters_m = round(sum(p.numel() for p in base.parameters()) / 1e6, 1)
        vocab = base.config.vocab_size
        for mode in modes:
            model, autocast = prepare(torch, base.cuda(), mode)
            for batch in (int(b) for b in args.batch_sizes.split(",")):
                torch.cuda.reset_peak_memory_stats()
                host_inputs = tuple(t.pin_memory() for t in padded_inputs(torch, vocab, batch, args.seq, seed=batch))
                row = {"model": name, "parameters_m": parameters_m, "mode": mode, "batch": batch}
                began = time.perf_counter()
                try:
                    row.update(time_one(torch, model, autocast, host_inputs, args))
                except Exception as exc:  # a mode that fails for one model is a row, not the end of the run
                    row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
                row["seconds"] = round(time.perf_counter() - began, 1)
                results["rows"].append(row)
                print(json.dumps(row), flush=True)
                write(results, args.out_dir)
            del model
            torch.cuda.empty_cache()
        del base
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
