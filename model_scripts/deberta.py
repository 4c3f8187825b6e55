"""DeBERTa-v2/v3 text models for trt-convert.

Two classes, both built offline from keyword arguments with transformers' `DebertaV2Model`
(always with `attn_implementation="eager"`: the SDPA path of DeBERTa-v2 does not export to ONNX).
Constructor defaults are microsoft/deberta-v3-large's architecture; any other `DebertaV2Config`
field (e.g. `position_buckets`, `share_att_key`) can be passed as a keyword argument.

`DebertaLargeModel` - caption classifier of the original tool (one logit per text).
    Inputs, in order: `input_ids` int64 [seq], `input_mask` float32 [seq],
    `input_token_type_ids` float32 [seq] (optional). Output: `output` float32 [num_outputs].
    The masks arrive as floats (as the original Triton deployment sends them) and are cast here.
    With `type_vocab_size=0` (DeBERTa-v3's default) token types are ignored, so the graph can be
    exported and served with only `input_ids,input_mask`.
    State_dict keys:
        model.*   the DebertaV2Model encoder (`model.embeddings.*`, `model.encoder.*`)
        fc.*      Linear(hidden_size, num_outputs) head
    `pooling="mean"` (default) averages the hidden states over the mask; `pooling="cls"` takes
    the first token's hidden state.

`DebertaSequenceClassifier` - loads Hugging Face `DebertaV2ForSequenceClassification`
    checkpoints as saved (`deberta.*`, `pooler.dense.*`, `classifier.*`).
    Inputs: `input_ids` int64 [seq], `attention_mask` int64 [seq]. Output: `logits` [num_labels].
    `hf_config_to_kwargs` reads the checkpoint's config.json (num_labels from id2label).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn
from transformers import DebertaV2Config, DebertaV2Model
from transformers.models.deberta_v2.modeling_deberta_v2 import ContextPooler

try:
    from trt_converters.serving_runtime.checkpoint_keys import drop_unused_extras
except ImportError:  # served by the PyTorch baseline: the runtime is copied beside this script
    from serving_runtime.checkpoint_keys import drop_unused_extras

# microsoft/deberta-v3-large architecture (its config.json, transformers defaults filled in).
DEBERTA_V3_LARGE = dict(
    vocab_size=128100,
    hidden_size=1024,
    num_hidden_layers=24,
    num_attention_heads=16,
    intermediate_size=4096,
    hidden_act="gelu",
    max_position_embeddings=512,
    type_vocab_size=0,
    layer_norm_eps=1e-7,
    relative_attention=True,
    max_relative_positions=-1,
    position_buckets=256,
    norm_rel_ebd="layer_norm",
    share_att_key=True,
    pos_att_type=["p2c", "c2p"],
    position_biased_input=False,
    pad_token_id=0,
)

# config.json fields that shape the network; everything else (dropouts, ids, names) is ignored.
ARCHITECTURE_KEYS = tuple(DEBERTA_V3_LARGE) + (
    "embedding_size",
    "pooler_hidden_size",
    "pooler_hidden_act",
)


def deberta_config(**kwargs: Any) -> DebertaV2Config:
    """A DebertaV2Config with v3-large defaults, no dropout, and the exportable eager attention."""
    fields = {**DEBERTA_V3_LARGE, **kwargs}
    fields.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, pooler_dropout=0.0)
    return DebertaV2Config(**fields, attn_implementation="eager")


def architecture_from_hf_config(hf_config: dict) -> dict:
    """The network-shaping subset of a DeBERTa config.json."""
    return {key: hf_config[key] for key in ARCHITECTURE_KEYS if key in hf_config}


def io_values(config: DebertaV2Config, width: int, inputs: int) -> dict:
    """Token ids < vocab_size; a length limit only with absolute position embeddings (v3 has none)."""
    limit = config.max_position_embeddings if config.position_biased_input else None
    return {"value_ranges": [[0, config.vocab_size]] + [None] * (inputs - 1), "max_sequence_length": limit,
            "output_widths": [width]}


def num_labels_from_hf_config(hf_config: dict) -> Optional[int]:
    if hf_config.get("id2label"):
        return len(hf_config["id2label"])
    if hf_config.get("num_labels"):
        return int(hf_config["num_labels"])
    return None


class DebertaLargeModel(nn.Module):
    """DeBERTa encoder + pooled single-logit head (caption selection). See the module docstring."""

    def __init__(self, num_outputs: int = 1, pooling: str = "mean", **config_kwargs: Any):
        super().__init__()
        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {pooling!r}")
        self.pooling = pooling
        self.config = deberta_config(**config_kwargs)
        self.model = DebertaV2Model(self.config)
        self.fc = nn.Linear(self.config.hidden_size, num_outputs)

    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict) -> dict:
        return architecture_from_hf_config(hf_config)

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        kwargs = dict(kwargs)
        width = kwargs.pop("num_outputs", 1)
        kwargs.pop("pooling", None)
        return io_values(deberta_config(**kwargs), width, inputs=3)

    def adapt_state_dict(self, state_dict: dict) -> dict:
        return drop_unused_extras(state_dict, self.state_dict().keys())

    def forward(
        self,
        input_ids: torch.Tensor,
        input_mask: torch.Tensor,
        input_token_type_ids: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        mask = input_mask.to(torch.long)
        token_type_ids = None
        if self.config.type_vocab_size > 0 and input_token_type_ids is not None:
            token_type_ids = input_token_type_ids.to(torch.long)
        hidden = self.model(
            input_ids=input_ids, attention_mask=mask, token_type_ids=token_type_ids
        ).last_hidden_state
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        return self.fc(pooled)


class DebertaSequenceClassifier(nn.Module):
    """Hugging Face DebertaV2ForSequenceClassification's network, returning logits only."""

    def __init__(self, num_labels: int = 2, **config_kwargs: Any):
        super().__init__()
        self.config = deberta_config(num_labels=num_labels, **config_kwargs)
        self.deberta = DebertaV2Model(self.config)
        self.pooler = ContextPooler(self.config)
        self.classifier = nn.Linear(self.pooler.output_dim, num_labels)

    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict) -> dict:
        kwargs = architecture_from_hf_config(hf_config)
        num_labels = num_labels_from_hf_config(hf_config)
        if num_labels is not None:
            kwargs["num_labels"] = num_labels
        return kwargs

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        config = deberta_config(**kwargs)
        return io_values(config, config.num_labels, inputs=2)

    def adapt_state_dict(self, state_dict: dict) -> dict:
        return drop_unused_extras(state_dict, self.state_dict().keys(), drop_pooler=False)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.deberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(self.pooler(hidden))
