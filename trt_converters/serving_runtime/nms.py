"""YOLOX post-processing in numpy: score filter, class-aware NMS, top-k, undo the letterbox.

Standalone (numpy only) so it can be copied beside a Triton python-backend model.
Follows official YOLOX `postprocess`: each anchor keeps its best class, score = objectness *
class score, boxes are suppressed per class. IoU uses areas without the legacy "+1".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Detections:
    boxes: np.ndarray  # float32 [K, 4] x1, y1, x2, y2 in original-image pixels
    scores: np.ndarray  # float32 [K], highest first
    classes: np.ndarray  # int32 [K]

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    cx, cy, w, h = boxes[:, 0], boxes[:, 1], boxes[:, 2], boxes[:, 3]
    return np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), axis=1)


def box_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one xyxy box [4] against boxes [N, 4]."""
    x1 = np.maximum(box[0], others[:, 0])
    y1 = np.maximum(box[1], others[:, 1])
    x2 = np.minimum(box[2], others[:, 2])
    y2 = np.minimum(box[3], others[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area = max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
    areas = np.clip(others[:, 2] - others[:, 0], 0, None) * np.clip(others[:, 3] - others[:, 1], 0, None)
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, highest score first (ties keep input order)."""
    order = np.argsort(-scores, kind="stable")
    keep = []
    limit = len(order) if max_keep is None else max_keep
    while order.size and len(keep) < limit:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(boxes[best], boxes[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def batched_nms(boxes, scores, classes, iou_threshold: float, max_keep: int | None = None) -> np.ndarray:
    """Class-aware NMS: boxes of different classes never suppress each other."""
    if boxes.shape[0] == 0:
        return np.zeros((0,), dtype=np.int64)
    # Shift each class into its own region so one greedy pass acts per class.
    boxes = boxes.astype(np.float64)
    span = float(np.max(boxes) - np.min(boxes)) + 1.0
    shifted = boxes - np.min(boxes) + classes.astype(np.float64)[:, None] * span
    return nms(shifted, scores, iou_threshold, max_keep)


def postprocess(
    predictions: np.ndarray,
    ratio: float = 1.0,
    *,
    score_threshold: float = 0.3,
    iou_threshold: float = 0.45,
    max_detections: int = 100,
    image_hw: tuple[int, int] | None = None,
    class_agnostic: bool = False,
) -> Detections:
    """One image's decoded YOLOX output [N, 5 + C] -> detections in original-image pixels.

    `ratio` is the letterbox scale; `image_hw` (original size), when given, clips the boxes.
    """
    predictions = np.asarray(predictions, dtype=np.float32)
    if predictions.ndim != 2 or predictions.shape[1] < 6:
        raise ValueError(f"expected predictions [N, 5 + num_classes], got shape {list(predictions.shape)}")
    if ratio <= 0:
        raise ValueError(f"letterbox ratio must be positive, got {ratio}")
    class_scores = predictions[:, 5:]
    classes = np.argmax(class_scores, axis=1).astype(np.int32)
    scores = predictions[:, 4] * class_scores[np.arange(len(classes)), classes]
    mask = scores >= score_threshold
    boxes = cxcywh_to_xyxy(predictions[mask, :4])
    scores, classes = scores[mask], classes[mask]
    if class_agnostic:
        keep = nms(boxes, scores, iou_threshold, max_detections)
    else:
        keep = batched_nms(boxes, scores, classes, iou_threshold, max_detections)
    boxes = boxes[keep] / np.float32(ratio)
    if image_hw is not None:
        boxes[:, 0::2] = np.clip(boxes[:, 0::2], 0, image_hw[1])
        boxes[:, 1::2] = np.clip(boxes[:, 1::2], 0, image_hw[0])
    return Detections(boxes.astype(np.float32), scores[keep].astype(np.float32), classes[keep].astype(np.int32))


def pad_detections(batch: list[Detections]):
    """Per-image detections -> (boxes [B, K, 4], scores [B, K], classes [B, K], counts [B]), K = max count.

    Padding rows are zeros with class -1.
    """
    width = max((len(d) for d in batch), default=0)
    boxes = np.zeros((len(batch), width, 4), dtype=np.float32)
    scores = np.zeros((len(batch), width), dtype=np.float32)
    classes = np.full((len(batch), width), -1, dtype=np.int32)
    for i, det in enumerate(batch):
        boxes[i, : len(det)] = det.boxes
        scores[i, : len(det)] = det.scores
        classes[i, : len(det)] = det.classes
    counts = np.asarray([len(d) for d in batch], dtype=np.int32)
    return boxes, scores, classes, counts
