"""`trt-infer`: send one request to a served model and print the answer readably.

Texts go to the model's text input (BYTES), images (--image) to its encoded-image input; the input is found
from the model's metadata unless --input names it. Exit status: 0 answered, 1 the server could not be reached
or refused the request (model not ready, server error), 2 a usage error (unknown model, wrong input name).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from trt_converters.cli_errors import errors_reported
from trt_converters.errors import StageError, UserError

EPILOG = """\b
Examples:
  trt-infer --model minilm_l6_e5 "a sentence" "another"
  trt-infer --url http://127.0.0.1:8000 --model yolox_s_yolox --image street.jpg
  trt-infer --model minilm_l6_e5 --json "a sentence" > answer.json
"""

PREVIEW = 8  # values shown per row of a numeric output


class InferError(StageError):
    """The server is unreachable or did not answer the request (exit status 1)."""


def host_port(url: str) -> str:
    """tritonclient wants host:port; users paste http://host:port."""
    text = url.strip().rstrip("/")
    for scheme in ("http://", "https://"):
        if text.startswith(scheme):
            text = text[len(scheme):]
    if not text or "/" in text:
        raise UserError(f"--url {url!r} must be http://HOST:PORT (Triton's HTTP endpoint)")
    return text


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:500]


def connect(url: str, *, wait: float, timeout: float):
    """A live client, retrying until `wait` seconds have passed; InferError when the server never answers."""
    import tritonclient.http as httpclient

    address = host_port(url)
    deadline = time.monotonic() + wait
    delay, last = 0.2, ""
    while True:
        try:
            client = httpclient.InferenceServerClient(address, connection_timeout=timeout, network_timeout=timeout)
            if client.is_server_live():
                return client
            last = "the server is not live"
        except Exception as exc:  # refused, reset, DNS, timeout: all mean "not reachable yet"
            last = _first_line(exc)
        if time.monotonic() >= deadline:
            raise InferError(f"cannot reach Triton at {url} within {wait:.0f} s ({last}); is trt-serve running "
                             "there? (--url, --wait)")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def ready_model(client, model: str, *, wait: float) -> dict:
    """The model's metadata once it is ready; a clear error when it is unknown or failed to load."""
    deadline = time.monotonic() + wait
    while True:
        try:
            if client.is_model_ready(model):
                return client.get_model_metadata(model)
        except Exception as exc:
            raise InferError(f"the server stopped answering: {_first_line(exc)}") from None
        index = {entry["name"]: entry for entry in client.get_model_repository_index()}
        entry = index.get(model)
        if entry is None:
            names = ", ".join(sorted(index)) or "none"
            raise UserError(f"model {model!r} is not served there (models: {names})")
        if entry.get("state") not in ("LOADING", None) or time.monotonic() >= deadline:
            state = entry.get("state") or "not loaded"
            reason = entry.get("reason") or "see the server log"
            raise InferError(f"model {model!r} is not ready ({state}: {reason})")
        time.sleep(0.5)


def choose_input(metadata: dict, wanted: str | None, kind: str) -> dict:
    """The input texts (kind "text") or images ("image") go to."""
    inputs = metadata.get("inputs", [])
    listing = ", ".join(f"{i['name']} ({i['datatype']} {i['shape']})" for i in inputs)
    if wanted:
        found = next((i for i in inputs if i["name"] == wanted), None)
        if found is None:
            raise UserError(f"model {metadata['name']!r} has no input {wanted!r}; its inputs: {listing}")
        if found["datatype"] != "BYTES":
            raise UserError(f"input {wanted!r} of {metadata['name']!r} is {found['datatype']}, not text or encoded "
                            f"bytes; trt-infer sends BYTES (its inputs: {listing})")
        return found
    candidates = [i for i in inputs if i["datatype"] == "BYTES"]
    images = [i for i in candidates if "image" in i["name"].lower()]
    chosen = images if kind == "image" else [i for i in candidates if i not in images]
    if len(chosen) == 1 or (chosen and kind == "image"):
        return chosen[0]
    what = "encoded-image" if kind == "image" else "text"
    if not chosen:
        raise UserError(f"model {metadata['name']!r} has no {what} input (its inputs: {listing}); "
                        + ("call its pipeline model instead, or use curl with a v2 JSON body" if not candidates
                           else "name the input with --input"))
    raise UserError(f"model {metadata['name']!r} has several text inputs ({listing}); name one with --input")


def build_request(metadata: dict, config: dict, texts: tuple[str, ...], images: tuple[Path, ...], wanted: str | None):
    import numpy as np
    import tritonclient.http as httpclient

    if bool(texts) == bool(images):
        raise UserError("give texts or --image files (one of the two)")
    kind = "image" if images else "text"
    target = choose_input(metadata, wanted, kind)
    values = [Path(p).read_bytes() for p in images] if images else [t.encode("utf-8") for t in texts]
    batched = int(config.get("max_batch_size", 0)) > 0
    dims = [d for d in target["shape"][1 if batched else 0:]]
    if any(d not in (1, -1) for d in dims) or (not batched and len(values) > 1):
        raise UserError(f"input {target['name']!r} has shape {target['shape']}: trt-infer sends one value per row")
    shape = ([len(values)] if batched else []) + [1] * len(dims)
    array = np.array(values, dtype=np.object_).reshape(shape)
    tensor = httpclient.InferInput(target["name"], list(array.shape), "BYTES")
    tensor.set_data_from_numpy(array)
    others = [i["name"] for i in metadata.get("inputs", []) if i["name"] != target["name"]]
    required = [i.get("name") for i in config.get("input", []) if not i.get("optional") and i.get("name") in others]
    if required:
        raise UserError(f"model {metadata['name']!r} also needs {', '.join(required)}; trt-infer sends one input")
    outputs = [httpclient.InferRequestedOutput(o["name"], binary_data=False) for o in metadata.get("outputs", [])]
    return [tensor], outputs, len(values)


def render_answer(response: dict, labels: list[str]) -> str:
    """Each output: strings as text, numbers as shape plus a preview per row (and cosines for row vectors)."""
    import numpy as np

    lines = [f"model {response.get('model_name')} (version {response.get('model_version')})"]
    for output in response.get("outputs", []):
        shape = output.get("shape", [])
        data = output.get("data", [])
        lines.append(f"{output['name']}: {output['datatype']} {shape}")
        if output["datatype"] == "BYTES":
            rows = np.array(data, dtype=object).reshape(shape) if shape else np.array(data, dtype=object)
            for index, row in enumerate(rows.reshape(len(rows), -1) if rows.ndim else [rows]):
                label = labels[index] if index < len(labels) else str(index)
                lines.append(f"  [{label}] " + " | ".join(str(v) for v in row))
            continue
        values = np.array(data, dtype=np.float64).reshape(shape) if shape else np.array(data, dtype=np.float64)
        rows = values.reshape(values.shape[0], -1) if values.ndim >= 1 and values.shape[0] else values.reshape(1, -1)
        for index, row in enumerate(rows):
            label = labels[index] if index < len(labels) else str(index)
            preview = ", ".join(f"{v:.4g}" for v in row[:PREVIEW]) + (", ..." if row.size > PREVIEW else "")
            norm = f"  (L2 norm {np.linalg.norm(row):.4g})" if row.size > PREVIEW else ""
            lines.append(f"  [{label}] {preview}{norm}")
        if len(rows) > 1 and rows.shape[1] > PREVIEW and output["datatype"].startswith(("FP", "BF")):
            normed = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            cosine = normed @ normed.T
            lines.append("  cosine similarity between rows:")
            for i in range(len(rows)):
                lines.append("    " + " ".join(f"{cosine[i, j]:7.4f}" for j in range(len(rows))))
    return "\n".join(lines)


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110}, epilog=EPILOG)
@click.argument("texts", nargs=-1)
@click.option("--url", default="http://127.0.0.1:8000", show_default=True, help="Triton's HTTP endpoint.")
@click.option("--model", required=True, help="Model to call (a pipeline's entry model for raw text or images).")
@click.option("--image", "images", multiple=True, type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Encoded image file (JPEG, PNG, ...) for an image pipeline (repeatable: one row each).")
@click.option("--input", "input_name", help="Input to send to [the model's only text / image input].")
@click.option("--json", "raw_json", is_flag=True, help="Print the server's JSON response as it is.")
@click.option("--wait", default=10.0, show_default=True, type=click.FloatRange(0, 3600),
              help="Seconds to keep retrying while the server is unreachable or the model is loading.")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds one connection or request may take.")
@click.option("--verbose", is_flag=True, help="Show tracebacks.")
def main(texts, url, model, images, input_name, raw_json, wait, timeout, verbose):
    """Send one request (texts or --image files) to a model served by Triton and print the answer."""
    with errors_reported(verbose):
        client = connect(url, wait=wait, timeout=timeout)
        metadata = ready_model(client, model, wait=wait)
        config = client.get_model_config(model)
        inputs, outputs, rows = build_request(metadata, config, texts, images, input_name)
        from tritonclient.utils import InferenceServerException

        try:
            result = client.infer(model, inputs, outputs=outputs)
        except InferenceServerException as exc:
            raise InferError(f"{model} refused the request: {exc.message()}") from None
        except Exception as exc:
            raise InferError(f"the request to {model} failed: {_first_line(exc)}") from None
        response = result.get_response()
        if raw_json:
            click.echo(json.dumps(response))
            return
        labels = [_short(t) for t in texts] or [p.name for p in images]
        click.echo(render_answer(response, labels[:rows]))


if __name__ == "__main__":
    main()
