"""Triton BLS model: text-line image -> TrOCR encoder -> greedy decoder loop -> string.

Written into `<repo>/<pipeline>/1/model.py` by `trt_converters.pipelines.trocr`; its config
parameter `pipeline_options` (JSON) names both core models, their tensors, the special tokens
and the vocabulary (or a tokenizer.json beside this file). Uses the serving runtime copied
beside this file (`serving_runtime/`).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime.ocr_decoding import greedy_decode  # noqa: E402
from serving_runtime.ocr_preprocess import images_from_inputs, preprocess_images, tokens_to_text  # noqa: E402
from serving_runtime.triton_io import call_model, model_arguments, optional_input, text_responses  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "pillow", "tokenizers")


class TritonPythonModel:
    def initialize(self, args):
        config, _, folder = model_arguments(args)
        self.options = json.loads(config["parameters"]["pipeline_options"]["string_value"])
        self.tokenizer = None
        if self.options.get("tokenizer_file"):
            from tokenizers import Tokenizer

            self.tokenizer = Tokenizer.from_file(os.path.join(folder, self.options["tokenizer_file"]))

    def execute(self, requests):
        return text_responses(requests, self._recognize)

    def _recognize(self, request):
        o = self.options
        images = images_from_inputs(optional_input(request, "image"), optional_input(request, "image_raw"),
                                    channel_order="RGB")
        pixel_values = preprocess_images(images, o)

        def encode(batch):
            return call_model(o["encoder_model_name"], {o["encoder_input_name"]: batch}, o["encoder_output_name"])

        def decode(ids, hidden):
            inputs = {o["ids_input_name"]: ids.astype(o["ids_dtype"]), o["hidden_input_name"]: hidden}
            return call_model(o["decoder_model_name"], inputs, o["logits_name"])

        rows = greedy_decode(encode, decode, pixel_values, start_token_id=o["start_token_id"],
                             eos_token_id=o["eos_token_id"], max_length=o["max_length"], pad_token_id=o["pad_token_id"])
        return tokens_to_text(rows, o, self.tokenizer)
