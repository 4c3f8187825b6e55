"""The real all-MiniLM-L6-v2 in INT8 (ModelOpt Q/DQ) against sentence-transformers on 32 varied sentences.

Calibrated on sentences that are not the evaluation sentences. Each configuration runs the real trt-convert
CLI on the same FP32 graph; the evaluation runs the lowered graph on ONNX Runtime with Q/DQ unfused (the
arithmetic TensorRT emulates), one sentence at a time, and reports the minimum cosine to sentence-transformers
and the fraction of MatMul/Gemm FLOPs in INT8 (from the report).

Usage: python benchmarks/minilm_int8_accuracy.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (DEFAULT_WORK, RESULTS, ROOT, load_average, machine_line,  # noqa: E402
                               markdown_table, write_results)

CORPUS = Path(__file__).resolve().parent / "data" / "sentences.tsv"
LONG = ("The committee reviewed the proposal in detail, weighing the costs of the new infrastructure against the "
        "expected gains in throughput, reliability and maintainability, and after several rounds of discussion "
        "with the engineering teams, the finance department and external auditors, it concluded that a phased "
        "rollout across three regions would limit the operational risk while still delivering most of the benefits "
        "within the first fiscal year. ")
EVALUATION = [
    "Hi.", "Thanks!", "Where is the station?", "ok", "A man is playing a guitar on stage.",
    "The new phone has a larger battery and a brighter screen.", "Can you recommend a good book about history?",
    "Heavy rain caused flooding in several coastal towns overnight.", "The recipe calls for two cups of flour.",
    "Researchers found a new species of frog in the rainforest.",
    "My flight was delayed for three hours because of fog.", "Is it possible to cancel my subscription online?",
    "The orchestra performed Beethoven's ninth symphony to a full house.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "Please find attached the invoice for last month's consulting services.",
    "Children were building sandcastles while their parents read on the beach.",
    LONG, LONG * 2, LONG * 4,  # ~80, ~160 and > 256 tokens (truncated at 256)
    "Der Hund schläft friedlich neben dem warmen Ofen.", "Le marché est ouvert tous les samedis matin.",
    "¿Dónde puedo comprar billetes para el concierto?", "Il treno per Milano parte alle otto.",
    "Это очень интересная книга о космосе.", "今日はとても良い天気ですね。", "我喜欢在周末去公园散步。",
    "الطقس جميل اليوم في المدينة.", "O time venceu o campeonato depois de muitos anos.",
    "error: connection refused at 127.0.0.1:8000 (errno 111)", "SELECT name, price FROM products WHERE price > 10;",
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10", "Why?! Why would anyone do THAT???",
]
# The first 8 lines are what the conversion verifies (and the INT8 search measures) on: a mix of lengths and scripts.
CALIBRATION = [
    "Yes", "The quick brown fox jumps over the lazy dog.", "Das Wetter ist heute kalt und windig.",
    ("Over the past decade, the city has invested heavily in public transport, adding new tram lines, extending "
     "the metro to the suburbs, and replacing old diesel buses with electric ones."),
    "Good morning everyone!", "这个城市的夜景非常漂亮。", "Embeddings map sentences to vectors.",
    "warning: disk usage above 90% on /var",
    "A cat sits on the mat.", "Inference servers batch requests dynamically.",
    "Quantization trades precision for speed.", "She sells sea shells by the sea shore.",
    "The stock market rose sharply on Monday.", "Please restart the server after the update.",
    "What time does the museum open on Sundays?", "He forgot his umbrella at the office again.",
    "The telescope captured images of a distant galaxy.", "Our team shipped the release two days early.",
    "Fresh bread smells wonderful in the morning.", "The patient recovered quickly after surgery.",
    "Traffic on the bridge was slow during rush hour.", "Learning a new language takes patience and practice.",
    "No way.", "See you tomorrow.", "Nous avons visité le musée hier après-midi.",
    "El perro corre por el parque todas las mañanas.", "Mi piace molto la cucina italiana.",
    "Я люблю читать книги вечером.", "彼は毎朝コーヒーを飲みます。",
    "مرحبا بكم في المؤتمر السنوي.", "def add(a, b): return a + b",
    ("Over the past decade, the city has invested heavily in public transport, adding new tram lines, "
     "extending the metro to the suburbs, and replacing old diesel buses with electric ones, which has reduced "
     "air pollution and shortened commutes for hundreds of thousands of residents every day."),
    ("The manual explains how to assemble the shelf: attach the side panels to the base with the long screws, "
     "insert the wooden dowels into the pre-drilled holes, slide the shelves into place, and finally fix the "
     "back panel with the small nails included in the package, making sure everything is level."),
] * 2
CONFIGURATIONS = [
    ("defaults (max; outlier channels apart; no search as the budget is met)", []),
    ("max, outlier channels not apart", ["--no-int8-outlier-channels", "--no-int8-search"]),
    ("auto calibration", ["--calib-method", "auto", "--no-int8-search"]),
    ("max + search for cosine 0.995", ["--int8-search", "--min-cosine", "0.995"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK / "minilm_int8")
    parser.add_argument("--only", type=int, nargs="*", help="indices of CONFIGURATIONS to run")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import numpy as np
    from sentence_transformers import SentenceTransformer
    from transformers import AutoTokenizer

    from trt_converters.onnx_runner import run_onnx_models
    from trt_converters.text.minilm import minilm_checkpoint_dir

    assert not set(EVALUATION) & set(CALIBRATION)
    folder = minilm_checkpoint_dir()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    (work / "calibration.txt").write_text("\n".join(CALIBRATION) + "\n")
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    feeds = []
    for sentence in EVALUATION:
        batch = tokenizer([sentence], truncation=True, max_length=256, return_tensors="np")
        feeds.append({"input_ids": batch["input_ids"].astype(np.int64),
                      "attention_mask": batch["attention_mask"].astype(np.int64)})
    lengths = [int(f["input_ids"].shape[1]) for f in feeds]
    encoder = SentenceTransformer(str(folder), device="cpu")
    expected = encoder.encode(EVALUATION, convert_to_numpy=True)
    # A second, larger held-out set: the 232 sentences of benchmarks/data/sentences.tsv (short English text).
    held_out = [line.split("\t", 1)[1] for line in CORPUS.read_text(encoding="utf-8").splitlines() if "\t" in line]
    assert not set(held_out) & set(CALIBRATION)
    held_out_feeds = []
    for sentence in held_out:
        batch = tokenizer([sentence], truncation=True, max_length=256, return_tensors="np")
        held_out_feeds.append({"input_ids": batch["input_ids"].astype(np.int64),
                               "attention_mask": batch["attention_mask"].astype(np.int64)})
    expected_held_out = encoder.encode(held_out, convert_to_numpy=True)
    base = [sys.executable, "-m", "trt_converters.cli", "--config", str(ROOT / "configs" / "minilm_l6.yaml"),
            "--ckpt-path", str(folder / "model.safetensors"), "--output-dir", str(work / "out"), "--overwrite"]
    fp32 = work / "out" / "minilm_l6" / "model.onnx"
    load_before = load_average()
    rows, payload = [], {"machine": machine_line(), "sentences": len(EVALUATION), "token_lengths": lengths,
                         "calibration_sentences": len(CALIBRATION), "configurations": []}
    selected = [c for i, c in enumerate(CONFIGURATIONS) if args.only is None or i in args.only]
    for label, flags in selected:
        started = time.perf_counter()
        # --skip-verify: a graph that misses the --min-cosine the search aimed at is still measured here.
        subprocess.run(base + ["--generate-onnx", "--skip-verify", "--use-int8", "--calib-data",
                               str(work / "calibration.txt"), "--tokenizer-path", str(folder), "--report-path",
                               str(work / "report.json"), *flags], check=True)
        seconds = time.perf_counter() - started
        report = json.loads((work / "report.json").read_text())
        int8 = report["stages"]["lower_int8"].get("int8", {})
        graphs = [fp32, work / "out" / "minilm_l6" / "model.int8.onnx"]
        results = run_onnx_models(graphs, feeds + held_out_feeds, qdq_fusion=False)
        cosines, held_out_cosines = {}, {}
        for name, outputs in zip(("fp32", "int8"), results):
            got = np.concatenate([o["embeddings"] for o in outputs])
            reference = np.concatenate([expected, expected_held_out])
            every = (np.sum(got * reference, axis=1)
                     / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))).tolist()
            cosines[name], held_out_cosines[name] = every[:len(feeds)], every[len(feeds):]
        worst = int(np.argmin(cosines["int8"]))
        entry = {"label": label, "flags": flags, "seconds": round(seconds, 1),
                 "min_cosine_int8": round(min(cosines["int8"]), 5), "mean_cosine_int8": round(float(np.mean(cosines["int8"])), 5),
                 "min_cosine_fp32": round(min(cosines["fp32"]), 6), "worst_sentence": EVALUATION[worst][:60],
                 "sentences_below_0.99": int(sum(c < 0.99 for c in cosines["int8"])),
                 "held_out_sentences": len(held_out),
                 "held_out_min_cosine_int8": round(min(held_out_cosines["int8"]), 5),
                 "held_out_below_0.99": int(sum(c < 0.99 for c in held_out_cosines["int8"])),
                 "calib_method": int8.get("calib_method"), "calib_method_errors": int8.get("calib_method_errors"),
                 "excluded_nodes": int8.get("excluded_nodes", []), "int8_flop_fraction": int8.get("int8_flop_fraction")}
        payload["configurations"].append(entry)
        rows.append([label, entry["calib_method"], len(entry["excluded_nodes"]),
                     f"{entry['int8_flop_fraction']:.0%}" if entry["int8_flop_fraction"] is not None else "-",
                     f"{entry['min_cosine_int8']:.4f}", f"{entry['mean_cosine_int8']:.4f}",
                     entry["sentences_below_0.99"], _held_out_cell(entry), f"{entry['min_cosine_fp32']:.5f}",
                     f"{seconds:.0f}"])
        print(json.dumps(entry), flush=True)
    payload["load_average"] = {"before": load_before, "after": load_average()}
    previous = RESULTS / "minilm_int8_accuracy.json"
    if args.only is not None and previous.is_file():  # keep the other configurations' last results
        kept = [c for c in json.loads(previous.read_text())["configurations"]
                if c["label"] not in {e["label"] for e in payload["configurations"]}]
        payload["configurations"] = kept + payload["configurations"]
        rows = [[c["label"], c["calib_method"], len(c["excluded_nodes"]),
                 f"{c['int8_flop_fraction']:.0%}" if c.get("int8_flop_fraction") is not None else "-",
                 f"{c['min_cosine_int8']:.4f}", f"{c['mean_cosine_int8']:.4f}", c["sentences_below_0.99"],
                 _held_out_cell(c), f"{c['min_cosine_fp32']:.5f}", f"{c['seconds']:.0f}"] for c in payload["configurations"]]
    markdown = "\n".join([
        "## all-MiniLM-L6-v2 INT8 vs sentence-transformers", "",
        f"- Machine: {payload['machine']}", f"- Load average before {load_before}, after {load_average()}.",
        f"- {len(EVALUATION)} evaluation sentences (token lengths {min(lengths)}-{max(lengths)}, one truncated at "
        f"256; 9 non-English or code), {len(CALIBRATION)} calibration lines (different sentences), padded to 128.",
        "- INT8 graphs run on ONNX Runtime CPU with Q/DQ unfused (TensorRT's arithmetic), one sentence at a time.", "",
        markdown_table(["configuration", "calibration", "nodes kept out of INT8", "INT8 FLOPs", "min cosine",
                        "mean cosine", "sentences < 0.99", "232 held-out: min cosine (< 0.99)", "FP32 min cosine",
                        "CLI s"], rows), ""])
    write_results("minilm_int8_accuracy", markdown, payload)


def _held_out_cell(entry: dict) -> str:
    if "held_out_min_cosine_int8" not in entry:
        return "-"
    return f"{entry['held_out_min_cosine_int8']:.4f} ({entry['held_out_below_0.99']})"


if __name__ == "__main__":
    main()
