"""The seeds' way (seeds 000/001), for benchmarks/cpu_e2e.py: one Triton python-backend model holding a
Hugging Face tokenizer and the PyTorch model, each request tokenized on its own (padding=True,
truncation, max_length 512) and run through the model one request at a time, as the seeds' model.py
files do. Files: `<version>/hf_model/` (save_pretrained of the model and its tokenizer).
Input `text` (TYPE_STRING [1]); outputs `label` (TYPE_STRING [1]) and `probabilities` (FP32 [num_labels]).
"""

import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        folder = os.path.join(args["model_repository"], args["model_version"], "hf_model")
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        self.model = AutoModelForSequenceClassification.from_pretrained(folder)
        self.model.eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def execute(self, requests):
        responses = []
        for request in requests:
            texts = [t.decode("utf-8") if isinstance(t, bytes) else str(t)
                     for t in pb_utils.get_input_tensor_by_name(request, "text").as_numpy().reshape(-1)]
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, truncation=True, max_length=512)
            with self.torch.no_grad():
                logits = self.model(**encoded).logits
            probabilities = self.torch.softmax(logits, dim=-1).numpy().astype(np.float32)
            labels = np.array([[self.labels[i].encode()] for i in probabilities.argmax(axis=-1)], dtype=np.object_)
            responses.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("label", labels), pb_utils.Tensor("probabilities", probabilities)]))
        return responses
