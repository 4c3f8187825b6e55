"""Closed-loop load on a served model: N clients each send a request, wait for the answer, send the next.

perf_analyzer's vocabulary: per concurrency level, throughput (inferences/s completed in the measurement
window) and client-side latency percentiles (p50/p90/p99, request sent to answer received). Each level has
a warm-up, then a fixed measurement window; every wait is bounded by the request timeout. Requests come from
perf_analyzer-style input data (`{"data": [{input: value, ...}, ...]}`, used round-robin), from a file or
derived from the model's config.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from trt_converters.errors import StageError, UserError


class LoadError(StageError):
    """The server could not be reached or answered no request (exit status 1)."""


@dataclass(frozen=True)
class LoadSettings:
    concurrency: tuple[int, ...] = (1, 2, 4, 8)
    measurement_seconds: float = 5.0
    warmup_seconds: float = 1.0
    batch_size: int = 1
    timeout: float = 60.0


# -- requests ----------------------------------------------------------------------------------------------------

def read_input_data(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"--input-data {path} does not exist") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"--input-data {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    return data


def request_arrays(input_data: dict, config, batch_size: int) -> list[dict]:
    """perf_analyzer input data -> one {input name: numpy array with the batch dim} per request."""
    import numpy as np

    from trt_converters.triton.examples import model_inputs

    entries = input_data.get("data") if isinstance(input_data, dict) else None
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise UserError('input data must be {"data": [{"<input>": <value>, ...}, ...]} (perf_analyzer\'s format, '
                        "one object per request; sequence streams are not supported)")
    specs = {s.name: s for s in model_inputs(config)}
    listing = ", ".join(f"{s.name} ({s.datatype} {list(s.dims)})" for s in specs.values())
    required = {s.name for s in specs.values() if not s.optional}
    batched = config.max_batch_size > 0
    if batched and batch_size > config.max_batch_size:
        raise UserError(f"--batch-size {batch_size} is above {config.name}'s max_batch_size {config.max_batch_size}")
    if not batched and batch_size != 1:
        raise UserError(f"{config.name} does not batch (max_batch_size 0): use --batch-size 1")
    requests = []
    for number, entry in enumerate(entries):
        unknown = [name for name in entry if name not in specs]
        if unknown:
            raise UserError(f"input data names {unknown[0]!r}, which {config.name} does not take; its inputs: {listing}")
        missing = sorted(required - set(entry))
        if missing:
            raise UserError(f"input data entry {number} lacks {missing[0]!r}, which {config.name} needs")
        arrays = {}
        for name, value in entry.items():
            array = _array(specs[name], value, name)
            arrays[name] = np.stack([array] * batch_size) if batched else array
        requests.append(arrays)
    return requests


def _array(spec, value, name: str):
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    shape = None
    if isinstance(value, dict) and "b64" in value:
        content = [base64.b64decode(value["b64"])]
        shape = value.get("shape")
    elif isinstance(value, dict) and "content" in value:
        content, shape = value["content"], value.get("shape")
    elif isinstance(value, list):
        content = value
    else:
        raise UserError(f"input data for {name!r} must be a list, {{\"content\": [...], \"shape\": [...]}} or "
                        "{\"b64\": \"...\"}")
    if spec.datatype == "BYTES":
        flat = np.array([c if isinstance(c, bytes) else str(c).encode("utf-8") for c in _flatten(content)],
                        dtype=np.object_)
    else:
        flat = np.array(_flatten(content), dtype=triton_to_np_dtype(spec.datatype))
    if shape is None:
        shape = list(spec.dims)
        if any(d < 0 for d in shape):
            known = int(np.prod([d for d in shape if d >= 0])) if any(d >= 0 for d in shape) else 1
            if sum(d < 0 for d in shape) > 1 or flat.size % max(known, 1):
                raise UserError(f"input data for {name!r}: {spec.name} has dims {list(spec.dims)}; give its \"shape\"")
            shape = [flat.size // max(known, 1) if d < 0 else d for d in shape]
    try:
        return flat.reshape(shape)
    except ValueError:
        raise UserError(f"input data for {name!r}: {flat.size} values do not fill shape {shape}") from None


def _flatten(content):
    if isinstance(content, list):
        return [v for item in content for v in _flatten(item)]
    return [content]


# -- the load ----------------------------------------------------------------------------------------------------

def _infer_inputs(arrays: dict):
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    inputs = []
    for name, array in arrays.items():
        datatype = "BYTES" if array.dtype == object else np_to_triton_dtype(array.dtype)
        tensor = httpclient.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs


def run_level(address: str | list[str], model: str, requests: list[dict], concurrency: int,
              settings: LoadSettings) -> dict:
    """One concurrency level: `concurrency` clients in a closed loop; stats of the measurement window. With several
    addresses (replicas), client i sends to replica i mod R, and the row has a `replicas` row per replica."""
    import tritonclient.http as httpclient

    addresses = [address] if isinstance(address, str) else list(address)

    start = time.monotonic() + 0.2
    window_start = start + settings.warmup_seconds
    window_end = window_start + settings.measurement_seconds
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[list[str]] = [[] for _ in range(concurrency)]

    def worker(index: int) -> None:
        client = httpclient.InferenceServerClient(addresses[index % len(addresses)], connection_timeout=settings.timeout,
                                                  network_timeout=settings.timeout)
        try:
            position = index
            while time.monotonic() < start:
                time.sleep(0.01)
            while True:
                sent = time.monotonic()
                if sent >= window_end:
                    return
                inputs = _infer_inputs(requests[position % len(requests)])
                position += concurrency
                try:
                    client.infer(model, inputs)
                except Exception as exc:
                    if window_start <= time.monotonic() <= window_end:
                        errors[index].append(_message(exc))
                    if len(errors[index]) > 100:
                        return
                    continue
                done = time.monotonic()
                if window_start <= done <= window_end:  # perf_analyzer counts what completes in the window
                    latencies[index].append((done - sent) * 1000.0)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(0.0, window_end - time.monotonic()) + settings.timeout + 5)
    row = {"concurrency": concurrency, **_window_stats(latencies, errors, settings)}
    if len(addresses) > 1:
        row["replicas"] = [{"replica": replica, **_window_stats(latencies[k::len(addresses)], errors[k::len(addresses)],
                                                                settings)}
                           for k, replica in enumerate(addresses)]
    return row


def _window_stats(latencies: list[list[float]], errors: list[list[str]], settings: LoadSettings) -> dict:
    samples = sorted(v for values in latencies for v in values)
    failures = [e for values in errors for e in values]
    row = {"requests": len(samples), "errors": len(failures), "window_s": settings.measurement_seconds,
           "throughput_infer_per_s": len(samples) * settings.batch_size / settings.measurement_seconds}
    if failures:
        row["first_error"] = failures[0]
    if samples:
        from trt_converters.bench import percentile

        row.update({"avg_ms": sum(samples) / len(samples), "p50_ms": percentile(samples, 50),
                    "p90_ms": percentile(samples, 90), "p95_ms": percentile(samples, 95),
                    "p99_ms": percentile(samples, 99), "max_ms": samples[-1]})
    return row


def _message(exc: BaseException) -> str:
    from tritonclient.utils import InferenceServerException

    text = exc.message() if isinstance(exc, InferenceServerException) else str(exc)
    first = (str(text).strip().splitlines() or [type(exc).__name__])[0]
    return first[:300]


def run_load(url: str, model: str, settings: LoadSettings, *, input_data: Path | None = None,
             progress=None) -> dict:
    """Every concurrency level in turn; returns {'model', 'url', 'settings', 'input_data', 'rows'}. `url` may list
    replicas of one repository, comma-separated: the clients are spread over them (see run_level)."""
    from trt_converters.infer_cli import connect, host_port, ready_model
    from trt_converters.triton.config import parse_config_json
    from trt_converters.triton.examples import perf_input_data

    wait = min(10.0, settings.timeout)
    urls = [part.strip() for part in url.split(",") if part.strip()]
    if not urls or len(set(map(host_port, urls))) < len(urls):
        raise UserError(f"--triton {url!r}: give one URL, or the URLs of distinct replicas separated by commas")
    configs = []
    for replica in urls:  # every replica must serve the model, with one config
        client = connect(replica, wait=wait, timeout=settings.timeout)
        try:
            ready_model(client, model, wait=wait)
            configs.append(parse_config_json(client.get_model_config(model)))
        finally:
            client.close()
    if any(c != configs[0] for c in configs[1:]):
        raise UserError(f"the replicas serve different configs of {model}: load one model at a time")
    config = configs[0]
    data = read_input_data(input_data) if input_data else perf_input_data(config)
    requests = request_arrays(data, config, settings.batch_size)
    address = [host_port(u) for u in urls] if len(urls) > 1 else host_port(urls[0])
    rows = []
    for concurrency in settings.concurrency:
        if progress:
            progress(concurrency)
        row = run_level(address, model, requests, concurrency, settings)
        rows.append(row)
        if row["requests"] == 0:
            reason = row.get("first_error") or f"no answer within {settings.measurement_seconds:.0f} s"
            raise LoadError(f"{model} answered no request at concurrency {concurrency}: {reason}")
    return {"model": model, "url": url, "settings": asdict(settings),
            "input_data": str(input_data) if input_data else "derived from the model config", "rows": rows}


# -- output ------------------------------------------------------------------------------------------------------

def render_load_table(rows: list[dict]) -> str:
    header = ("concurrency", "requests", "errors", "infer/s", "p50 ms", "p90 ms", "p99 ms", "avg ms")
    lines = [header]
    for row in rows:
        lines.append((str(row["concurrency"]), str(row["requests"]), str(row["errors"]),
                      f"{row['throughput_infer_per_s']:.1f}", *(f"{row[k]:.2f}" if k in row else "-"
                                                                 for k in ("p50_ms", "p90_ms", "p99_ms", "avg_ms"))))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = "\n".join("  ".join(c.rjust(w) for c, w in zip(line, widths)) for line in lines)
    errors = [f"concurrency {r['concurrency']}: {r['errors']} failed requests, first: {r['first_error']}"
              for r in rows if r.get("errors")]
    per_replica = [f"  {r['concurrency']:>3} -> {p['replica']}: {p['requests']} requests, {p['errors']} errors, "
                   f"{p['throughput_infer_per_s']:.1f} infer/s, p50 {p.get('p50_ms', float('nan')):.2f} ms, "
                   f"p99 {p.get('p99_ms', float('nan')):.2f} ms" for r in rows for p in r.get("replicas", [])]
    if per_replica:
        text += "\nper replica (concurrency -> replica):\n" + "\n".join(per_replica)
    return text + ("\n" + "\n".join(errors) if errors else "")


def plot_load(rows: list[dict], path: Path, title: str) -> Path:
    """Throughput against p99 latency, one labelled point per concurrency level (PNG)."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--plot needs matplotlib: pip install 'trt-converters[plot]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from trt_converters.atomic import atomic_write_bytes

    points = [(r["p99_ms"], r["throughput_infer_per_s"], r["concurrency"]) for r in rows if "p99_ms" in r]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot([p[0] for p in points], [p[1] for p in points], marker="o")
    for latency, throughput, concurrency in points:
        axes.annotate(f"c={concurrency}", (latency, throughput), textcoords="offset points", xytext=(5, 5))
    axes.set_xlabel("p99 latency (ms)")
    axes.set_ylabel("throughput (infer/s)")
    axes.set_title(title)
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
