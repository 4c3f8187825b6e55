"""CPU runtime peers at equal inputs: what a user could run instead of our served model, each in its own process.

Model: the roberta family of benchmarks/common.py (`--size base`: RoBERTa-base shaped, random weights,
seed 0; `--size tiny` for a smoke run). One `trt-convert` run makes everything served or compared:
`--generate-onnx --onnx-int8 dynamic --generate-triton-config --instance-kind cpu --tune`, calibrated on
the benchmark corpus (benchmarks/data/sentences.tsv, 232 sentences, tokenized with the MiniLM tokenizer,
whose ids lie inside RoBERTa's vocabulary): the FP32 export, our ONNX Runtime INT8 graph, the OpenVINO IRs
(FP32; INT8 by NNCF) and --tune's winner over runtime x precision x instances x threads.

Contenders (batch B, L tokens, T threads; one child process per contender and round, rounds alternate the
order; each child warms up, then times `--iterations` calls and reports their median):
    pytorch_fp32      PyTorch eager FP32
    pytorch_bf16      PyTorch with torch.autocast("cpu", dtype=torch.bfloat16): one line for a user
    ort_fp32          ONNX Runtime on the FP32 export
    ort_int8          our --onnx-int8 dynamic graph (fused, per-target weights)
    ov_defaults       OpenVINO on the FP32 export with its defaults (BF16 where the CPU has AMX/AVX-512 BF16)
    ov_fp32           OpenVINO FP32 (INFERENCE_PRECISION_HINT f32)
    ov_int8           OpenVINO on the NNCF INT8 IR
    served            our served winner: --tune's runtime and precision, at T threads
Top-1 agreement with PyTorch FP32 on the corpus (padded to L) is computed in each contender's first round.

    .venv/bin/python benchmarks/cpu_e2e.py --peers --size base --batch 1 --length 128 --threads 2
    .venv/bin/python benchmarks/cpu_e2e.py --peers --size tiny --iterations 5 --rounds 1 --out /tmp/peers.md  # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCHMARKS))
sys.path.insert(0, str(BENCHMARKS.parent))

from common import DEFAULT_WORK, RESULTS, convert, load_average, machine_line, markdown_table, prepare  # noqa: E402

CONTENDERS = ("pytorch_fp32", "pytorch_bf16", "ort_fp32", "ort_int8", "ov_defaults", "ov_fp32", "ov_int8", "served")
LABELS = {"pytorch_fp32": "PyTorch FP32 eager", "pytorch_bf16": "PyTorch BF16 autocast",
          "ort_fp32": "ONNX Runtime FP32 (plain export)", "ort_int8": "ours: --onnx-int8 dynamic (ONNX Runtime)",
          "ov_defaults": "OpenVINO on the FP32 export, defaults", "ov_fp32": "OpenVINO FP32 (f32 hint)",
          "ov_int8": "OpenVINO INT8 (NNCF, ours)", "served": "ours: served winner of --tune"}
CORPUS = BENCHMARKS / "data" / "sentences.tsv"
PEERS = ("pytorch_bf16", "ort_fp32", "ov_defaults", "ov_fp32")  # what a user gets without this project's lowering


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "base"], default="base")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--length", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=50)
    parser.add_argument("--contenders", default=",".join(CONTENDERS))
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORK / "cpu_peers")
    parser.add_argument("--out", type=Path, default=RESULTS / "cpu_peers.md")
    parser.add_argument("--reuse", action="store_true", help="reuse the conversion in --workdir")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# -- parent: conversion, rounds, table ------------------------------------------------------------
def build(args) -> dict:
    """Converts once (or reuses) and returns the spec every child reads."""
    from trt_converters.text.minilm import minilm_checkpoint_dir

    work = args.workdir / args.size
    spec_path = work / "spec.json"
    if args.reuse and spec_path.is_file():
        return json.loads(spec_path.read_text())
    prepared = prepare("roberta", args.size, work)
    texts = [line.split("\t", 1)[1] for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    calibration = work / "calibration.txt"
    calibration.write_text("\n".join(texts) + "\n", encoding="utf-8")
    log(f"converting {prepared.label} ({prepared.parameters / 1e6:.0f}M parameters): export, ONNX Runtime INT8, "
        "OpenVINO IRs, --tune")
    report, seconds = convert(prepared, work / "out", [str(flag) for flag in (
        "--generate-onnx", "--onnx-int8", "dynamic", "--generate-triton-config", "--triton-repo", work / "repo",
        "--instance-kind", "cpu", "--tune", "--calib-data", calibration, "--tokenizer-path", minilm_checkpoint_dir(),
        "--pipeline-option", f"max_length={args.length}")], log_path=work / "convert.log")
    log(f"converted in {seconds:.0f} s; --tune winner {report['stages']['tune']['winner']}")
    folder = work / "out" / report["model_name"]
    spec = {"script": str(prepared.script), "class_name": prepared.class_name, "checkpoint": str(prepared.checkpoint),
            "kwargs": prepared.kwargs, "label": prepared.label, "parameters": prepared.parameters,
            "onnx_fp32": str(folder / "model.onnx"), "ort_int8": str(folder / "model.ort-int8-dynamic.onnx"),
            "ov_fp32": str(folder / "model.openvino.xml"), "ov_int8": str(folder / "model.openvino-int8.xml"),
            "winner": report["stages"]["tune"]["winner"], "tune_table": report["stages"]["tune"]["table"],
            "cpu_features": report["stages"]["tune"]["cpu_features"], "convert_seconds": round(seconds, 1),
            "openvino_accuracy": {p: v["summary"] for p, v in report["stages"]["openvino"]["precisions"].items()},
            "texts": texts, "vocab_size": prepared.kwargs.get("vocab_size", 50265)}
    spec_path.write_text(json.dumps(spec, indent=1))
    return spec


def run_child(args, name: str, spec_path: Path, agreement: bool) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--spec", str(spec_path),
               "--batch", str(args.batch), "--length", str(args.length), "--threads", str(args.threads),
               "--iterations", str(args.iterations)] + (["--agreement"] if agreement else [])
    proc = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{name} failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-3:]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        return child_main(args)
    args.workdir.mkdir(parents=True, exist_ok=True)
    spec = build(args)
    spec_path = args.workdir / args.size / "spec.json"
    names = [n for n in args.contenders.split(",") if n]
    loads = [load_average()]
    per_round: dict[str, list[float]] = {n: [] for n in names}
    top1: dict[str, list[int]] = {}
    for round_index in range(args.rounds):
        order = names[round_index % len(names):] + names[:round_index % len(names)]
        for name in order:
            result = run_child(args, name, spec_path, agreement=round_index == 0)
            per_round[name].append(result["median_ms"])
            if "top1" in result:
                top1[name] = result["top1"]
            log(f"round {round_index} {name:13s} {result['median_ms']:8.2f} ms (load {os.getloadavg()[0]:.1f})")
        loads.append(load_average())
    markdown, payload = render(args, spec, names, per_round, top1, loads)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(markdown)
    args.out.with_suffix(".json").write_text(json.dumps(payload, indent=2))
    print(markdown)
    return 0


def render(args, spec, names, per_round, top1, loads) -> tuple[str, dict]:
    medians = {n: statistics.median(v) for n, v in per_round.items()}
    reference = top1.get("pytorch_fp32")
    rows = []
    for name in names:
        label = LABELS[name] + (f" ({spec['winner']['runtime']} {spec['winner']['precision']})" if name == "served" else "")
        agree = "-"
        if reference and name in top1:
            same = sum(a == b for a, b in zip(reference, top1[name]))
            agree = f"{same}/{len(reference)}"
        base = medians.get("pytorch_fp32")
        rows.append([label, f"{medians[name]:.2f}", f"{min(per_round[name]):.2f}-{max(per_round[name]):.2f}",
                     f"{base / medians[name]:.2f}x" if base else "-", agree])
    features = ", ".join(k for k, v in spec["cpu_features"]["flags"].items() if v) or "none of AMX/VNNI/BF16/AVX2"
    out = [f"## CPU runtime peers: {spec['label']}, batch {args.batch}, {args.length} tokens, {args.threads} threads", "",
           f"Machine: {machine_line()}. CPU features: {features}. Load average before/after rounds: "
           + " | ".join(loads) + ".", "",
           f"Each contender ran in its own process, {args.rounds} round(s) in alternating order, {args.iterations} "
           "timed calls per round (median per round); the table gives the median of the rounds and their range. "
           f"Top-1 agreement with PyTorch FP32 on the {len(spec['texts'])}-sentence corpus padded to {args.length}.", "",
           markdown_table(["contender", "ms (median)", "range over rounds", "vs PyTorch FP32", "top-1 vs PyTorch"], rows)]
    if "served" in medians:
        peer = min((medians[n] for n in PEERS if n in medians), default=None)
        out += ["", f"Served winner (--tune): {spec['winner']}."]
        if peer:
            out.append(f"- vs the best peer measured here ({', '.join(n for n in PEERS if n in medians)}): "
                       f"{peer / medians['served']:.2f}x (goal 1.3x)")
        if "pytorch_fp32" in medians:
            out.append(f"- vs PyTorch FP32 eager: {medians['pytorch_fp32'] / medians['served']:.2f}x (goal 5x)")
    payload = {"args": {k: str(v) for k, v in vars(args).items()}, "per_round_ms": per_round, "top1": top1,
               "loads": loads, "winner": spec["winner"], "tune_table": spec["tune_table"],
               "cpu_features": spec["cpu_features"], "openvino_accuracy": spec["openvino_accuracy"],
               "convert_seconds": spec["convert_seconds"]}
    return "\n".join(out) + "\n", payload


# -- child: one contender ----------------------------------------------------------------------------
def runner(name: str, spec: dict, threads: int):
    """A callable inputs -> logits for the contender."""
    import numpy as np

    if name == "served":
        winner = spec["winner"]
        if winner["runtime"] == "onnxruntime":
            name = "ort_int8" if winner["precision"].startswith("int8") else "ort_fp32"
        else:
            from trt_converters.openvino_cpu.runtime import OpenVINOSession

            xml = spec["ov_int8"] if winner["precision"] == "int8" else spec["ov_fp32"]
            session = OpenVINOSession(Path(xml), winner["precision"], threads=threads)
            return lambda feeds: session.run(None, feeds)[0]
    if name.startswith("pytorch"):
        import torch

        from trt_converters.loading import load_model

        torch.set_num_threads(threads)
        model, _ = load_model(Path(spec["script"]), spec["class_name"], Path(spec["checkpoint"]),
                              model_kwargs=spec["kwargs"], input_names=["input_ids", "attention_mask"])

        def run(feeds):
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "pytorch_bf16"):
                out = model(torch.from_numpy(feeds["input_ids"]), torch.from_numpy(feeds["attention_mask"]))
            return out.float().numpy()
        return run
    if name.startswith("ort"):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        session = ort.InferenceSession(spec[name if name == "ort_int8" else "onnx_fp32"], options,
                                       providers=["CPUExecutionProvider"])
        return lambda feeds: session.run(None, feeds)[0]
    import openvino as ov

    core = ov.Core()
    properties = {"INFERENCE_NUM_THREADS": threads}
    if name == "ov_defaults":
        compiled = core.compile_model(spec["onnx_fp32"], "CPU", properties)
    else:
        from trt_converters.openvino_cpu.runtime import compile_ir

        compiled = compile_ir(Path(spec[name]), "fp32" if name == "ov_fp32" else "int8", threads=threads)
    request = compiled.create_infer_request()
    return lambda feeds: np.array(request.infer(feeds)[compiled.outputs[0]])


def child_main(args) -> int:
    import numpy as np

    spec = json.loads(args.spec.read_text())
    run = runner(args.child, spec, args.threads)
    rng = np.random.default_rng(0)
    feeds = {"input_ids": rng.integers(3, spec["vocab_size"], size=(args.batch, args.length)).astype(np.int64),
             "attention_mask": np.ones((args.batch, args.length), dtype=np.int64)}
    for _ in range(5):
        run(feeds)
    times = []
    for _ in range(args.iterations):
        started = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - started) * 1000)
    result = {"median_ms": statistics.median(times)}
    if args.agreement:  # top-1 on the corpus, once per contender
        from transformers import AutoTokenizer

        from trt_converters.text.minilm import minilm_checkpoint_dir

        tokenizer = AutoTokenizer.from_pretrained(str(minilm_checkpoint_dir()))
        top1 = []
        for start in range(0, len(spec["texts"]), 8):
            enc = tokenizer(spec["texts"][start:start + 8], padding="max_length", truncation=True,
                            max_length=args.length, return_tensors="np")
            logits = run({"input_ids": enc["input_ids"].astype(np.int64),
                          "attention_mask": enc["attention_mask"].astype(np.int64)})
            top1 += [int(i) for i in np.argmax(logits, axis=-1)]
        result["top1"] = top1
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
