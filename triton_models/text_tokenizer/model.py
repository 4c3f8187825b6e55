"""Triton python-backend tokenizer: `text` (TYPE_STRING, [batch, 1]) -> the core model's token inputs.

Files: `<version>/tokenizer/` (saved with save_pretrained). Config parameters (string values):
  text_input   name of the string input (default "text")
  roles        JSON {output name: "input_ids" | "attention_mask" | "token_type_ids"}
  max_length   truncate to this many tokens
  padding      "max_length" (pad every row to max_length: fixed-length core models) or
               "longest" (pad to the longest text of this execute() call)
  length_buckets  JSON list of lengths, with padding "longest": pad to the smallest bucket that holds
               the longest text instead (capped at max_length), so that requests tokenized in different
               calls share a shape and the server can batch them in the core model
  prefix       prepended to every text (E5's "query: " / "passage: ")
Each output is cast to the data type its config entry declares (e.g. float masks for DeBERTa).
All texts of one execute() call are tokenized together, so requests batched by the server share
one padded length and the core model can run them as one batch.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime import triton_io  # noqa: E402
from serving_runtime.hf_tokenizer import initialize_text_model  # noqa: E402
from serving_runtime.triton_io import parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "tokenizers", "transformers")


class TritonPythonModel:
    def initialize(self, args):
        config, self.model_name, _, self.tokenizer = initialize_text_model(args)
        self.text_input = parameter(config, "text_input", "text")
        self.max_length = int(parameter(config, "max_length", "512"))
        self.padding = parameter(config, "padding", "longest")
        if self.padding not in ("longest", "max_length"):
            raise pb_utils.TritonModelException(f"{self.model_name}: padding must be 'longest' or 'max_length'")
        self.prefix = parameter(config, "prefix", "")
        buckets = json.loads(parameter(config, "length_buckets", "[]"))
        if not isinstance(buckets, list) or not all(isinstance(b, int) and b > 0 for b in buckets):
            raise pb_utils.TritonModelException(f"{self.model_name}: length_buckets must be a JSON list of positive ints")
        self.buckets = sorted(set(min(b, self.max_length) for b in buckets))
        roles = json.loads(parameter(config, "roles", "{}"))
        self.outputs = []
        for entry in config.get("output", []):
            role = roles.get(entry["name"])
            if role not in ("input_ids", "attention_mask", "token_type_ids"):
                raise pb_utils.TritonModelException(f"{self.model_name}: output {entry['name']!r} has no role")
            self.outputs.append((entry["name"], role, pb_utils.triton_string_to_numpy(entry["data_type"])))

    def _encode(self, texts):
        encoding = self.tokenizer(
            [self.prefix + text for text in texts],
            padding=self.padding,
            truncation=True,
            max_length=self.max_length,
            return_attention_mask=True,
            return_tensors="np",
        )
        ids = encoding["input_ids"]
        fields = {
            "input_ids": ids,
            "attention_mask": encoding["attention_mask"],
            "token_type_ids": encoding.get("token_type_ids", np.zeros_like(ids)),
        }
        if self.padding == "longest" and self.buckets:
            fields = self._pad_to_bucket(fields)
        return fields

    def _pad_to_bucket(self, fields):
        width = fields["input_ids"].shape[1]
        bucket = next((b for b in self.buckets if b >= width), width)
        if bucket == width:
            return fields
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        extra = [(0, 0), (bucket - width, 0)] if self.tokenizer.padding_side == "left" else [(0, 0), (0, bucket - width)]
        return {"input_ids": np.pad(fields["input_ids"], extra, constant_values=pad_id),
                "attention_mask": np.pad(fields["attention_mask"], extra, constant_values=0),
                "token_type_ids": np.pad(fields["token_type_ids"], extra, constant_values=0)}

    def execute(self, requests):
        responses, texts, owners = triton_io.gather_texts(requests, self.text_input, self.model_name)
        if texts:
            fields = self._encode(texts)
            for index, start, shape in owners:
                count = int(np.prod(shape))
                tensors = [pb_utils.Tensor(name, np.ascontiguousarray(fields[role][start:start + count]).astype(dtype))
                           for name, role, dtype in self.outputs]
                responses[index] = pb_utils.InferenceResponse(output_tensors=tensors)
        return responses
