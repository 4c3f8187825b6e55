"""Conversion cost per model: export, lowering, engine build; first build vs a build with a timing cache.

For each family and size, with the real `trt-convert` CLI (random-weight checkpoints, seed 0):
1. the full pipeline per precision (`--generate-onnx --generate-trt [--use-fp16 | --use-int8]`): stage seconds
   from report.json (export, FP32 verification, lowering + its verification, build) and the CLI's wall time;
2. build only (`--generate-trt --onnx-path <graph>`), repeated: first with a new, empty `--timing-cache`,
   then again with the cache that build saved.
The builder is whatever `--trt-backend auto` finds: here TensorRT-RTX, which builds on a CPU without a GPU.

    python benchmarks/conversion_cost.py                         # tiny: all families; base: roberta, yolox
    python benchmarks/conversion_cost.py --tiny roberta --base "" --repeats 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (DEFAULT_WORK, FAMILIES, convert, load_average, machine_line,  # noqa: E402
                    markdown_table, prepare, write_results)

PRECISION_FLAGS = {"fp32": [], "fp16": ["--use-fp16"], "int8": ["--use-int8", "--calib-samples", "16"]}


def full_pipeline(prepared, work: Path, precision: str) -> dict:
    out = work / "cost" / f"{prepared.family.name}_{prepared.size}" / precision
    flags = ["--generate-onnx", "--generate-trt", *PRECISION_FLAGS[precision]]
    report, wall = convert(prepared, out, flags, log_path=out.with_suffix(".log"))
    stages = report["stages"]
    lower = stages.get(f"lower_{precision}", {})
    lower_verify = (lower.get("verify") or {}).get("seconds", 0.0)
    build = stages.get("build", {})
    return {"wall_s": wall, "export_s": stages["export"]["seconds"], "exporter": stages["export"]["exporter"],
            "verify_fp32_s": stages.get("verify_fp32", {}).get("seconds"),
            "lower_s": lower.get("seconds"), "lower_verify_s": lower_verify or None,
            "build_s": build.get("seconds"), "backend": f"{build.get('backend')} {build.get('backend_version')}",
            "engine_bytes": build.get("bytes"), "onnx_bytes": stages["export"].get("bytes"),
            "graph": str(Path(lower.get("path") or stages["export"]["path"])),
            "notes": build.get("notes", []) + lower.get("notes", [])}


def build_only(prepared, work: Path, precision: str, graph: Path, repeats: int) -> dict:
    """First build with a new timing cache, then a build that loads it; `repeats` pairs."""
    folder = work / "cost" / f"{prepared.family.name}_{prepared.size}" / f"{precision}_build"
    first, cached, loaded = [], [], []
    for index in range(repeats):
        cache = folder / f"timing_{index}.cache"
        cache.unlink(missing_ok=True)
        for label, bucket in (("first", first), ("cached", cached)):
            out = folder / f"{label}_{index}"
            flags = ["--generate-trt", "--onnx-path", str(graph), "--engine-path", str(out / "model.plan"),
                     "--timing-cache", str(cache)]
            report, _ = convert(prepared, out, flags, log_path=out.with_suffix(".log"))
            bucket.append(report["stages"]["build"]["seconds"])
            loaded.append(report["stages"]["build"]["timing_cache_loaded"])
    return {"first_build_s": first, "cached_build_s": cached, "cache_loaded": loaded,
            "cache_bytes": (folder / "timing_0.cache").stat().st_size if (folder / "timing_0.cache").exists() else None}


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:.1f}"
    return f"{median:.1f} ({min(values):.1f}-{max(values):.1f})"


def _s(value) -> str:
    return "-" if value is None else f"{value:.1f}"


def markdown(entries: list[dict], args, started: str, loads: tuple[str, str]) -> str:
    lines = ["## Conversion cost", "",
             f"- Machine: {machine_line()}",
             f"- Run: {started} UTC; load average before {loads[0]}, after {loads[1]} (shared machine).",
             f"- Method: `benchmarks/conversion_cost.py {' '.join(sys.argv[1:])}`: the real `trt-convert` CLI in a "
             "child process, random-weight checkpoints; stage seconds are the CLI's own (report.json), wall "
             "includes Python start-up and imports. INT8: ModelOpt Q/DQ with 16 synthetic calibration samples. "
             "Verification runs ONNX Runtime at 3 shape sets (profile min, middle, max; max batch "
             f"{args.max_batch_size}, text length up to 128).", "",
             "### Full pipeline (one run per precision)", ""]
    header = ["model", "precision", "export s (exporter)", "verify FP32 s", "lower s (+verify s)", "build s",
              "CLI wall s", "ONNX MiB", "engine MiB", "builder"]
    rows = []
    for entry in entries:
        for precision, run in entry["runs"].items():
            if "error" in run:
                rows.append([entry["label"], precision, "failed: " + run["error"][:200], "", "", "", "", "", "", ""])
                continue
            lower = "-" if run["lower_s"] is None else f"{run['lower_s']:.1f}" + (
                f" (+{run['lower_verify_s']:.1f})" if run["lower_verify_s"] else "")
            rows.append([entry["label"], precision, f"{run['export_s']:.1f} ({run['exporter']})",
                         _s(run["verify_fp32_s"]), lower, _s(run["build_s"]), f"{run['wall_s']:.0f}",
                         f"{run['onnx_bytes'] / 2**20:.1f}" if run.get("onnx_bytes") else "-",
                         f"{run['engine_bytes'] / 2**20:.1f}" if run.get("engine_bytes") else "-", run["backend"]])
    lines += [markdown_table(header, rows), "",
              f"### Engine build: first build vs with timing cache (build only, median (min-max) of {args.repeats})",
              ""]
    header = ["model", "graph", "first build s", "with timing cache s", "cache loaded", "cache bytes", "ratio"]
    rows = []
    for entry in entries:
        for precision, build in entry["builds"].items():
            if "error" in build:
                rows.append([entry["label"], precision, "failed: " + build["error"][:200], "", "", "", ""])
                continue
            first, cached = build["first_build_s"], build["cached_build_s"]
            ratio = statistics.median(first) / statistics.median(cached) if cached and statistics.median(cached) else 0
            rows.append([entry["label"], precision, _spread(first), _spread(cached),
                         "yes" if all(build["cache_loaded"][1::2]) else "no", build["cache_bytes"] or "-",
                         f"{ratio:.2f}x"])
    lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", default="roberta,e5,yolox,crnn", help="families at tiny size")
    parser.add_argument("--base", default="roberta,yolox", help="families at base size")
    parser.add_argument("--precisions", default="fp32,fp16,int8")
    parser.add_argument("--base-precisions", default="fp32,fp16", help="precisions for base sizes")
    parser.add_argument("--repeats", type=int, default=3, help="build-only pairs (tiny); base uses 1")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--output", default="conversion_cost")
    args = parser.parse_args(argv)
    plan = [(n.strip(), "tiny") for n in args.tiny.split(",") if n.strip()] + \
           [(n.strip(), "base") for n in args.base.split(",") if n.strip()]
    unknown = [n for n, _ in plan if n not in FAMILIES]
    if unknown:
        print(f"error: unknown model {unknown[0]!r}; choose from {', '.join(FAMILIES)}", file=sys.stderr)
        return 2
    started, load_before = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load_average()
    entries = []
    for name, size in plan:
        prepared = prepare(name, size, args.work, max_batch_size=args.max_batch_size)
        entry = {"family": name, "size": size, "label": prepared.label, "runs": {}, "builds": {}}
        precisions = (args.precisions if size == "tiny" else args.base_precisions).split(",")
        for precision in [p.strip() for p in precisions if p.strip()]:
            print(f"[{name}/{size}] {precision}: full pipeline", flush=True)
            try:
                run = full_pipeline(prepared, args.work, precision)
            except Exception as exc:
                entry["runs"][precision] = {"error": str(exc)}
                print(f"  failed: {exc}", flush=True)
                continue
            entry["runs"][precision] = run
            print(f"[{name}/{size}] {precision}: build only x{args.repeats if size == 'tiny' else 1}", flush=True)
            try:
                entry["builds"][precision] = build_only(prepared, args.work, precision, Path(run["graph"]),
                                                        args.repeats if size == "tiny" else 1)
            except Exception as exc:
                entry["builds"][precision] = {"error": str(exc)}
                print(f"  failed: {exc}", flush=True)
        entries.append(entry)
        text = markdown(entries, args, started, (load_before, load_average()))
        write_results(args.output, text, {"args": {k: str(v) for k, v in vars(args).items()}, "entries": entries})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
