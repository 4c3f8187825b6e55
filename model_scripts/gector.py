"""GECToR (Grammatical Error Correction: Tag, Not Rewrite) token tagger for trt-convert.

`GectorModel` has the network and key names of gotutiyan/gector's `GECToR` (the Hugging Face
checkpoints gotutiyan/gector-roberta-base-5k etc.):
    bert.*               transformer encoder (RoBERTa by default) without pooler; its word
                         embeddings have `vocab_size + 1` rows, the extra one for `$START`
    label_proj_layer.*   Linear(hidden, num_labels)        edit-tag logits
    d_proj_layer.*       Linear(hidden, num_detect_labels)  $CORRECT / $INCORRECT logits
(gotutiyan's dropout before the label head has no weights and is identity at inference.)

Keyword arguments: `num_labels` = rows of the label head, i.e. len(label2id) - 1 of the
checkpoint's config.json (its <PAD> label has no row); `num_detect_labels` (2); `encoder_type`
(a transformers model_type: roberta, bert, deberta-v2, ...); and the encoder's config fields
(`vocab_size` WITHOUT `$START`, `hidden_size`, ...). Defaults: roberta-base with 5001 labels.

Inputs, in order: `input_ids` int64 [seq], `attention_mask` int64 [seq].
Outputs: `logits_labels` float32 [seq, num_labels], `logits_d` float32 [seq, num_detect_labels].

`hf_config_to_kwargs` reads gotutiyan's config.json (label2id, d_label2id, model_id; the encoder
architecture from `encoder_config`, from the config.json of a local `model_id` folder, or from a known
`model_id`, see `trt_converters.text.gector_checkpoint.KNOWN_ENCODERS`); `io_from_kwargs` gives the IO
values a configuration fixes (token-id range, sequence limit, output widths).
`adapt_state_dict` also takes Grammarly's original AllenNLP checkpoints (`*_gectorv2.th`); for
those, label names come from their `output_vocabulary/labels.txt`: convert once with
`trt_converters.text.gector_checkpoint.convert_allennlp_checkpoint` to get a config.json too.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel

try:
    from trt_converters.serving_runtime.checkpoint_keys import (
        drop_unused_extras, fit_to_model_shapes, is_allennlp_state_dict, rename_allennlp_keys)
except ImportError:  # served by the PyTorch baseline: the runtime is copied beside this script
    from serving_runtime.checkpoint_keys import (
        drop_unused_extras, fit_to_model_shapes, is_allennlp_state_dict, rename_allennlp_keys)

# roberta-base (its config.json), the default encoder
ROBERTA_BASE = dict(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
                    pad_token_id=1, bos_token_id=0, eos_token_id=2, hidden_size=768, num_hidden_layers=12,
                    num_attention_heads=12, intermediate_size=3072)


def build_encoder(encoder_type: str, vocab_size: int, **config_kwargs: Any) -> nn.Module:
    """A transformers encoder with one extra vocabulary row ($START) and no pooler."""
    config = AutoConfig.for_model(
        encoder_type, vocab_size=vocab_size + 1, attn_implementation="eager", **config_kwargs
    )
    model_class = AutoModel._model_mapping[type(config)]
    if "add_pooling_layer" in inspect.signature(model_class.__init__).parameters:
        return model_class(config, add_pooling_layer=False)
    return model_class(config)


def position_limit(config) -> int | None:
    """Longest sequence the encoder's position embeddings cover (RoBERTa-style ones start after padding)."""
    if getattr(config, "position_biased_input", True) is False:  # DeBERTa-v3: relative positions only
        return None
    limit = getattr(config, "max_position_embeddings", None)
    if limit and config.model_type in ("roberta", "xlm-roberta", "camembert"):
        limit -= (config.pad_token_id or 0) + 1
    return limit


class GectorModel(nn.Module):
    """Encoder + per-token edit-tag head + per-token error-detection head."""

    def __init__(
        self,
        num_labels: int = 5001,
        num_detect_labels: int = 2,
        encoder_type: str = "roberta",
        **encoder_kwargs: Any,
    ):
        super().__init__()
        if encoder_type == "roberta":
            encoder_kwargs = {**ROBERTA_BASE, **encoder_kwargs}
        self.bert = build_encoder(encoder_type, **encoder_kwargs)
        hidden_size = self.bert.config.hidden_size
        self.label_proj_layer = nn.Linear(hidden_size, num_labels)
        self.d_proj_layer = nn.Linear(hidden_size, num_detect_labels)

    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict, config_dir=None) -> dict:
        # conversion time only: the served baseline gets the resolved kwargs
        from trt_converters.text.gector_checkpoint import encoder_kwargs_from_hf_config, head_sizes_from_hf_config

        return {**encoder_kwargs_from_hf_config(hf_config, config_dir), **head_sizes_from_hf_config(hf_config)}

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        """Token ids < vocab_size + 1 ($START), the encoder's position limit, the two heads' widths."""
        kwargs = dict(kwargs)
        encoder_type = kwargs.pop("encoder_type", "roberta")
        num_labels = kwargs.pop("num_labels", 5001)
        num_detect_labels = kwargs.pop("num_detect_labels", 2)
        if encoder_type == "roberta":
            kwargs = {**ROBERTA_BASE, **kwargs}
        config = AutoConfig.for_model(encoder_type, **kwargs)
        return {"value_ranges": [[0, config.vocab_size + 1], None], "max_sequence_length": position_limit(config),
                "output_widths": [num_labels, num_detect_labels]}

    def adapt_state_dict(self, state_dict: dict) -> dict:
        model_shapes = {key: value.shape for key, value in self.state_dict().items()}
        if is_allennlp_state_dict(state_dict):
            state_dict = fit_to_model_shapes(rename_allennlp_keys(state_dict), model_shapes)
        return drop_unused_extras(state_dict, model_shapes.keys())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.label_proj_layer(hidden), self.d_proj_layer(hidden)
