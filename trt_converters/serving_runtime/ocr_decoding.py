"""Greedy autoregressive decoding for encoder-decoder OCR (TrOCR) over plain callables.

The callables take and return numpy arrays, so one loop drives PyTorch modules, ONNX Runtime
sessions and Triton models (inside the BLS pipeline) alike:

    encode(pixel_values [B, 3, H, W] float32) -> encoder_hidden_states [B, S, D]
    decode(decoder_input_ids [B, T] int64, encoder_hidden_states [B, S, D]) -> logits [B, T, V]

The decoder sees the whole prefix every step (no key/value cache), which gives exactly the
logits of an uncached model. Semantics follow Hugging Face greedy ``generate``
(``do_sample=False, num_beams=1``): the sequence starts with ``start_token_id``, ``max_length``
counts that start token, and rows that emitted ``eos_token_id`` are padded with ``pad_token_id``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

EncodeFn = Callable[[np.ndarray], np.ndarray]
DecodeFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def greedy_decode(
    encode: EncodeFn,
    decode: DecodeFn,
    pixel_values: np.ndarray,
    *,
    start_token_id: int,
    eos_token_id: int,
    max_length: int,
    pad_token_id: int | None = None,
) -> np.ndarray:
    """Return token ids [B, L] (L <= max_length), start token included, HF-style padding after eos."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}: raise it in pipeline_options")
    if pad_token_id is None:
        pad_token_id = eos_token_id
    encoder_hidden_states = np.asarray(encode(pixel_values))
    batch = encoder_hidden_states.shape[0]
    ids = np.full((batch, 1), start_token_id, dtype=np.int64)
    active = np.ones(batch, dtype=bool)
    while ids.shape[1] < max_length and active.any():
        rows = np.flatnonzero(active)
        # Rows are independent, so finished rows are simply left out of the next call.
        logits = np.asarray(decode(ids[rows], encoder_hidden_states[rows]))
        next_tokens = np.full(batch, pad_token_id, dtype=np.int64)
        next_tokens[rows] = logits[:, -1, :].argmax(axis=-1)
        ids = np.concatenate([ids, next_tokens[:, None]], axis=1)
        active &= next_tokens != eos_token_id
    return ids


def strip_special_tokens(
    ids: Sequence[int], *, start_token_id: int, eos_token_id: int, pad_token_id: int | None = None
) -> list[int]:
    """Tokens of one generated row between the start token and the first eos."""
    out: list[int] = []
    for position, token in enumerate(int(t) for t in ids):
        if position == 0 and token == start_token_id:
            continue
        if token == eos_token_id or (pad_token_id is not None and token == pad_token_id):
            break
        out.append(token)
    return out


def ids_to_text(ids: Sequence[int], vocab: Sequence[str]) -> str:
    """Join per-token strings (a character-level vocabulary); unknown ids raise."""
    pieces = []
    for token in ids:
        if not 0 <= token < len(vocab):
            raise ValueError(f"token id {token} outside the vocabulary of {len(vocab)} entries")
        pieces.append(vocab[token])
    return "".join(pieces)
