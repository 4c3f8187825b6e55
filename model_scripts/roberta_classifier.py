"""RoBERTa sequence classifier for trt-convert.

`RobertaClassifier` is the network of Hugging Face `RobertaForSequenceClassification`, built
offline from keyword arguments (defaults: roberta-base), so its checkpoints load as saved:
    roberta.*                 RobertaModel encoder without pooler
    classifier.dense.*        Linear(hidden, hidden) on the <s> token, tanh
    classifier.out_proj.*     Linear(hidden, num_labels)
Inputs, in order: `input_ids` int64 [seq], `attention_mask` int64 [seq].
Output: `logits` float32 [num_labels].
`hf_config_to_kwargs` reads config.json beside the checkpoint (num_labels from id2label), e.g.
cardiffnlp/twitter-roberta-base-emotion (anger, joy, optimism, sadness).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import RobertaConfig, RobertaModel
from transformers.models.roberta.modeling_roberta import RobertaClassificationHead

try:
    from trt_converters.serving_runtime.checkpoint_keys import drop_unused_extras
except ImportError:  # served by the PyTorch baseline: the runtime is copied beside this script
    from serving_runtime.checkpoint_keys import drop_unused_extras

ROBERTA_BASE = dict(
    vocab_size=50265,
    hidden_size=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    intermediate_size=3072,
    hidden_act="gelu",
    max_position_embeddings=514,
    type_vocab_size=1,
    layer_norm_eps=1e-5,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
ARCHITECTURE_KEYS = tuple(ROBERTA_BASE)


def roberta_config(**kwargs: Any) -> RobertaConfig:
    """A RobertaConfig with roberta-base defaults and dropout off (inference only)."""
    fields = {**ROBERTA_BASE, **kwargs}
    fields.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, classifier_dropout=0.0)
    return RobertaConfig(**fields)


class RobertaClassifier(nn.Module):
    """RobertaForSequenceClassification's network returning logits only."""

    def __init__(self, num_labels: int = 2, **config_kwargs: Any):
        super().__init__()
        self.config = roberta_config(num_labels=num_labels, **config_kwargs)
        self.roberta = RobertaModel(self.config, add_pooling_layer=False)
        self.classifier = RobertaClassificationHead(self.config)

    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict) -> dict:
        kwargs = {key: hf_config[key] for key in ARCHITECTURE_KEYS if key in hf_config}
        if hf_config.get("id2label"):
            kwargs["num_labels"] = len(hf_config["id2label"])
        elif hf_config.get("num_labels"):
            kwargs["num_labels"] = int(hf_config["num_labels"])
        return kwargs

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        """Token ids < vocab_size; positions start after the padding id; one logit per label."""
        config = roberta_config(**kwargs)
        return {"value_ranges": [[0, config.vocab_size], None],
                "max_sequence_length": config.max_position_embeddings - config.pad_token_id - 1,
                "output_widths": [config.num_labels]}

    def adapt_state_dict(self, state_dict: dict) -> dict:
        return drop_unused_extras(state_dict, self.state_dict().keys())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.roberta(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.classifier(hidden)
