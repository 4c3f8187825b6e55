"""PyTorch FP32 vs ONNX Runtime FP32 / FP16 / INT8 per model family (CPU), or the GPU table with --device cuda.

For each family: a random-weight checkpoint (seed 0), converted with the real `trt-convert` CLI
(each graph verified against PyTorch by the CLI; its errors are quoted in the table), then timed side by side
with trt_converters.bench (interleaved rounds, same inputs) at each batch size.

CPU (default): PyTorch eager FP32 (baseline), ONNX Runtime CPU EP on the FP32 graph, the FP16 AutoCast graph
(--use-fp16), the TensorRT-style Q/DQ INT8 graph (--use-int8, ModelOpt) and the ONNX Runtime dynamic INT8 graph
(--onnx-int8 dynamic).
GPU (--device cuda, on a machine with a GPU and the datacenter TensorRT): PyTorch eager FP32 and FP16,
torch.compile, ONNX Runtime CUDA EP (if installed) and TensorRT engines (FP32, FP16, INT8) at batch 1/8/32;
host latency with transfers and GPU compute without.

    python benchmarks/cpu_models.py                       # base sizes, batch 1 and 8 -> results/cpu_models.*
    python benchmarks/cpu_models.py --size tiny --models roberta,yolox --iterations 5
    python benchmarks/cpu_models.py --device cuda --batch-sizes 1,8,32   # -> results/gpu_models.*
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (DEFAULT_WORK, FAMILIES, convert, fmt_ms, load_average, machine_line,  # noqa: E402
                    markdown_table, prepare, write_results)

PRECISION_NAMES = {"fp32": "FP32", "fp16": "FP16 (AutoCast)", "int8": "INT8 Q/DQ (ModelOpt)",
                   "ort-int8-dynamic": "INT8 dynamic (ORT)"}
LOOSE = ["--atol", "1e9", "--rtol", "1e9", "--min-cosine", "-1"]  # verification still measured and reported
VERIFY_STAGES = {"fp32": "verify_fp32", "fp16": "lower_fp16", "int8": "lower_int8",
                 "ort-int8-dynamic": "ort_int8_dynamic"}


def conversion_runs(device: str, calib_samples: int) -> list[tuple[str, list[str], list[str] | None]]:
    """(run name, trt-convert flags, fallback flags) per device."""
    if device == "cuda":
        gpu = ["--generate-onnx", "--generate-trt", "--trt-backend", "tensorrt", "--device", "cuda"]
        return [("fp32", gpu, None), ("fp16", gpu + ["--use-fp16"], None),
                ("int8", gpu + ["--use-int8", "--calib-samples", str(calib_samples)], None)]
    return [("a", ["--generate-onnx", "--use-fp16", "--onnx-int8", "dynamic"],
             ["--generate-onnx", "--onnx-int8", "dynamic"]),
            ("b", ["--generate-onnx", "--use-int8", "--calib-samples", str(calib_samples)],
             # still time the Q/DQ graph when it misses the INT8 budget; its measured error is in the table
             ["--generate-onnx", "--use-int8", "--calib-samples", str(calib_samples), *LOOSE])]


def convert_family(prepared, work: Path, device: str, calib_samples: int, reuse: bool,
                   lift_int8: bool = False) -> dict:
    """Runs the conversions; returns {'onnx': {label: path}, 'engines': {...}, 'accuracy': {...}, 'notes': [...]}."""
    from trt_converters.bench import artifacts_from_report

    found = {"onnx": {}, "engines": {}, "accuracy": {}, "notes": [], "convert_seconds": {}}
    folder = work / f"{prepared.family.name}_{prepared.size}" / device
    for name, flags, fallback in conversion_runs(device, calib_samples):
        out = folder / name
        report_path = out / _model_name(prepared) / "report.json"
        report = None
        if reuse and report_path.is_file():
            report = json.loads(report_path.read_text())
            found["notes"].append(f"{name}: reused {report_path}")
        else:
            attempts = [flags] + ([fallback] if fallback else [])
            if lift_int8 and fallback and "--min-cosine" in fallback:
                attempts = [fallback]
            for attempt in attempts:
                try:
                    print(f"[{prepared.family.name}/{prepared.size}] trt-convert {' '.join(attempt)}", flush=True)
                    report, seconds = convert(prepared, out, attempt, log_path=folder / f"{name}.log")
                    found["convert_seconds"][name] = round(seconds, 1)
                    if "--min-cosine" in attempt:
                        found.setdefault("loosened", []).append(report.get("precision", name))
                        (out / "loosened").write_text("converted with the accuracy budget lifted\n")
                    break
                except Exception as exc:
                    found["notes"].append(f"trt-convert {' '.join(attempt)} failed: {exc}")
                    print(f"  failed: {exc}", flush=True)
        if report is None:
            continue
        if reuse and report_path.is_file() and (out / "loosened").is_file():
            found.setdefault("loosened", []).append(report.get("precision", name))
        listed = artifacts_from_report(report_path)
        for label, path in listed["onnx"].items():
            found["onnx"].setdefault(label, path)
            stage = report["stages"].get(VERIFY_STAGES.get(label, ""), {})
            verify = stage.get("verify") if "verify" in stage else (stage if "outputs" in stage else None)
            if verify and label not in found["accuracy"]:
                outputs = verify["outputs"]
                found["accuracy"][label] = {"max_rel_error": max(o["max_rel_error"] for o in outputs),
                                            "min_cosine": min(o["cosine"] for o in outputs)}
        for label, path in listed["engines"].items():
            found["engines"].setdefault(label, path)
    return found


def _model_name(prepared) -> str:
    from common import artifact_dir

    return artifact_dir(prepared, Path(".")).name


def bench_family(prepared, found: dict, args) -> dict:
    from trt_converters.bench import BenchSettings, ModelArtifacts, bench_model
    from trt_converters.spec import parse_io_config

    io = parse_io_config(prepared.io)
    length = prepared.family.length or 0
    settings = BenchSettings(batch_sizes=tuple(args.batch_sizes), lengths=(length,) if length else (128,),
                             warmup=args.warmup, iterations=args.iterations, max_seconds=args.max_seconds)
    wanted = [label for label in ("fp32", "fp16", "int8", "ort-int8-dynamic") if label in found["onnx"]]
    artifacts = ModelArtifacts(io=io, model_script=prepared.script, class_name=prepared.class_name,
                               checkpoint=prepared.checkpoint, model_kwargs=prepared.kwargs,
                               onnx={label: found["onnx"][label] for label in wanted
                                     if args.device == "cpu" or label == "fp32"},
                               engines=found["engines"] if args.device == "cuda" else {})
    runtimes = ("torch", "ort", "trt") if args.device == "cuda" else ("torch", "ort")
    return bench_model(artifacts, settings, device=args.device, runtimes=runtimes,
                       torch_fp16=args.device == "cuda", torch_compile=args.device == "cuda" and not args.no_compile,
                       intra_op_threads=args.threads, show_progress=not args.no_progress)


def _precision_of(runtime: str) -> str:
    for label in ("ort-int8-dynamic", "fp32", "fp16", "int8"):
        if f" {label} " in f" {runtime} ":
            return label
    return "fp32"


def markdown(results: list[dict], args, started: str, loads: tuple[str, str]) -> str:
    device = args.device
    title = ("CPU: PyTorch vs ONNX Runtime" if device == "cpu" else "GPU: PyTorch vs TensorRT") + f", {args.size} sizes"
    lines = [f"## {title}", "",
             f"- Machine: {machine_line()}",
             f"- Run: {started} UTC; load average before {loads[0]}, after {loads[1]} (shared machine: other "
             "jobs were running; spreads are wide for that reason)",
             f"- Method: `benchmarks/cpu_models.py {' '.join(sys.argv[1:])}`; random weights (seed 0); synthetic "
             f"inputs; {args.warmup} warm-up runs per runtime, then up to {args.iterations} timed rounds per cell "
             f"(stopping after {args.max_seconds:.0f} s once 3 rounds are done); in each round every runtime runs "
             "once in turn on the same inputs, so load changes hit all alike. "
             + (f"PyTorch and ONNX Runtime intra-op threads: {args.threads}. " if args.threads else "")
             + "Latency is host latency (inputs and outputs in host memory"
             + (", i.e. with H2D/D2H transfers); GPU compute (CUDA events, without transfers) is given beside it."
                if device == "cuda" else "; no transfers on CPU).")
             + " `vs PyTorch` = PyTorch FP32 median / this median, same cell, same run (>1 is faster).",
             "- Accuracy: the error the `trt-convert` verification measured for that graph against PyTorch FP32 "
             "(max error relative to the largest reference magnitude / min cosine), over 3 shape sets.", ""]
    for result in results:
        if "error" in result:
            lines += [f"### {result['label']}", "", f"Not measured: {result['error']}", ""]
            continue
        lines += [f"### {result['label']} ({result['parameters'] / 1e6:.1f}M parameters)", ""]
        if result.get("run"):
            lines += [f"Timed {result['run']['started']} UTC, load average then {result['run']['load']}.", ""]
        header = ["runtime", "batch", "input shapes", "runs", "median ms", "p10-p90 ms", "min-max ms",
                  "samples/s", "vs PyTorch", "accuracy vs PyTorch"]
        if device == "cuda":
            header.insert(6, "GPU compute median ms")
        rows = []
        for row in result["bench"]["rows"]:
            shapes = "; ".join(f"{k} {'x'.join(map(str, v))}" for k, v in row["shapes"].items())
            if "median_ms" not in row:
                rows.append([row["runtime"], row["batch"], shapes, "-", "-", "-", "-", "-", "-",
                             "skipped: " + row.get("skipped", row.get("failed", ""))] + ([""] if device == "cuda" else []))
                continue
            label = _precision_of(row["runtime"])
            accuracy = result["accuracy"].get(label) if "onnxruntime" in row["runtime"] or "tensorrt" in row["runtime"] \
                else None
            cells = [row["runtime"], row["batch"], shapes, row["count"], fmt_ms(row["median_ms"]),
                     f"{fmt_ms(row['p10_ms'])}-{fmt_ms(row['p90_ms'])}", f"{fmt_ms(row['min_ms'])}-{fmt_ms(row['max_ms'])}",
                     f"{row['samples_per_s']:.1f}", f"{row['speedup_vs_baseline']:.2f}x",
                     f"{accuracy['max_rel_error']:.1e} / {accuracy['min_cosine']:.5f}" if accuracy else
                     ("reference" if row["runtime"].startswith("pytorch fp32") else "")]
            if device == "cuda":
                compute = row.get("gpu_compute")
                cells.insert(6, fmt_ms(compute["median_ms"]) if compute else "")
            rows.append(cells)
        lines += [markdown_table(header, rows), ""]
        slower = [r for r in result["bench"]["rows"] if r.get("speedup_vs_baseline", 2) < 1.0]
        if slower:
            lines.append("Slower than PyTorch FP32 here: " + ", ".join(
                f"{r['runtime']} at batch {r['batch']} ({r['speedup_vs_baseline']:.2f}x)" for r in slower) + ".")
        for note in result["notes"]:
            if "failed" in note:
                lines.append(f"- {note}")
        if result.get("loosened"):
            lines.append(f"- Timed although below the accuracy budget (converted again with the budget lifted; "
                         f"the error column is what trt-convert measured): {', '.join(result['loosened'])}.")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="roberta,e5,yolox,crnn", help=f"comma list of {', '.join(FAMILIES)}")
    parser.add_argument("--size", choices=["tiny", "base"], default="base")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batch-sizes", type=lambda s: [int(x) for x in s.split(",")], default=None,
                        help="default 1,8 (cpu) or 1,8,32 (cuda)")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=120.0)
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads for PyTorch and ONNX Runtime (1: see README, shared-machine noise)")
    parser.add_argument("--calib-samples", type=int, default=16)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK, help="checkpoints and converted graphs")
    parser.add_argument("--reuse", action="store_true", help="reuse conversions already in --work")
    parser.add_argument("--no-compile", action="store_true", help="cuda: skip torch.compile")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--output", default=None, help="results stem [cpu_models or gpu_models]")
    parser.add_argument("--lift-int8-budget", action="store_true",
                        help="convert INT8 Q/DQ with the accuracy budget lifted at once (its error is still reported)")
    parser.add_argument("--convert-only", action="store_true", help="run the conversions, time nothing")
    parser.add_argument("--merge", action="store_true",
                        help="replace only these families' entries in an existing results file")
    args = parser.parse_args(argv)
    if args.batch_sizes is None:
        args.batch_sizes = [1, 8, 32] if args.device == "cuda" else [1, 8]
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            print("error: --device cuda needs a CUDA GPU (torch.cuda.is_available() is False)", file=sys.stderr)
            return 2
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in FAMILIES]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; choose from {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    text = ""
    started, load_before = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load_average()
    stem = (args.output or ("cpu_models" if args.device == "cpu" else "gpu_models")) + \
        ("" if args.size == "base" else f"_{args.size}")
    previous = _previous_results(stem) if args.merge else []
    results = []
    for name in names:
        max_batch = max(args.batch_sizes)
        prepared = prepare(name, args.size, args.work, max_batch_size=max_batch)
        entry = {"family": name, "size": args.size, "label": prepared.label, "parameters": prepared.parameters}
        try:
            found = convert_family(prepared, args.work, args.device, args.calib_samples, args.reuse,
                                   args.lift_int8_budget)
            entry.update(accuracy=found["accuracy"], notes=found["notes"], convert_seconds=found["convert_seconds"],
                         loosened=sorted(set(found.get("loosened", []))),
                         graphs={k: str(v) for k, v in found["onnx"].items()})
            if not found["onnx"]:
                raise RuntimeError("no graph converted: " + " | ".join(found["notes"]))
            if args.convert_only:
                continue
            entry["bench"] = bench_family(prepared, found, args)
            entry["run"] = {"started": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "load": load_average()}
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}"
            print(f"[{name}] not measured: {entry['error']}", flush=True)
        results.append(entry)
        merged = _merge(previous, results)
        text = markdown(merged, args, started, (load_before, load_average()))
        write_results(stem, text, {"args": {k: str(v) for k, v in vars(args).items()}, "results": merged})
    print(text)
    return 0


def _previous_results(stem: str) -> list[dict]:
    from common import RESULTS

    path = RESULTS / f"{stem}.json"
    return json.loads(path.read_text()).get("results", []) if path.is_file() else []


def _merge(previous: list[dict], current: list[dict]) -> list[dict]:
    """Previous entries in their order, those re-run now replaced; new families appended."""
    fresh = {entry["family"]: entry for entry in current}
    merged = [fresh.pop(entry["family"], entry) for entry in previous]
    return merged + [entry for entry in current if entry["family"] in fresh]


if __name__ == "__main__":
    sys.exit(main())
