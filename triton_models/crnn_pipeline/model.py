"""Triton BLS model: text-line image -> CRNN core model -> greedy CTC -> string.

Written into `<repo>/<pipeline>/1/model.py` by `trt_converters.pipelines.crnn`; its config
parameter `pipeline_options` (JSON) names the core model, its tensors and the charset. Uses the
serving runtime copied beside this file (`serving_runtime/`).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime.ctc import ctc_greedy_decode  # noqa: E402
from serving_runtime.ocr_preprocess import core_batches, images_from_inputs  # noqa: E402
from serving_runtime.triton_io import call_model, optional_input, text_responses  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "pillow")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.options = json.loads(config["parameters"]["pipeline_options"]["string_value"])
        self.channel_order = "GRAY" if self.options["channels"] == 1 else "RGB"

    def execute(self, requests):
        return text_responses(requests, self._recognize)

    def _recognize(self, request):
        images = images_from_inputs(
            optional_input(request, "image"), optional_input(request, "image_raw"), channel_order=self.channel_order
        )
        texts = []
        for batch, steps in core_batches(images, self.options):
            texts += ctc_greedy_decode(self._logits(batch), self.options["labels"],
                                       blank_index=self.options["blank_index"], lengths=steps)
        return texts

    def _logits(self, batch):
        o = self.options
        return call_model(o["core_model_name"], {o["input_name"]: batch}, o["output_name"])
