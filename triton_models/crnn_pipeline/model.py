"""Triton BLS model: text-line image -> CRNN core model -> greedy CTC -> string.

Written into `<repo>/<pipeline>/1/model.py` by `trt_converters.pipelines.crnn`; its config
parameter `pipeline_options` (JSON) names the core model, its tensors and the charset.
"""
import json

import numpy as np
import triton_python_backend_utils as pb_utils

from trt_converters.pipelines.crnn import core_batches, images_from_inputs
from trt_converters.vision.ctc import ctc_greedy_decode


def _optional_input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.options = json.loads(config["parameters"]["pipeline_options"]["string_value"])
        self.channel_order = "GRAY" if self.options["channels"] == 1 else "RGB"

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                texts = self._recognize(request)
                out = pb_utils.Tensor("text", np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
                responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
            except ValueError as exc:  # bad image from the client, or a core-model failure
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def _recognize(self, request):
        images = images_from_inputs(
            _optional_input(request, "image"), _optional_input(request, "image_raw"), channel_order=self.channel_order
        )
        texts = []
        for batch, steps in core_batches(images, self.options):
            texts += ctc_greedy_decode(self._logits(batch), self.options["labels"],
                                       blank_index=self.options["blank_index"], lengths=steps)
        return texts

    def _logits(self, batch):
        core = pb_utils.InferenceRequest(
            model_name=self.options["core_model_name"],
            requested_output_names=[self.options["output_name"]],
            inputs=[pb_utils.Tensor(self.options["input_name"], batch)],
        ).exec()
        if core.has_error():
            raise ValueError(f"core model {self.options['core_model_name']}: {core.error().message()}")
        return pb_utils.get_output_tensor_by_name(core, self.options["output_name"]).as_numpy()
