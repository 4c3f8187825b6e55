"""TrOCR pipeline: one BLS python model, text-line image in, string out.

`<repo>/<pipeline_name>` resizes each image to the fixed encoder size, normalizes it, calls the
encoder core model once and the decoder core model (this run's core model) once per generated
token, greedy, full prefix each step (`serving_runtime.ocr_decoding.greedy_decode`).
Run this writer with the decoder's config; the encoder is a separate `trt-convert` run.

pipeline_options (YAML):
    encoder_model_name (required), encoder_input_name ("pixel_values"),
    encoder_output_name ("encoder_hidden_states"), image_size [H, W] (required),
    mean / std (per channel after scaling pixels to [0, 1]; default 0.5 / 0.5 as TrOCR),
    start_token_id, eos_token_id, pad_token_id (default: decoder_start_token_id, eos_token_id,
    pad_token_id of the config.json beside the checkpoint, else 2, 2, 1), max_length (default: the decoder
    input's max_shape, else 64), and the text, first found of: `tokenizer_path` (a Hugging Face
    tokenizer.json or the folder holding it; `--tokenizer-path` sets it), `vocab` (one string
    per token id, e.g. a character list), tokenizer.json beside the checkpoint. A tokenizer is
    copied beside model.py.
"""
from __future__ import annotations

import json
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines.base import PipelineRequest
from trt_converters.pipelines._options import Option
from trt_converters.pipelines.crnn import number_list, write_image_to_text_model

TOKENIZER_FILENAME = "tokenizer.json"
DEFAULT_MAX_LENGTH = 64
OPTIONS = {
    "encoder_model_name": Option("str", "the encoder's model name in the repository (required)"),
    "encoder_input_name": Option("str", "encoder input (default pixel_values)"),
    "encoder_output_name": Option("str", "encoder output (default encoder_hidden_states)"),
    "image_size": Option("list", "[H, W] the encoder takes (required), e.g. 384,384"),
    "mean": Option("list", "per-channel mean after scaling pixels to [0, 1] (default 0.5)"),
    "std": Option("list", "per-channel std after scaling pixels to [0, 1] (default 0.5)"),
    "start_token_id": Option("int", "decoder start token (default: config.json, else 2)", minimum=0),
    "eos_token_id": Option("int", "end-of-sequence token (default: config.json, else 2)", minimum=0),
    "pad_token_id": Option("int", "padding token (default: config.json, else 1)", minimum=0),
    "max_length": Option("int", "longest generated sequence (default: the decoder's max_shape, else 64)",
                         minimum=2),
    "tokenizer_path": Option("str", "tokenizer.json or its folder (--tokenizer-path sets it)"),
    "vocab": Option("list", "one string per token id, instead of a tokenizer"),
}


def resolve_options(request: PipelineRequest) -> tuple[dict, Path | None]:
    """(options for the BLS model, tokenizer.json to copy or None), validated."""
    options = dict(request.options)
    if len(request.io.inputs) != 2 or len(request.io.outputs) != 1:
        raise UserError("the trocr pipeline runs with the decoder config: inputs (decoder_input_ids, "
                        "encoder_hidden_states) and one logits output")
    ids_input, hidden_input = request.io.inputs
    logits = request.io.outputs[0]
    if ids_input.dtype not in ("int64", "int32"):
        raise UserError(f"trocr pipeline: first decoder input {ids_input.name!r} must hold token ids (int64)")
    for key in ("encoder_model_name", "image_size"):
        if key not in options:
            raise UserError(f"trocr pipeline: pipeline_options needs {key!r}")
    image_size = number_list(options["image_size"], name="image_size", length=2, kind=int)
    if min(image_size) < 1:
        raise UserError(f"trocr pipeline: image_size must be [height, width] >= 1, got {options['image_size']}")
    mean = number_list(options.get("mean", [0.5, 0.5, 0.5]), name="mean", length=3)
    std = number_list(options.get("std", [0.5, 0.5, 0.5]), name="std", length=3)
    if min(std) <= 0:
        raise UserError(f"trocr pipeline: std {std} must be positive")

    length_limit = ids_input.max_shape[0] if ids_input.max_shape else None
    max_length = int(options.get("max_length", length_limit or DEFAULT_MAX_LENGTH))
    if max_length < 2:
        raise UserError(f"trocr pipeline: max_length {max_length} leaves no room for a token; use 2 or more")
    if length_limit is not None and max_length > length_limit:
        raise UserError(f"trocr pipeline: max_length {max_length} exceeds the decoder's max_shape {length_limit} "
                        f"for {ids_input.name!r}; lower max_length or raise max_shape")

    vocab, tokenizer = options.get("vocab"), None
    if options.get("tokenizer_path"):
        tokenizer, vocab = _find_tokenizer(options["tokenizer_path"], request.checkpoint_dir), None
    elif vocab is None and request.checkpoint_dir and (Path(request.checkpoint_dir) / TOKENIZER_FILENAME).is_file():
        tokenizer = Path(request.checkpoint_dir) / TOKENIZER_FILENAME
    elif vocab is None:
        raise UserError("trocr pipeline: needs pipeline_options.tokenizer_path (tokenizer.json; or --tokenizer-path) "
                        "or pipeline_options.vocab (one string per token id)")
    else:
        vocab = list(vocab)
    vocab_size = logits.shape[-1] if logits.shape else -1
    entries = len(vocab) if vocab is not None else _tokenizer_size(tokenizer)
    if vocab_size != -1 and entries != vocab_size:
        what = "vocab" if vocab is not None else f"tokenizer {tokenizer}"
        raise UserError(f"trocr pipeline: {what} has {entries} entries but {logits.name!r} has {vocab_size} classes; "
                        "use the tokenizer that belongs to the checkpoint")

    resolved = {
        "encoder_model_name": options["encoder_model_name"],
        "encoder_input_name": options.get("encoder_input_name", "pixel_values"),
        "encoder_output_name": options.get("encoder_output_name", "encoder_hidden_states"),
        "decoder_model_name": request.core_model_name,
        "ids_input_name": ids_input.name,
        "ids_dtype": ids_input.dtype,
        "hidden_input_name": hidden_input.name,
        "logits_name": logits.name,
        "image_size": image_size,
        "mean": mean,
        "std": std,
        **_special_tokens(options, request.checkpoint_dir),
        "max_length": max_length,
        "vocab": vocab,
        "tokenizer_file": TOKENIZER_FILENAME if tokenizer else None,
    }
    return resolved, tokenizer


DEFAULT_SPECIAL_TOKENS = {"start_token_id": 2, "eos_token_id": 2, "pad_token_id": 1}  # TrOCR's
HF_SPECIAL_TOKEN_KEYS = {"start_token_id": "decoder_start_token_id", "eos_token_id": "eos_token_id",
                         "pad_token_id": "pad_token_id"}


def checkpoint_options(hf_config: dict) -> dict:
    """Special token ids of the checkpoint's config.json (top level, then its decoder)."""
    decoder = hf_config.get("decoder") if isinstance(hf_config.get("decoder"), dict) else {}
    found = {}
    for key, hf_key in HF_SPECIAL_TOKEN_KEYS.items():
        value = next((source[hf_key] for source in (hf_config, decoder) if source.get(hf_key) is not None), None)
        if value is not None:
            found[key] = value
    return found


def _special_tokens(options: dict, checkpoint_dir: Path | None) -> dict:
    """pipeline_options (flags > config.json > YAML, see options.build_options) > config.json beside the
    checkpoint (for writers called without the converter) > TrOCR's ids."""
    hf_config = {}
    path = Path(checkpoint_dir) / "config.json" if checkpoint_dir else None
    if path is not None and path.is_file():
        try:
            hf_config = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is not valid JSON ({exc.msg}); fix or remove it") from None
    from_checkpoint = checkpoint_options(hf_config)
    tokens = {}
    for key in HF_SPECIAL_TOKEN_KEYS:
        value = options.get(key)
        if value is None:
            value = from_checkpoint.get(key, DEFAULT_SPECIAL_TOKENS[key])
        if isinstance(value, list):  # HF allows several eos ids; greedy decoding here stops at one
            value = value[0]
        try:
            tokens[key] = int(value)
        except (TypeError, ValueError):
            raise UserError(f"trocr pipeline: {key} must be a token id, got {value!r}") from None
    return tokens


def _tokenizer_size(path: Path) -> int:
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path)).get_vocab_size(with_added_tokens=True)
    except Exception as exc:  # tokenizers raises its own exception type for malformed files
        raise UserError(f"trocr pipeline: {path} is not a Hugging Face tokenizer.json ({exc}); "
                        "pass the tokenizer that belongs to the checkpoint") from None


def _find_tokenizer(name: str, checkpoint_dir: Path | None) -> Path:
    path = Path(name)
    bases = [path] if path.is_absolute() else [(checkpoint_dir or Path()) / path, path]
    candidates = [c for base in bases for c in (base, base / TOKENIZER_FILENAME)]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UserError(f"trocr pipeline: tokenizer_path {name!r} has no tokenizer.json (looked at "
                    f"{', '.join(map(str, candidates))}); put tokenizer.json beside the checkpoint or pass --tokenizer-path")


def write_pipeline(request: PipelineRequest) -> list[Path]:
    options, tokenizer = resolve_options(request)
    files = {TOKENIZER_FILENAME: Path(tokenizer)} if tokenizer is not None else None
    return write_image_to_text_model(request, "trocr_pipeline", options, files)
