"""Triton BLS model: text-line image -> TrOCR encoder -> greedy decoder loop -> string.

Written into `<repo>/<pipeline>/1/model.py` by `trt_converters.pipelines.trocr`; its config
parameter `pipeline_options` (JSON) names both core models, their tensors, the special tokens
and the vocabulary (or a tokenizer.json beside this file).
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from trt_converters.pipelines.crnn import images_from_inputs
from trt_converters.pipelines.trocr import preprocess_images, tokens_to_text
from trt_converters.vision.ocr_decoding import greedy_decode


def _optional_input(request, name):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def _call(model_name, inputs, output_name):
    response = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=[output_name],
        inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
    ).exec()
    if response.has_error():
        raise ValueError(f"model {model_name}: {response.error().message()}")
    return pb_utils.get_output_tensor_by_name(response, output_name).as_numpy()


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.options = json.loads(config["parameters"]["pipeline_options"]["string_value"])
        self.tokenizer = None
        if self.options.get("tokenizer_file"):
            from tokenizers import Tokenizer

            folder = os.path.join(args["model_repository"], args["model_version"])
            self.tokenizer = Tokenizer.from_file(os.path.join(folder, self.options["tokenizer_file"]))

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
        o = self.options
        images = images_from_inputs(_optional_input(request, "image"), _optional_input(request, "image_raw"),
                                    channel_order="RGB")
        pixel_values = preprocess_images(images, o)

        def encode(batch):
            return _call(o["encoder_model_name"], {o["encoder_input_name"]: batch}, o["encoder_output_name"])

        def decode(ids, hidden):
            inputs = {o["ids_input_name"]: ids.astype(o["ids_dtype"]), o["hidden_input_name"]: hidden}
            return _call(o["decoder_model_name"], inputs, o["logits_name"])

        rows = greedy_decode(encode, decode, pixel_values, start_token_id=o["start_token_id"],
                             eos_token_id=o["eos_token_id"], max_length=o["max_length"], pad_token_id=o["pad_token_id"])
        return tokens_to_text(rows, o, self.tokenizer)
