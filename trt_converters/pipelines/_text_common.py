"""Pieces the text pipelines share: Triton configs, python-model folders, tokenizer copies.

Every python-backend model written here is `<repo>/<name>/config.pbtxt` + `<name>/<version>/model.py`
(copied from `triton_models/<source>/model.py`) + the serving runtime + its data files, all through
triton/python_model.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

from trt_converters.errors import UserError
from trt_converters.pipelines._options import Option, entry_names
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.serving_runtime.hf_tokenizer import TOKENIZER_FOLDER
from trt_converters.triton import config as config_writer
from trt_converters.triton.python_model import FileSource, version_folder, write_model_files

DEFAULT_MAX_LENGTH = 512
# Dynamic-length text is padded to the longest text of each tokenizer call unless pipeline option length_buckets
# names lengths to pad to. Measured in benchmarks/cpu_e2e.py (MiniLM-L6 INT8, 2 vCPU, real-length sentences):
# buckets 16/32/64/128 gave 0.46-0.76x the requests/s of padding to the longest at concurrency 1, 4 and 8, so
# buckets are an option, not the default.
ROLES = ("input_ids", "attention_mask", "token_type_ids")


# -- options ---------------------------------------------------------------------------------
def text_options(*entry_outputs: str) -> dict[str, Option]:
    """The options every text pipeline takes (tokenizer, length, input roles, entry tensor names)."""
    return {
        "tokenizer_path": Option("path", "Hugging Face tokenizer folder (default: beside the checkpoint; "
                                         "--tokenizer-path sets it)"),
        "max_length": Option("int", "tokenize at most this many tokens (default: the profile's max length)",
                             minimum=1),
        "input_roles": Option("mapping", "{core input: input_ids | attention_mask | token_type_ids} where the "
                                         "names do not tell"),
        "length_buckets": Option("any", "dynamic-length cores: pad each batch to the next of these lengths, e.g. "
                                        "16,32,64,128 (default none: to the longest text of the batch)"),
        **entry_names(entry_outputs),
    }


def option(request: PipelineRequest, key: str, default=None, *aliases: str):
    for name in (key, *aliases):
        if name in request.options and request.options[name] is not None:
            return request.options[name]
    return default


def int_option(request: PipelineRequest, key: str, default: Optional[int], *, minimum: int = 0) -> Optional[int]:
    value = option(request, key, default)
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise UserError(f"pipeline option {key}={value!r} must be an integer") from None
    if number < minimum:
        raise UserError(f"pipeline option {key}={number} must be >= {minimum}")
    return number


def float_option(request: PipelineRequest, key: str, default: float) -> float:
    value = option(request, key, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise UserError(f"pipeline option {key}={value!r} must be a number") from None


def bool_option(request: PipelineRequest, key: str, default: bool) -> bool:
    value = option(request, key, default)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise UserError(f"pipeline option {key}={value!r} must be true or false")


# -- model folders and configs ---------------------------------------------------------------
def new_python_model(request: PipelineRequest, model_name: str, source: str,
                     files: dict[str, FileSource] | None = None) -> Path:
    """Create `<repo>/<model_name>/<version>/` with model.py, the serving runtime and `files`; returns that folder."""
    folder = request.repo / model_name
    if folder.exists():
        raise UserError(f"model {model_name!r} already exists in {request.repo}: choose another pipeline "
                        "name or remove that folder")
    write_model_files(folder, source, files)
    return version_folder(folder)


def python_model_config(request: PipelineRequest, name: str, *, parameters: dict, batching: bool = True,
                        role: str = "postprocess"):
    return config_writer.python_model_config(
        name, max_batch_size=request.max_batch_size, parameters=parameters, batching=batching,
        instance_count=request.serving.instances(role),
        response_cache=role == "entry" and request.serving.response_cache)


add_tensor = config_writer.add_tensor
add_spec = config_writer.add_spec


def write_config(model_dir: Path, config, warmup_files: dict | None = None) -> Path:
    return config_writer.write_config(model_dir, config, warmup_files)[0]


def ensemble_config(request: PipelineRequest, steps: list[tuple[str, dict, dict]]):
    """Ensemble named `request.pipeline_name`; steps are (model, {its input: tensor}, {its output: tensor})."""
    return config_writer.ensemble_config(request.pipeline_name, max_batch_size=request.max_batch_size, steps=steps,
                                         response_cache=request.serving.response_cache)


def require_batching(request: PipelineRequest) -> None:
    """Text pipelines take one string per batch row: the text tensor is [batch, 1]."""
    if request.max_batch_size < 1:
        raise UserError(f"pipeline {request.pipeline_name!r} needs a batched core model: "
                        "set max_batch_size >= 1")


# -- tokenizer -------------------------------------------------------------------------------
def tokenizer_source(request: PipelineRequest) -> Path:
    given = option(request, "tokenizer_path")
    source = Path(given) if given else request.checkpoint_dir
    if source is None:
        raise UserError(f"pipeline {request.pipeline_name!r} needs tokenizer files: pass --tokenizer-path "
                        "or put them beside the checkpoint")
    source = Path(source)
    if not source.is_dir():
        raise UserError(f"tokenizer path {source} is not a folder: pass the folder with tokenizer.json "
                        "or vocab files (--tokenizer-path)")
    return source


def load_tokenizer(folder: Path, *, split_words: bool = False):
    """Hugging Face tokenizer from a folder; `split_words` turns on RoBERTa-style prefix spaces
    so that pre-split words tokenize as they do inside a sentence."""
    from transformers import AutoTokenizer

    kwargs = {"add_prefix_space": True} if split_words else {}
    try:
        return AutoTokenizer.from_pretrained(str(folder), **kwargs)
    except Exception as exc:  # transformers raises OSError/ValueError/KeyError for unusable folders
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot load a tokenizer from {folder} ({first}): pass a folder saved with "
                        "save_pretrained (tokenizer.json or vocab files) via --tokenizer-path") from None


def checkpoint_config(request: PipelineRequest) -> Optional[dict]:
    """config.json from the checkpoint folder, else from the tokenizer folder; None if neither has one."""
    candidates = [request.checkpoint_dir, option(request, "tokenizer_path")]
    for folder in candidates:
        if folder is None:
            continue
        path = Path(folder) / "config.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
            if isinstance(data, dict):
                return data
    return None


def input_roles(request: PipelineRequest) -> dict[str, str]:
    """Core input name -> tokenizer field, from option `input_roles` or from the names."""
    given = option(request, "input_roles")
    if isinstance(given, str):
        try:
            given = json.loads(given)
        except json.JSONDecodeError:
            raise UserError("pipeline option input_roles must be a JSON object {input name: role}") from None
    roles = {}
    for spec in request.io.inputs:
        role = (given or {}).get(spec.name) or _role_from_name(spec.name)
        if role not in ROLES:
            raise UserError(f"core input {spec.name!r} has no tokenizer role: set pipeline option input_roles "
                            f"(e.g. {{\"{spec.name}\": \"attention_mask\"}}; roles: {', '.join(ROLES)})")
        roles[spec.name] = role
    if "input_ids" not in roles.values():
        raise UserError("no core input takes token ids: name one input_ids or set pipeline option input_roles")
    return roles


def _role_from_name(name: str) -> Optional[str]:
    lowered = name.lower()
    if "mask" in lowered:
        return "attention_mask"
    if "type" in lowered or "segment" in lowered:
        return "token_type_ids"
    if "ids" in lowered or lowered in ("input", "tokens"):
        return "input_ids"
    return None


def sequence_length(request: PipelineRequest, tokenizer=None, default_max: Optional[int] = None) -> tuple[int, bool]:
    """(max_length, fixed): fixed when the core inputs have a fixed length (e.g. [128])."""
    lengths = {spec.shape[-1] for spec in request.io.inputs if spec.shape}
    fixed = sorted(d for d in lengths if d != -1)
    if len(fixed) > 1:
        raise UserError(f"core inputs disagree on the sequence length ({fixed}): give them one length")
    if fixed:
        return fixed[0], True
    # Never tokenize past the longest sequence the engine's profile accepts.
    limits = [s.max_shape[-1] for s in request.io.inputs if s.max_shape]
    given = int_option(request, "max_length", default_max, minimum=1)
    if given is not None:
        limits.append(given)
    else:
        limits += [int(getattr(tokenizer, "model_max_length", None) or DEFAULT_MAX_LENGTH), DEFAULT_MAX_LENGTH]
    return min(limits), False


def length_buckets(request: PipelineRequest, max_length: int) -> list[int]:
    """Option `length_buckets`: comma-separated or JSON lengths (capped at max_length); none/absent: no buckets."""
    given = option(request, "length_buckets")
    if given is None or str(given).strip().lower() in ("none", "off", "[]", ""):
        return []
    try:
        values = json.loads(given) if str(given).strip().startswith("[") else \
            [int(part) for part in str(given).split(",") if part.strip()]
        values = [int(v) for v in values]
    except (ValueError, TypeError):
        raise UserError(f"pipeline option length_buckets={given!r} must list token lengths, e.g. 16,32,64,128") from None
    if any(v < 1 for v in values):
        raise UserError(f"pipeline option length_buckets={given!r}: lengths must be >= 1")
    return sorted(set(min(v, max_length) for v in values))


def write_tokenizer_model(request: PipelineRequest, name: str, *, prefix: str) -> Path:
    """The `text` -> core-inputs python model (shared with the e5 pipeline); returns its folder."""
    tokenizer = load_tokenizer(tokenizer_source(request))
    max_length, fixed = sequence_length(request, tokenizer)
    roles = input_roles(request)
    buckets = [] if fixed else length_buckets(request, max_length)
    version = new_python_model(request, name, "text_tokenizer")
    tokenizer.save_pretrained(str(version / TOKENIZER_FOLDER))
    config = python_model_config(request, name, role="tokenizer", parameters={
        "text_input": "text",
        "roles": json.dumps(roles),
        "max_length": str(max_length),
        "padding": "max_length" if fixed else "longest",
        "length_buckets": json.dumps(buckets),
        "prefix": prefix,
    })
    add_tensor(config.input, "text", "TYPE_STRING", [1])
    for spec in request.io.inputs:
        add_spec(config.output, spec)
    warmup = config_writer.add_text_warmup(config, "text", {1, request.max_batch_size}) \
        if request.serving.warmup else None
    write_config(version.parent, config, warmup)
    return version.parent


def written_files(*folders: Path) -> list[Path]:
    return sorted(path for folder in folders for path in folder.rglob("*") if path.is_file())
