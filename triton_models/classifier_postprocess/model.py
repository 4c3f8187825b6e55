"""Triton python-backend classifier head: logits -> `label`, `score`, `probabilities`.

Config parameters (string values):
  logits_input  name of the logits input (FP32 [num_logits])
  labels        JSON list of label names by index
  activation    "softmax" (one label per text) or "sigmoid" (independent labels; one-logit heads)
  top_k         how many labels (best first) each row returns in `label` and `score`
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime.triton_io import exception_response, model_arguments, parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy",)


class TritonPythonModel:
    def initialize(self, args):
        config, self.model_name, _ = model_arguments(args)
        self.logits_input = parameter(config, "logits_input", "logits")
        self.labels = json.loads(parameter(config, "labels", "[]"))
        self.activation = parameter(config, "activation", "softmax")
        self.top_k = int(parameter(config, "top_k", "1"))
        if self.activation not in ("softmax", "sigmoid"):
            raise pb_utils.TritonModelException(f"{self.model_name}: activation must be softmax or sigmoid")

    def _probabilities(self, logits):
        logits = logits.astype(np.float64)
        if self.activation == "sigmoid":
            return 1.0 / (1.0 + np.exp(-logits))
        shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return shifted / shifted.sum(axis=-1, keepdims=True)

    def _answer(self, request):
        tensor = pb_utils.get_input_tensor_by_name(request, self.logits_input)
        if tensor is None:
            raise ValueError(f"missing input {self.logits_input!r}")
        logits = tensor.as_numpy()
        logits = logits.reshape(logits.shape[0], -1)
        if logits.shape[1] != len(self.labels):
            raise ValueError(f"got {logits.shape[1]} logits for {len(self.labels)} labels")
        probabilities = self._probabilities(logits)
        order = np.argsort(-probabilities, axis=-1, kind="stable")[:, : self.top_k]
        names = np.array([[self.labels[i].encode("utf-8") for i in row] for row in order], dtype=np.object_)
        scores = np.take_along_axis(probabilities, order, axis=-1)
        return pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("label", names),
            pb_utils.Tensor("score", scores.astype(np.float32)),
            pb_utils.Tensor("probabilities", probabilities.astype(np.float32)),
        ])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(self._answer(request))
            except Exception as exc:  # answer this request with its error, keep serving the others
                responses.append(exception_response(exc, f"{self.model_name}: "))
        return responses
