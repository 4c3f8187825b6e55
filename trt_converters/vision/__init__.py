"""Image helpers shared by the vision pipelines (YOLOX detection, OCR).

- `images`: decode encoded bytes / validate raw uint8 HWC arrays, raising `InvalidImageError`.
- `letterbox`: YOLOX letterbox resize + pad, and the float32 CHW model input.
- `nms`: YOLOX post-processing (score filter, class-aware NMS, top-k, undo the letterbox).

Each of those modules imports only numpy (and PIL lazily), never other `trt_converters` modules,
so pipeline writers can copy them beside a Triton python-backend `model.py`.
"""
