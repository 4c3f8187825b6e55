"""Small state_dict key fixes shared by the model scripts (at conversion and in the PyTorch baseline).

Real checkpoints differ from a freshly built transformers module in ways that carry no weights:
an outer prefix (`bert.`, `model.`, `0.auto_model.`), a pooler the model does not use, and
buffers (`position_ids`, `token_type_ids`) that older transformers versions saved and newer
ones do not. These helpers remove exactly those differences and nothing else, so the strict
`load_state_dict` that follows still reports every real mismatch.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

# Buffers older transformers versions persisted in encoder state_dicts.
UNSAVED_BUFFER_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")


def rebase_prefix(
    state_dict: Mapping[str, Any], known_prefixes: Iterable[str], target_prefix: str
) -> dict[str, Any]:
    """Move keys from whichever of `known_prefixes` they carry (or none) under `target_prefix`.

    Keys that carry none of the known prefixes are treated as bare encoder keys. Only the
    longest matching prefix is stripped, so `0.auto_model.` wins over `model.` style overlaps.
    """
    prefixes = sorted(set(known_prefixes), key=len, reverse=True)
    rebased: dict[str, Any] = {}
    for key, value in state_dict.items():
        bare = key
        for prefix in prefixes:
            if key.startswith(prefix):
                bare = key[len(prefix):]
                break
        rebased[target_prefix + bare] = value
    return rebased


def drop_unused_extras(
    state_dict: Mapping[str, Any], model_keys: Iterable[str], drop_pooler: bool = True
) -> dict[str, Any]:
    """Remove saved buffers and (optionally) pooler weights that `model_keys` does not contain."""
    wanted = set(model_keys)
    kept: dict[str, Any] = {}
    for key, value in state_dict.items():
        if key not in wanted:
            if key.endswith(UNSAVED_BUFFER_SUFFIXES):
                continue
            if drop_pooler and ".pooler." in f".{key}":
                continue
        kept[key] = value
    return kept


# -- Grammarly's AllenNLP GECToR checkpoints (see trt_converters/text/gector_checkpoint.py) ----------
ALLENNLP_PREFIXES = {
    "text_field_embedder.token_embedder_bert.bert_model.": "bert.",
    "tag_labels_projection_layer._module.": "label_proj_layer.",
    "tag_detect_projection_layer._module.": "d_proj_layer.",
}
WORD_EMBEDDINGS = "bert.embeddings.word_embeddings.weight"


def is_allennlp_state_dict(state_dict: Mapping[str, Any]) -> bool:
    return any(key.startswith(tuple(ALLENNLP_PREFIXES)) for key in state_dict)


def rename_allennlp_keys(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """AllenNLP key names -> Hugging Face GECToR names, dropping the pooler and position_ids."""
    renamed: dict[str, Any] = {}
    for key, value in state_dict.items():
        for old, new in ALLENNLP_PREFIXES.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        if key.startswith("bert.pooler.") or key.endswith("position_ids"):
            continue
        renamed[key] = value
    return renamed


def fit_to_model_shapes(state_dict: Mapping[str, Any], model_shapes: Mapping[str, Any]) -> dict[str, Any]:
    """Apply the AllenNLP layout differences that shapes alone identify.

    Embeddings one row short (no `$START`) get a zero row; a label head one row longer than the
    model's loses its last row (@@PADDING@@ is last in Grammarly's labels.txt); a detection head
    with more rows keeps its first ones (CORRECT, INCORRECT). Other mismatches are left for the
    strict load to report.
    """
    import torch

    fitted = dict(state_dict)
    embeddings = fitted.get(WORD_EMBEDDINGS)
    wanted = model_shapes.get(WORD_EMBEDDINGS)
    if embeddings is not None and wanted is not None and embeddings.shape[0] == wanted[0] - 1:
        fitted[WORD_EMBEDDINGS] = torch.cat([embeddings, torch.zeros_like(embeddings[:1])])
    for key in ("label_proj_layer.weight", "label_proj_layer.bias"):
        if key in fitted and key in model_shapes and fitted[key].shape[0] == model_shapes[key][0] + 1:
            fitted[key] = fitted[key][:-1]
    for key in ("d_proj_layer.weight", "d_proj_layer.bias"):
        if key in fitted and key in model_shapes and fitted[key].shape[0] > model_shapes[key][0]:
            fitted[key] = fitted[key][: model_shapes[key][0]]
    return fitted
