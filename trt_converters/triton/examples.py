"""Example requests for served models, derived from their config.pbtxt.

One place for what a request to a model looks like: the inputs a client must send (the required ones; of
inputs that are all optional, such as a pipeline's `image` / `image_raw`, the first), what kind each is (text,
encoded image, plain tensor), a KServe v2 JSON body with real-looking values, a ready-to-paste `curl`, and
perf_analyzer-style input-data JSON (`{"data": [{input: value, ...}, ...]}`, shapes without the batch dim).
"""

from __future__ import annotations

import base64
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

# Plain sentences of the lengths users send (a few words to a long sentence): samples for text models.
SAMPLE_SENTENCES = (
    "The weather is lovely today.",
    "A man is eating food.",
    "How do I reset my password if I no longer have access to the email address on my account?",
    "Triton batches requests from many clients into one model execution.",
    "She sells sea shells by the sea shore.",
    "The quarterly report shows that revenue grew by twelve percent while costs stayed flat, mostly thanks "
    "to the new subscription plans introduced in the spring.",
    "Please restart the server after the update.",
    "Where is the nearest train station?",
)
TEXT_NAMES = ("text", "texts", "sentence", "sentences", "query", "prompt", "input_text", "text_input")
DEFAULT_DYNAMIC = 8  # a -1 dim in an example request without a profile to follow
DEFAULT_MAX_TOKENS = 512
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model")


@dataclass(frozen=True)
class InputSpec:
    """One model input as the config declares it: name, Triton data type (no TYPE_ prefix), dims, kind."""

    name: str
    datatype: str  # v2 name: BYTES, FP32, INT64, UINT8, ...
    dims: tuple[int, ...]
    optional: bool
    kind: str  # "text", "image" (encoded bytes), "tensor"


def _v2_datatype(config_type: str) -> str:
    name = config_type.removeprefix("TYPE_")
    return {"STRING": "BYTES"}.get(name, name)


def _kind(name: str, datatype: str) -> str:
    if datatype != "BYTES":
        return "tensor"
    return "image" if "image" in name.lower() else "text"


def model_inputs(config) -> list[InputSpec]:
    """Every input of a ModelConfig, in config order."""
    from trt_converters.triton.config import data_type_name

    specs = []
    for entry in config.input:
        datatype = _v2_datatype(data_type_name(entry.data_type))
        specs.append(InputSpec(entry.name, datatype, tuple(entry.dims), entry.optional, _kind(entry.name, datatype)))
    return specs


def request_inputs(config) -> list[InputSpec]:
    """The inputs one example request sends: the required ones, else the first optional one."""
    inputs = model_inputs(config)
    required = [i for i in inputs if not i.optional]
    return required or inputs[:1]


def read_model_config(model_dir: Path):
    from trt_converters.triton.config import read_config

    return read_config(Path(model_dir) / "config.pbtxt")


def repository_configs(repo: Path) -> dict:
    """model name -> ModelConfig for every `<repo>/<name>/config.pbtxt` that parses (others are left out)."""
    configs = {}
    for path in sorted(Path(repo).glob("*/config.pbtxt")):
        try:
            config = read_model_config(path.parent)
        except Exception:  # the server reports unreadable configs itself, with its own message
            continue
        configs[path.parent.name] = config
    return configs


def entry_points(configs: dict) -> list[str]:
    """Models a user calls: those no other model of the repository uses (as an ensemble step or by name in a
    BLS model's parameters). A repository of unrelated models has them all as entry points."""
    used = set()
    for config in configs.values():
        used.update(step.model_name for step in config.ensemble_scheduling.step)
        used.update(p.string_value for p in config.parameters.values() if p.string_value in configs
                    and p.string_value != config.name)
    return [name for name in configs if name not in used]


# -- values ----------------------------------------------------------------------------------------------------------

def _numpy_dtype(datatype: str):
    from tritonclient.utils import triton_to_np_dtype

    return triton_to_np_dtype(datatype)


def _concrete(dims, length: int) -> list[int]:
    return [length if d < 0 else d for d in dims]


def _tensor_value(spec: InputSpec, length: int = DEFAULT_DYNAMIC):
    """A valid tensor for one batch row: ones for integers and masks (a token id, a set mask bit: a float mask of
    0.5 is cast to 0 by the models that take one, which masks every token), 0.5 for other floats."""
    import numpy as np

    shape = _concrete(spec.dims, length)
    dtype = _numpy_dtype(spec.datatype)
    if dtype == bool:
        return np.ones(shape, dtype=bool)
    whole = np.issubdtype(dtype, np.integer) or "mask" in spec.name.lower()
    return np.full(shape, 1 if whole else 0.5, dtype=dtype)


def sample_image_png(size: tuple[int, int] = (96, 64)) -> bytes:
    """A small RGB PNG with a few shapes (a valid image for any image pipeline)."""
    import io

    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", (width, height), (235, 235, 235))
    draw = ImageDraw.Draw(image)
    draw.rectangle((8, 8, width // 2, height - 8), fill=(200, 40, 40))
    draw.ellipse((width // 2, 12, width - 8, height - 12), fill=(40, 90, 200))
    draw.text((12, height // 2 - 6), "Triton", fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# -- v2 JSON and curl ------------------------------------------------------------------------------------------------

def v2_json_body(config, texts: tuple[str, ...] = SAMPLE_SENTENCES[:2]) -> dict | None:
    """The KServe v2 JSON body of one request, or None when an input cannot travel as JSON (encoded images)."""
    batched = config.max_batch_size > 0
    rows = len(texts) if batched else 1
    inputs = []
    for spec in request_inputs(config):
        if spec.kind == "image":
            return None
        if spec.kind == "text":
            width = max(1, _count(spec.dims))
            values = [texts[r % len(texts)] for r in range(rows * width)]
        else:
            values = _tensor_value(spec).reshape(-1).tolist() * rows
        shape = _concrete(spec.dims, DEFAULT_DYNAMIC)
        if spec.kind == "text":
            shape = _concrete(spec.dims, 1)
        inputs.append({"name": spec.name, "shape": ([rows] if batched else []) + shape, "datatype": spec.datatype,
                       "data": values})
    return {"inputs": inputs}


def _count(dims) -> int:
    total = 1
    for d in _concrete(dims, 1):
        total *= d
    return total


def curl_command(http_url: str, model: str, config) -> str:
    """A ready-to-paste curl for one request to `model` (shell syntax: bash)."""
    base = http_url if "://" in http_url else f"http://{http_url}"
    endpoint = f"{base}/v2/models/{model}/infer"
    body = v2_json_body(config)
    if body is not None:
        return f"curl -s {endpoint} -d {shlex.quote(json.dumps(body))}"
    spec = next(s for s in request_inputs(config) if s.kind == "image")
    batch = [1] if config.max_batch_size > 0 else []
    shape = batch + _concrete(spec.dims, 1)
    # Encoded bytes go as a binary tensor (Triton's binary data extension): the JSON header, then the BYTES
    # element as a 4-byte little-endian length followed by the file.
    return (
        "IMG=photo.jpg; N=$(stat -c%s \"$IMG\"); "
        f"H='{{\"inputs\":[{{\"name\":\"{spec.name}\",\"shape\":{json.dumps(shape)},\"datatype\":\"BYTES\","
        "\"parameters\":{\"binary_data_size\":'$((N+4))'}}]}'; "
        "{ printf %s \"$H\"; printf \"$(printf '\\\\x%02x' $((N&255)) $((N>>8&255)) $((N>>16&255)) $((N>>24&255)))\"; "
        "cat \"$IMG\"; } | "
        f"curl -s {endpoint} -H \"Inference-Header-Content-Length: ${{#H}}\" --data-binary @-"
    )


# -- perf_analyzer input data ----------------------------------------------------------------------------------------

def perf_input_data(config, io=None, profiles=None, *, samples: int = len(SAMPLE_SENTENCES),
                    tokenizer_dir: Path | None = None) -> dict:
    """perf_analyzer / Model Analyzer `--input-data` JSON for `config`'s model: one entry per request.

    Text inputs take the sample sentences (real lengths); image inputs a small PNG (base64); token inputs the
    sample sentences tokenized with `tokenizer_dir`'s tokenizer where it loads; other tensors follow the IO spec
    (`io`: value ranges; `profiles`: the optimal length of dynamic dims) where given.
    """
    from trt_converters.shapes import synthetic_inputs

    specs = request_inputs(config)
    known = {t.name for t in io.inputs} if io is not None else set()
    tokenized = tokenized_samples(tokenizer_dir, io, profiles) if tokenizer_dir and io is not None else None
    entries = []
    image = None
    for index in range(samples):
        entry = {}
        tensors = [s for s in specs if s.kind == "tensor"]
        generated = {}
        if tokenized is not None and all(s.name in tokenized[index % len(tokenized)] for s in tensors):
            generated = tokenized[index % len(tokenized)]
        elif io is not None and tensors and all(s.name in known for s in tensors):
            shapes = {t.name: _sample_shape(t, profiles) for t in io.inputs}
            generated = synthetic_inputs(io, shapes, seed=index)
        for spec in specs:
            if spec.kind == "text":
                width = max(1, _count(spec.dims))
                entry[spec.name] = [SAMPLE_SENTENCES[(index + k) % len(SAMPLE_SENTENCES)] for k in range(width)]
            elif spec.kind == "image":
                image = image or base64.b64encode(sample_image_png()).decode("ascii")
                entry[spec.name] = {"b64": image}
            else:
                array = generated.get(spec.name)
                if array is None:
                    array = _tensor_value(spec)
                shape = list(array.shape[1:]) if spec.name in generated else list(array.shape)
                entry[spec.name] = {"content": array.reshape(-1).tolist(), "shape": shape}
        entries.append(entry)
    return {"data": entries}


def tokenized_samples(tokenizer_dir: Path, io, profiles) -> list[dict] | None:
    """The sample sentences as a text model's token inputs ([1, length] each; None where that does not apply).

    Inputs are matched by name (`*mask*` -> attention mask, `*type*`/`*segment*` -> token types, other integer
    inputs -> token ids); fixed-length inputs are padded to their length, others keep each sentence's length.
    """
    import numpy as np

    inputs = list(io.inputs)
    if not inputs or any(len(t.shape) != 1 for t in inputs):
        return None
    roles = {}
    for tensor in inputs:
        lowered = tensor.name.lower()
        roles[tensor.name] = ("attention_mask" if "mask" in lowered else "token_type_ids"
                              if "type" in lowered or "segment" in lowered else "input_ids")
    if list(roles.values()).count("input_ids") != 1 or not inputs[0].dtype.startswith("int"):
        return None
    if not any((Path(tokenizer_dir) / f).is_file() for f in TOKENIZER_FILES):
        return None
    try:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    except Exception:  # no usable tokenizer there: the caller falls back to synthetic values
        return None
    fixed = {t.shape[0] for t in inputs if t.shape[0] > 0}
    limits = [p.max[-1] for p in (profiles or {}).values()]
    max_length = min(fixed) if fixed else min(limits or [DEFAULT_MAX_TOKENS])
    samples = []
    for sentence in SAMPLE_SENTENCES:
        encoded = tokenizer([sentence], truncation=True, max_length=max_length, return_token_type_ids=True,
                            padding="max_length" if fixed else False, return_tensors="np")
        if any(role not in encoded for role in roles.values()):
            return None
        samples.append({name: np.asarray(encoded[role]).astype(tensor.numpy_dtype)
                        for tensor in inputs for name, role in [(tensor.name, roles[tensor.name])]})
    return samples


def _sample_shape(tensor, profiles) -> tuple[int, ...]:
    """One sample's shape (no batch): the profile's optimum where there is one."""
    profile = (profiles or {}).get(tensor.name)
    if profile is not None:
        return (1, *profile.opt[1:])
    return (1, *_concrete(tensor.shape, DEFAULT_DYNAMIC))


def input_data_text(data: dict) -> str:
    """The input-data JSON with one request per line."""
    return "{\"data\": [\n" + ",\n".join(json.dumps(entry) for entry in data["data"]) + "\n]}\n"


def input_data_for(model_dir: Path, *, io=None, profiles=None, tokenizer_dir: Path | None = None) -> dict:
    """perf_input_data for the model in `model_dir`; `io`, `profiles` and `tokenizer_dir` apply where it takes the
    IO spec's inputs."""
    config = read_model_config(model_dir)
    takes_io = io is not None and {i.name for i in config.input} <= {t.name for t in io.inputs}
    return perf_input_data(config, io if takes_io else None, profiles, tokenizer_dir=tokenizer_dir if takes_io else None)
