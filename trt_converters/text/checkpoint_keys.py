"""Small state_dict key fixes shared by the text model scripts.

Real checkpoints differ from a freshly built transformers module in ways that carry no weights:
an outer prefix (`bert.`, `model.`, `0.auto_model.`), a pooler the model does not use, and
buffers (`position_ids`, `token_type_ids`) that older transformers versions saved and newer
ones do not. These helpers remove exactly those differences and nothing else, so the strict
`load_state_dict` that follows still reports every real mismatch.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import torch

# Buffers older transformers versions persisted in encoder state_dicts.
UNSAVED_BUFFER_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")


def rebase_prefix(
    state_dict: Mapping[str, torch.Tensor], known_prefixes: Iterable[str], target_prefix: str
) -> dict[str, torch.Tensor]:
    """Move keys from whichever of `known_prefixes` they carry (or none) under `target_prefix`.

    Keys that carry none of the known prefixes are treated as bare encoder keys. Only the
    longest matching prefix is stripped, so `0.auto_model.` wins over `model.` style overlaps.
    """
    prefixes = sorted(set(known_prefixes), key=len, reverse=True)
    rebased: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        bare = key
        for prefix in prefixes:
            if key.startswith(prefix):
                bare = key[len(prefix):]
                break
        rebased[target_prefix + bare] = value
    return rebased


def drop_unused_extras(
    state_dict: Mapping[str, torch.Tensor], model_keys: Iterable[str], drop_pooler: bool = True
) -> dict[str, torch.Tensor]:
    """Remove saved buffers and (optionally) pooler weights that `model_keys` does not contain."""
    wanted = set(model_keys)
    kept: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        if key not in wanted:
            if key.endswith(UNSAVED_BUFFER_SUFFIXES):
                continue
            if drop_pooler and ".pooler." in f".{key}":
                continue
        kept[key] = value
    return kept
