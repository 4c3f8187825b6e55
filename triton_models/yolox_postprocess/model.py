"""YOLOX postprocessing (Triton python backend): decoded detections -> boxes in original pixels.

Inputs:  <detections_name> TYPE_FP32 [B, anchors, 5 + classes] (cx, cy, w, h, objectness, class scores)
         letterbox_info    TYPE_FP32 [B, 3] (ratio, original height, original width)
Outputs: boxes [B, K, 4] (x1, y1, x2, y2), scores [B, K], classes [B, K] (int32), num_detections [B, 1],
         labels [B, K] (only with a class_names.json); K is the largest count in the request, shorter
         rows are padded with zeros / class -1 / empty label.
Score = objectness * best class score; class-aware NMS (or class-agnostic), top max_detections.
NMS comes from the serving runtime copied beside this file.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime import nms as yolox_nms  # noqa: E402
from serving_runtime.triton_io import exception_response, parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy",)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.detections_name = parameter(config, "detections_name", "detections")
        self.score_threshold = float(parameter(config, "score_threshold", 0.3))
        self.iou_threshold = float(parameter(config, "iou_threshold", 0.45))
        self.max_detections = int(parameter(config, "max_detections", 100))
        self.class_agnostic = parameter(config, "class_agnostic", "false") == "true"
        self.class_names = None
        names_file = parameter(config, "class_names_file")
        if names_file:
            path = os.path.join(os.path.dirname(os.path.abspath(__file__)), names_file)
            with open(path) as handle:
                self.class_names = json.load(handle)

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._postprocess(request)))
            except Exception as exc:  # a fault: the preprocess step has checked the client's input
                responses.append(exception_response(exc, "postprocess: "))
        return responses

    def _postprocess(self, request):
        predictions = pb_utils.get_input_tensor_by_name(request, self.detections_name).as_numpy()
        info = pb_utils.get_input_tensor_by_name(request, "letterbox_info").as_numpy()
        batch = []
        for prediction, (ratio, height, width) in zip(predictions, info):
            batch.append(yolox_nms.postprocess(
                prediction, float(ratio), score_threshold=self.score_threshold, iou_threshold=self.iou_threshold,
                max_detections=self.max_detections, image_hw=(float(height), float(width)),
                class_agnostic=self.class_agnostic))
        boxes, scores, classes, counts = yolox_nms.pad_detections(batch)
        outputs = [pb_utils.Tensor("boxes", boxes), pb_utils.Tensor("scores", scores),
                   pb_utils.Tensor("classes", classes), pb_utils.Tensor("num_detections", counts[:, None])]
        if self.class_names is not None:
            labels = np.array([[self.class_names[c].encode() if c >= 0 else b"" for c in row] for row in classes],
                              dtype=np.object_).reshape(classes.shape)
            outputs.append(pb_utils.Tensor("labels", labels))
        return outputs
