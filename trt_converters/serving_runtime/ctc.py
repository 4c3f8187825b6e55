"""Greedy CTC decoding: best class per time step, collapse repeats, drop the blank.

Imports only numpy, so Triton python-backend models can use it directly.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np


def ctc_labels(charset: "str | Sequence[str]", blank_index: int = 0) -> list[str]:
    """Class index -> text: the charset's symbols in order with the blank ("") inserted at blank_index."""
    symbols = list(charset)
    if not symbols:
        raise ValueError("charset is empty")
    if len(set(symbols)) != len(symbols):
        repeated = sorted({s for s in symbols if symbols.count(s) > 1})
        raise ValueError(f"charset repeats symbols {repeated}")
    if not 0 <= blank_index <= len(symbols):
        raise ValueError(f"blank_index {blank_index} must be in 0..{len(symbols)} for a charset of {len(symbols)} symbols")
    return symbols[:blank_index] + [""] + symbols[blank_index:]


def ctc_collapse(best_path: Sequence[int], blank_index: int) -> list[int]:
    """Merge runs of the same class, then drop blanks: [0,3,3,0,3,5,5] -> [3,3,5] (blank 0)."""
    out: list[int] = []
    previous = None
    for label in best_path:
        label = int(label)
        if label != previous and label != blank_index:
            out.append(label)
        previous = label
    return out


def ctc_greedy_decode(
    logits: np.ndarray,
    labels: Sequence[str],
    *,
    blank_index: int = 0,
    lengths: "Sequence[int] | None" = None,
) -> list[str]:
    """logits [B, T, C] (or [T, C]) -> one string per row; `lengths` limits each row's valid steps."""
    logits = np.asarray(logits)
    if logits.ndim == 2:
        logits = logits[None]
    if logits.ndim != 3:
        raise ValueError(f"CTC logits must be [B, T, C] or [T, C], got shape {list(logits.shape)}")
    if logits.shape[-1] != len(labels):
        raise ValueError(f"CTC logits have {logits.shape[-1]} classes but the charset plus blank has {len(labels)}")
    if lengths is None:
        lengths = [logits.shape[1]] * logits.shape[0]
    if len(lengths) != logits.shape[0]:
        raise ValueError(f"got {len(lengths)} lengths for a batch of {logits.shape[0]}")
    best = logits.argmax(axis=-1)
    texts = []
    for row, length in zip(best, lengths):
        if not 0 <= int(length) <= logits.shape[1]:
            raise ValueError(f"length {length} outside 0..{logits.shape[1]}")
        texts.append("".join(labels[i] for i in ctc_collapse(row[: int(length)], blank_index)))
    return texts
