"""Hugging Face `*ForSequenceClassification` folders for trt-convert, without a hand-written script.

A folder as `save_pretrained` writes it (config.json, model.safetensors or pytorch_model.bin, tokenizer
files) converts with configs/hf_sequence_classification.yaml:

    trt-convert --config configs/hf_sequence_classification.yaml --ckpt-path FOLDER/model.safetensors \
        --generate-onnx --generate-triton-config --triton-repo REPO

`HFSequenceClassifier` builds the folder's architecture offline from its config.json with transformers'
`AutoModelForSequenceClassification.from_config` (eager attention, dropout off) and holds that model's
modules as its own, so the checkpoint loads with the keys as saved (`bert.*`, `roberta.*`, `deberta.*`,
`distilbert.*`, `electra.*`, `classifier.*`, ...). Architectures: BERT, RoBERTa, XLM-R, DeBERTa-v2/v3,
DistilBERT, ELECTRA (config.json `model_type`).
Inputs, in order: `input_ids` int64 [seq], `attention_mask` int64 [seq] (token types are all 0 for one
sentence, transformers' default). Output: `logits` float32 [num_labels].
`hf_config_to_kwargs` hands the config.json to the constructor; labels (id2label) go to the classifier
pipeline from the same file.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

try:
    from trt_converters.serving_runtime.checkpoint_keys import drop_unused_extras
except ImportError:  # served by the PyTorch baseline: the runtime is copied beside this script
    from serving_runtime.checkpoint_keys import drop_unused_extras

SUPPORTED_MODEL_TYPES = ("bert", "roberta", "xlm-roberta", "deberta-v2", "distilbert", "electra")
# config.json fields that describe the saved file, not the network
NOT_ARCHITECTURE = ("model_type", "architectures", "transformers_version", "_name_or_path", "torch_dtype", "dtype")
DROPOUT_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout", "pooler_dropout",
                  "dropout", "attention_dropout", "seq_classif_dropout")


def hf_config_object(hf_config: dict):
    """The transformers config of a config.json mapping, dropout off."""
    from transformers import AutoConfig

    model_type = hf_config.get("model_type")
    if model_type not in SUPPORTED_MODEL_TYPES:
        raise ValueError(f"config.json model_type {model_type!r} is not one of {', '.join(SUPPORTED_MODEL_TYPES)}; "
                         "write a model script for it (see model_scripts/)")
    fields = {k: v for k, v in hf_config.items() if k not in NOT_ARCHITECTURE}
    config = AutoConfig.for_model(model_type, **fields)
    for name in DROPOUT_FIELDS:
        if getattr(config, name, None) is not None:
            setattr(config, name, 0.0)
    return config


def position_limit(config) -> Optional[int]:
    """The longest sequence the position embeddings hold (RoBERTa-style positions start after the pad id)."""
    if config.model_type == "deberta-v2" and not getattr(config, "position_biased_input", True):
        return None  # relative positions only
    limit = getattr(config, "max_position_embeddings", None)
    if limit and config.model_type in ("roberta", "xlm-roberta"):
        limit -= config.pad_token_id + 1
    return limit


class HFSequenceClassifier(nn.Module):
    """The folder's `*ForSequenceClassification` network returning logits. See the module docstring."""

    def __init__(self, hf_config: Optional[dict] = None):
        super().__init__()
        if not hf_config:
            raise ValueError("needs the folder's config.json beside --ckpt-path (save_pretrained writes it)")
        from transformers import AutoModelForSequenceClassification

        config = hf_config_object(hf_config)
        model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager").eval()
        for name, child in model.named_children():  # the HF model's modules under its own key names
            self.add_module(name, child)
        object.__setattr__(self, "_classifier", model)  # not registered: its modules are the ones above
        self.config = model.config

    @classmethod
    def hf_config_to_kwargs(cls, hf_config: dict) -> dict:
        return {"hf_config": dict(hf_config)}

    @classmethod
    def io_from_kwargs(cls, kwargs: dict) -> dict:
        if not kwargs.get("hf_config"):
            return {}  # no config.json: the constructor says so
        config = hf_config_object(kwargs["hf_config"])
        return {"value_ranges": [[0, config.vocab_size], None], "max_sequence_length": position_limit(config),
                "output_widths": [config.num_labels]}

    def adapt_state_dict(self, state_dict: dict) -> dict:
        return drop_unused_extras(state_dict, self.state_dict().keys())

    def train(self, mode: bool = True):
        super().train(mode)
        self._classifier.training = mode
        return self

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self._classifier(input_ids=input_ids, attention_mask=attention_mask, return_dict=True).logits
