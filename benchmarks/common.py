"""Shared by the benchmark scripts: the model families and sizes, random-weight checkpoints, trt-convert runs,
machine facts and Markdown helpers. Every number a script writes comes from a run it did."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_WORK = Path(os.environ.get("TRTC_BENCH_WORK", "/tmp/trtc-bench-work"))

TINY_TEXT = {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 2, "intermediate_size": 128}


def _text_io(config_io: dict, max_length: int) -> dict:
    """The config's text IO with the profile capped at `max_length` (verification at 8 x 512 takes minutes here)."""
    io = json.loads(json.dumps(config_io))
    for tensor in io["inputs"]:  # the same profile on every text input
        if tensor["shape"] == [-1]:
            tensor.update(min_shape=[1], opt_shape=[max_length], max_shape=[max_length])
    return io


@dataclass(frozen=True)
class Family:
    """One model family: its config, kwargs per size, IO changes per size, and the benchmark shape."""

    name: str
    config: str
    kinds: str                       # "text" or "image"
    sizes: dict                      # size -> (label, model_kwargs overrides)
    length: int | None = None        # value for dynamic dims in the CPU table (text: 128)
    io_override: dict = field(default_factory=dict)  # size -> IO spec (None: the config's)
    extra_flags: tuple = ()

    def config_path(self) -> Path:
        return ROOT / "configs" / self.config


FAMILIES = {
    "roberta": Family("roberta", "roberta_emotion.yaml", "text",
                      {"tiny": ("RoBERTa 2x64 (tiny)", TINY_TEXT), "base": ("RoBERTa-base (125M)", {})},
                      length=128),
    "e5": Family("e5", "e5_small_v2.yaml", "text",
                 {"tiny": ("BERT 2x64 (tiny)", TINY_TEXT), "base": ("E5-small-v2 (33M)", {})}, length=128),
    "gector": Family("gector", "gector_roberta.yaml", "text",
                     {"tiny": ("GECToR RoBERTa 2x64 (tiny)", {**TINY_TEXT, "num_labels": 50}),
                      "base": ("GECToR RoBERTa-base (5001 tags)", {})}, length=128),
    "deberta": Family("deberta", "deberta_classifier.yaml", "text",
                      {"tiny": ("DeBERTa-v2 2x64 (tiny)", TINY_TEXT),
                       "base": ("DeBERTa-v3-base sized (184M)", {"hidden_size": 768, "num_hidden_layers": 12,
                                                                 "num_attention_heads": 12,
                                                                 "intermediate_size": 3072})}, length=128),
    "yolox": Family("yolox", "yolox_s.yaml", "image",
                    {"tiny": ("YOLOX-nano at 320", {"variant": "nano"}), "base": ("YOLOX-s at 640 (9.0M)", {})},
                    io_override={"tiny": {"inputs": [{"name": "images", "dtype": "float32", "shape": [3, 320, 320],
                                                      "value_range": [0, 255]}],
                                          "outputs": [{"name": "detections", "dtype": "float32",
                                                       "shape": [2100, 85]}]}}),
    "crnn": Family("crnn", "crnn_line.yaml", "image",
                   {"tiny": ("CRNN 32x(8..32ch), hidden 32 (tiny)", {"hidden_size": 32, "channels": [8, 16, 32, 32]}),
                    "base": ("CRNN 32x(32..128ch), hidden 128", {})}, length=640),
}


def text_io_for(family: Family, config_io: dict) -> dict:
    if family.kinds == "text":
        return _text_io(config_io, family.length or 128)
    if family.name == "crnn":  # line images up to 640 wide
        io = json.loads(json.dumps(config_io))
        io["inputs"][0]["max_shape"] = [1, 32, 640]
        return io
    return config_io


@dataclass
class Prepared:
    family: Family
    size: str
    label: str
    io: dict
    kwargs: dict
    script: Path
    class_name: str
    checkpoint: Path
    parameters: int
    max_batch_size: int


def prepare(family_name: str, size: str, work: Path, *, max_batch_size: int = 8) -> Prepared:
    """A random-weight checkpoint (seed 0) for the family at `size`, cached in `work`."""
    import torch

    from trt_converters.loading import construct_model, import_model_class
    from trt_converters.config_file import read_config_file

    family = FAMILIES[family_name]
    config = read_config_file(family.config_path())
    label, overrides = family.sizes[size]
    kwargs = {**config.get("model_kwargs", {}), **overrides}
    io = family.io_override.get(size) or text_io_for(family, config["model_io_config"])
    if isinstance(io, str):
        raise RuntimeError(f"{family.config}: model_io_config must be inline")
    folder = work / f"{family_name}_{size}"
    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = folder / "checkpoint.pt"
    model_class = import_model_class(Path(config["model_script_path"]), config["model_class_name"])
    torch.manual_seed(0)
    model = construct_model(model_class, kwargs)
    parameters = sum(p.numel() for p in model.parameters())
    if not checkpoint.is_file():
        torch.save(model.state_dict(), checkpoint)
    (folder / "io.json").write_text(json.dumps(io))
    return Prepared(family, size, label, io, kwargs, Path(config["model_script_path"]), config["model_class_name"],
                    checkpoint, parameters, max_batch_size)


def convert(prepared: Prepared, out_dir: Path, flags: list[str], *, log_path: Path | None = None,
            timeout: float = 3000.0) -> tuple[dict, float]:
    """Runs the real `trt-convert` CLI in a child process; returns (report.json, wall seconds)."""
    command = [sys.executable, "-m", "trt_converters.cli", "--config", str(prepared.family.config_path()),
               "--ckpt-path", str(prepared.checkpoint), "--model-kwargs", json.dumps(prepared.kwargs),
               "--model-io-config", json.dumps(prepared.io), "--max-batch-size", str(prepared.max_batch_size),
               "--output-dir", str(out_dir), "--overwrite", *prepared.family.extra_flags, *flags]
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    wall = time.perf_counter() - started
    if log_path is not None:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        log_path.write_text(" ".join(command) + "\n\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = [line for line in proc.stderr.splitlines() if line.startswith("error:")] or proc.stderr.splitlines()[-3:]
        raise RuntimeError(f"trt-convert failed ({proc.returncode}): {' '.join(tail)[:500]}")
    name = _model_name(prepared)
    report = json.loads((out_dir / name / "report.json").read_text())
    return report, wall


def _model_name(prepared: Prepared) -> str:
    from trt_converters.config_file import read_config_file

    return read_config_file(prepared.family.config_path())["model_name"]


def artifact_dir(prepared: Prepared, out_dir: Path) -> Path:
    return out_dir / _model_name(prepared)


def machine_line() -> str:
    from trt_converters.bench import machine_facts

    facts = machine_facts()
    versions = facts["versions"]
    keys = ("torch", "onnxruntime", "onnx", "tensorrt-rtx", "tensorrt", "nvidia-modelopt", "transformers")
    return (f"{facts['cpu']}, {facts['logical_cpus']} logical CPUs ({_lscpu_cores()}), "
            + (f"GPU {facts['gpu']}" if facts.get("gpu") else "no GPU")
            + "; " + ", ".join(f"{k} {versions[k]}" for k in keys if k in versions)
            + f"; python {versions['python']}")


def _lscpu_cores() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "lscpu unavailable"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    get = lambda key: fields.get(key, "?").strip()  # noqa: E731
    return f"lscpu: {get('Model name')}, {get('Socket(s)')} socket, {get('Core(s) per socket')} core(s)/socket, " \
           f"{get('Thread(s) per core')} thread(s)/core"


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(stem: str, markdown: str, payload: dict) -> tuple[Path, Path]:
    RESULTS.mkdir(parents=True, exist_ok=True)
    md, js = RESULTS / f"{stem}.md", RESULTS / f"{stem}.json"
    md.write_text(markdown.rstrip() + "\n")
    js.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return md, js


def fmt_ms(value: float) -> str:
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
