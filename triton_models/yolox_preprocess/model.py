"""YOLOX preprocessing (Triton python backend): image bytes or raw uint8 HWC -> letterboxed model input.

Inputs (give exactly one per request):
    image      TYPE_STRING [B, 1]        encoded JPEG/PNG/BMP/WebP bytes
    image_raw  TYPE_UINT8  [B, H, W, 3]  raw pixels in the model's channel order (BGR for official YOLOX)
Outputs:
    <input_name>    TYPE_FP32 [B, 3, H, W]  letterboxed (pad 114), 0..255, channel order from the config
    letterbox_info  TYPE_FP32 [B, 3]        ratio, original height, original width
A request with a bad image gets an INVALID_ARG error (HTTP 400) naming the image; other requests are answered.
Image decoding and the letterbox come from the serving runtime copied beside this file.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime import images as yolox_images, letterbox as yolox_letterbox  # noqa: E402
from serving_runtime.triton_io import RequestError, exception_response, parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "pillow")


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.target_hw = (int(parameter(config, "input_height")), int(parameter(config, "input_width")))
        self.channel_order = parameter(config, "channel_order", "BGR")
        self.pad_value = int(parameter(config, "pad_value", 114))
        self.input_name = parameter(config, "input_name", "images")

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensor, info = self._preprocess(request)
                responses.append(pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor(self.input_name, tensor), pb_utils.Tensor("letterbox_info", info)]))
            except Exception as exc:  # RequestError: the client's mistake (HTTP 400); others: 500
                responses.append(exception_response(exc))
        return responses

    def _preprocess(self, request):
        images = self._images(request)
        tensors, infos = [], []
        for image in images:
            padded, ratio = yolox_letterbox.letterbox(image, self.target_hw, self.pad_value)
            tensors.append(yolox_letterbox.to_model_input(padded))
            infos.append((ratio, image.shape[0], image.shape[1]))
        return np.stack(tensors), np.asarray(infos, dtype=np.float32)

    def _images(self, request):
        encoded = pb_utils.get_input_tensor_by_name(request, "image")
        raw = pb_utils.get_input_tensor_by_name(request, "image_raw")
        if (encoded is None) == (raw is None):
            raise RequestError("send exactly one of 'image' (encoded bytes, TYPE_STRING [batch, 1]) or "
                               "'image_raw' (uint8 [batch, height, width, 3])")
        if encoded is not None:
            items = encoded.as_numpy().reshape(-1) if encoded.as_numpy().size else []
            decode = lambda item: yolox_images.decode_image(item, channel_order=self.channel_order)
        else:
            array = raw.as_numpy()
            items = list(array) if array.ndim == 4 else [array]
            decode = lambda item: yolox_images.validate_hwc_image(item, channel_order="RGB")
        if len(items) == 0:
            raise RequestError("empty batch: the request holds no image; send at least one")
        images = []
        for index, item in enumerate(items):
            try:
                images.append(decode(item))
            except yolox_images.InvalidImageError as exc:
                raise RequestError(f"image {index}: {exc}") from None
        return images
