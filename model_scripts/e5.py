"""Sentence embeddings from a BERT encoder (E5, MiniLM / sentence-transformers) for trt-convert.

`E5Embedder` = transformers `BertModel` (no pooler) + attention-masked mean pooling + L2
normalisation, all inside `forward`, so the exported graph returns finished embeddings.
Defaults: intfloat/e5-small-v2's architecture (12 layers, 384 hidden, 12 heads, 1536 FFN).
Inputs, in order: `input_ids` int64 [seq], `attention_mask` int64 [seq], optional
`token_type_ids` int64 [seq] (zeros when absent). Output: `embeddings` float32 [hidden_size].

State_dict keys: `bert.embeddings.*`, `bert.encoder.*`. `adapt_state_dict` accepts bare BertModel
keys (e5 and sentence-transformers `model.safetensors` files), and the prefixes `bert.`,
`model.`, `0.auto_model.` and `auto_model.`; it drops the unused pooler and old saved buffers.
E5 expects "query: " / "passage: " text prefixes: the tokenizer pipeline adds those.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers import BertConfig, BertModel

try:
    from trt_converters.serving_runtime.checkpoint_keys import drop_unused_extras, rebase_prefix
except ImportError:  # served by the PyTorch baseline: the runtime is copied beside this script
    from serving_runtime.checkpoint_keys import drop_unused_extras, rebase_prefix

E5_SMALL_V2 = dict(
    vocab_size=30522,
    hidden_size=384,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=1536,
    hidden_act="gelu",
    max_position_embeddings=512,
    type_vocab_size=2,
    layer_norm_eps=1e-12,
    pad_token_id=0,
)
ARCHITECTURE_KEYS = tuple(E5_SMALL_V2) + ("position_embedding_type",)
CHECKPOINT_PREFIXES = ("bert.", "model.", "0.auto_model.", "auto_model.")


class E5Embedder(nn.Module):
    """BERT encoder with masked mean pooling and L2 normalisation."""

    def __init__(self, normalize: bool = True, **config_kwargs: Any):
        super().__init__()
        fields = {**E5_SMALL_V2, **config_kwargs}
        fields.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        self.config = BertConfig(**fields)
        self.normalize = normalize
        self.bert = BertModel(self.config, add_pooling_layer=False)

    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict) -> dict:
        return {key: hf_config[key] for key in ARCHITECTURE_KEYS if key in hf_config}

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        """Token ids < vocab_size, at most max_position_embeddings tokens, hidden_size-wide embeddings."""
        fields = {**E5_SMALL_V2, **{k: v for k, v in kwargs.items() if k != "normalize"}}
        return {"value_ranges": [[0, fields["vocab_size"]], None, None],
                "max_sequence_length": fields["max_position_embeddings"], "output_widths": [fields["hidden_size"]]}

    def adapt_state_dict(self, state_dict: dict) -> dict:
        rebased = rebase_prefix(state_dict, CHECKPOINT_PREFIXES, "bert.")
        return drop_unused_extras(rebased, self.state_dict().keys())

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        hidden = self.bert(
            input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
        ).last_hidden_state
        weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2.0, dim=-1)
        return pooled
