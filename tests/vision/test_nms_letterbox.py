"""Hand-computed cases for the YOLOX letterbox, image decoding and NMS helpers."""

import io

import numpy as np
import pytest

from trt_converters.serving_runtime import images, letterbox, nms


# ---------------------------------------------------------------- letterbox
def test_ratio_fits_the_longer_side():
    assert letterbox.letterbox_ratio((100, 200), (64, 64)) == pytest.approx(0.32)
    assert letterbox.letterbox_ratio((50, 25), (128, 128)) == pytest.approx(2.56)


def test_bilinear_upscale_uses_half_pixel_centres():
    row = np.array([[[0], [100]]], dtype=np.uint8)  # 1x2, one channel
    out = letterbox.resize_bilinear(row, (1, 4))
    # source x = (i + 0.5) * 0.5 - 0.5 -> -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
    assert out[0, :, 0].tolist() == [0, 25, 75, 100]


def test_bilinear_halving_averages_pairs():
    image = np.array([[10, 20, 30, 50]], dtype=np.uint8)[:, :, None].repeat(2, axis=0)
    out = letterbox.resize_bilinear(image, (1, 2))
    assert out[0, :, 0].tolist() == [15, 40]


def test_letterbox_pads_bottom_right_with_114():
    image = np.full((100, 200, 3), 7, dtype=np.uint8)
    padded, ratio = letterbox.letterbox(image, (64, 64))
    assert ratio == pytest.approx(0.32)
    assert padded.shape == (64, 64, 3) and padded.dtype == np.uint8
    assert (padded[:32] == 7).all()  # int(100 * 0.32) = 32 rows of image
    assert (padded[32:] == 114).all()


def test_letterbox_batch_gives_float_chw_in_0_255():
    a = np.zeros((20, 10, 3), dtype=np.uint8)
    a[..., 0] = 255
    tensor, ratios = letterbox.letterbox_batch([a, np.zeros((64, 64, 3), np.uint8)], (32, 32))
    assert tensor.shape == (2, 3, 32, 32) and tensor.dtype == np.float32
    assert ratios.tolist() == pytest.approx([1.6, 0.5])
    assert tensor[0, 0, 0, 0] == 255.0 and tensor[0, 1, 0, 0] == 0.0
    assert tensor[0, 0, 0, 31] == 114.0  # int(10 * 1.6) = 16 columns of image, then padding


def test_letterbox_batch_rejects_empty():
    with pytest.raises(ValueError, match="at least one image"):
        letterbox.letterbox_batch([], (32, 32))


# ---------------------------------------------------------------- images
def _encode(array, fmt="PNG", mode=None):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array, mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def test_decode_png_in_rgb_and_bgr_order():
    rgb = np.zeros((4, 5, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 2] = 200, 10
    data = _encode(rgb)
    assert images.decode_image(data).tolist() == rgb.tolist()
    bgr = images.decode_image(data, channel_order="BGR")
    assert bgr.shape == (4, 5, 3) and bgr[0, 0].tolist() == [10, 0, 200]


def test_decode_grayscale_expands_to_three_channels():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = images.decode_image(_encode(gray))
    assert out.shape == (3, 4, 3) and (out[..., 1] == gray).all()
    assert images.decode_image(_encode(gray), channel_order="GRAY").shape == (3, 4, 1)


def test_alpha_palette_and_16_bit_images_read_as_opencv_reads_them():
    from PIL import Image

    rgba = np.full((3, 3, 4), 9, dtype=np.uint8)
    rgba[..., 3] = 0  # fully transparent: the colour is kept, as cv2.imread's IMREAD_COLOR keeps it
    assert images.decode_image(_encode(rgba)).tolist() == np.full((3, 3, 3), 9).tolist()
    assert images.decode_image(_encode(rgba), channel_order="BGR").shape == (3, 3, 3)
    gray16 = (np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000)
    buffer = io.BytesIO()
    Image.fromarray(gray16).save(buffer, "PNG")
    decoded = images.decode_image(buffer.getvalue())
    assert decoded.shape == (3, 4, 3) and (decoded[..., 0] == gray16 >> 8).all()  # high byte, not clipped
    palette = Image.fromarray(np.full((2, 2, 3), 255, dtype=np.uint8)).convert("P")
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    assert images.decode_image(buffer.getvalue()).tolist() == np.full((2, 2, 3), 255).tolist()


def test_image_rejections_are_the_clients_mistakes():
    from trt_converters.serving_runtime.triton_io import RequestError

    assert issubclass(images.InvalidImageError, RequestError)


@pytest.mark.parametrize("data, message", [
    (b"", "empty image"),
    (b"definitely not an image", "no known image format"),
])
def test_decode_rejects_garbage(data, message):
    with pytest.raises(images.InvalidImageError, match=message):
        images.decode_image(data)


def test_decode_rejects_truncated_jpeg():
    data = _encode(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8), fmt="JPEG")
    with pytest.raises(images.InvalidImageError, match="corrupt or truncated"):
        images.decode_image(data[: len(data) // 2])


def test_validate_raw_image():
    ok = np.zeros((2, 3, 3), dtype=np.uint8)
    assert images.validate_hwc_image(ok).shape == (2, 3, 3)
    with pytest.raises(images.InvalidImageError, match="4 channels; expected 3"):
        images.validate_hwc_image(np.zeros((2, 3, 4), dtype=np.uint8))
    with pytest.raises(images.InvalidImageError, match="must be uint8"):
        images.validate_hwc_image(np.zeros((2, 3, 3), dtype=np.float32))
    with pytest.raises(images.InvalidImageError, match="shape \\[6\\]"):
        images.validate_hwc_image(np.zeros(6, dtype=np.uint8))
    with pytest.raises(images.InvalidImageError, match="empty"):
        images.validate_hwc_image(np.zeros((0, 3, 3), dtype=np.uint8))


# ---------------------------------------------------------------- nms
def test_box_iou_hand_computed():
    iou = nms.box_iou(np.array([0, 0, 10, 10.]), np.array([[1, 1, 11, 11.], [5, 0, 15, 10.], [20, 20, 30, 30.]]))
    assert iou.tolist() == pytest.approx([81 / 119, 50 / 150, 0.0])


def test_nms_suppresses_overlaps_in_score_order():
    boxes = np.array([[1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30], [5, 0, 15, 10]], dtype=np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.6], dtype=np.float32)
    assert nms.nms(boxes, scores, 0.45).tolist() == [1, 2, 3]  # IoU(1,0)=0.68 > 0.45; IoU(1,3)=0.33 kept
    assert nms.nms(boxes, scores, 0.3).tolist() == [1, 2]
    assert nms.nms(boxes, scores, 0.45, max_keep=2).tolist() == [1, 2]


def test_iou_equal_to_threshold_is_kept():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], dtype=np.float32)  # IoU exactly 1/3
    assert nms.nms(boxes, np.array([0.9, 0.8]), 1 / 3).tolist() == [0, 1]


def test_batched_nms_is_class_aware():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11]], dtype=np.float32)
    scores = np.array([0.9, 0.8], dtype=np.float32)
    assert nms.batched_nms(boxes, scores, np.array([0, 0]), 0.45).tolist() == [0]
    assert nms.batched_nms(boxes, scores, np.array([0, 1]), 0.45).tolist() == [0, 1]


def _prediction(cx, cy, w, h, obj, class_scores):
    return [cx, cy, w, h, obj, *class_scores]


def test_postprocess_filters_decodes_and_unletterboxes():
    predictions = np.array([
        _prediction(10, 10, 4, 6, 0.9, [0.1, 0.8]),   # score 0.72, class 1
        _prediction(10.5, 10, 4, 6, 0.9, [0.1, 0.7]), # overlaps the first, same class -> suppressed
        _prediction(10.5, 10, 4, 6, 0.9, [0.6, 0.1]), # same place, class 0 -> kept (0.54)
        _prediction(30, 30, 2, 2, 0.5, [0.5, 0.5]),   # score 0.25 < 0.3 -> filtered
    ], dtype=np.float32)
    det = nms.postprocess(predictions, ratio=0.5, score_threshold=0.3, iou_threshold=0.45)
    assert det.classes.tolist() == [1, 0]
    assert det.scores.tolist() == pytest.approx([0.72, 0.54])
    # (cx, cy, w, h) = (10, 10, 4, 6) -> xyxy (8, 7, 12, 13) in network pixels -> / 0.5
    assert det.boxes[0].tolist() == pytest.approx([16, 14, 24, 26])
    assert det.boxes[1].tolist() == pytest.approx([17, 14, 25, 26])


def test_postprocess_top_k_and_clipping():
    predictions = np.array([_prediction(5 + 20 * i, 5, 12, 12, 1.0, [0.9 - 0.1 * i]) for i in range(4)],
                           dtype=np.float32)
    det = nms.postprocess(predictions, ratio=1.0, max_detections=2, image_hw=(8, 100))
    assert det.scores.tolist() == pytest.approx([0.9, 0.8])
    assert det.boxes[0].tolist() == pytest.approx([0, 0, 11, 8])  # (-1, -1, 11, 11) clipped to 100x8


def test_postprocess_with_nothing_above_threshold():
    det = nms.postprocess(np.zeros((10, 7), dtype=np.float32), score_threshold=0.3)
    assert len(det) == 0 and det.boxes.shape == (0, 4)


def test_postprocess_rejects_bad_shapes():
    with pytest.raises(ValueError, match="5 \\+ num_classes"):
        nms.postprocess(np.zeros((10, 5), dtype=np.float32))


def test_pad_detections():
    one = nms.Detections(np.ones((2, 4), np.float32), np.array([0.9, 0.5], np.float32), np.array([3, 4], np.int32))
    none = nms.Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))
    boxes, scores, classes, counts = nms.pad_detections([one, none])
    assert boxes.shape == (2, 2, 4) and counts.tolist() == [2, 0]
    assert classes.tolist() == [[3, 4], [-1, -1]] and scores[1].tolist() == [0, 0]
