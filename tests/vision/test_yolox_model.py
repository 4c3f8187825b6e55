"""YOLOX model script: official parameter names and counts, strict checkpoint loading,
in-graph box decoding, ONNX export at several batch sizes, and a real TensorRT-RTX build."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trt_converters.errors import UserError

TEST_HW = (128, 128)
ANCHORS = (128 // 8) ** 2 + (128 // 16) ** 2 + (128 // 32) ** 2

# Parameter counts published in the official YOLOX README (millions).
OFFICIAL_PARAMS_M = {"nano": 0.91, "tiny": 5.06, "s": 9.0, "m": 25.3, "l": 54.2, "x": 99.1}

OFFICIAL_KEYS = [
    "backbone.backbone.stem.conv.conv.weight",
    "backbone.backbone.stem.conv.bn.running_var",
    "backbone.backbone.dark2.1.m.0.conv2.conv.weight",
    "backbone.backbone.dark5.1.conv1.conv.weight",
    "backbone.backbone.dark5.2.conv3.bn.num_batches_tracked",
    "backbone.lateral_conv0.conv.weight",
    "backbone.C3_p4.conv1.conv.weight",
    "backbone.reduce_conv1.bn.bias",
    "backbone.C3_n4.m.0.conv2.conv.weight",
    "head.stems.2.conv.weight",
    "head.cls_convs.0.1.conv.weight",
    "head.reg_convs.1.0.bn.running_mean",
    "head.cls_preds.0.weight",
    "head.reg_preds.2.bias",
    "head.obj_preds.1.weight",
]
OFFICIAL_NANO_KEYS = [
    "backbone.backbone.dark2.0.dconv.conv.weight",
    "backbone.backbone.dark3.1.m.0.conv2.pconv.bn.weight",
    "backbone.bu_conv2.dconv.conv.weight",
    "head.cls_convs.0.0.dconv.conv.weight",
    "head.reg_convs.2.1.pconv.conv.weight",
]


@pytest.mark.parametrize("variant", list(OFFICIAL_PARAMS_M))
def test_parameter_count_matches_official(yolox_script, variant):
    with torch.device("meta"):
        model = yolox_script.YOLOX(variant=variant, num_classes=80)
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert count == pytest.approx(OFFICIAL_PARAMS_M[variant], abs=0.06)


def test_official_key_names(yolox_script):
    with torch.device("meta"):
        s_keys = set(yolox_script.YOLOX("s").state_dict())
        nano_keys = set(yolox_script.YOLOX("nano").state_dict())
    assert set(OFFICIAL_KEYS) <= s_keys
    assert set(OFFICIAL_NANO_KEYS) <= nano_keys
    assert "head.cls_convs.0.0.conv.weight" in s_keys and "head.cls_convs.0.0.conv.weight" not in nano_keys


def test_focus_patch_order_and_batchnorm_eps_follow_official(yolox_script):
    """Official Focus stacks patches top-left, bottom-left, top-right, bottom-right; training sets BN eps=1e-3."""
    model = yolox_script.YOLOX("nano").eval()
    seen = {}
    model.backbone.backbone.stem.conv.register_forward_pre_hook(lambda _m, args: seen.setdefault("x", args[0]))
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    with torch.no_grad():
        model(torch.nn.functional.pad(x, (0, 24, 0, 24)))  # 32x32, the smallest valid size
    stacked = seen["x"][..., :4, :4]
    assert torch.equal(stacked[:, 0:3], x[..., 0::2, 0::2])
    assert torch.equal(stacked[:, 3:6], x[..., 1::2, 0::2])
    assert torch.equal(stacked[:, 6:9], x[..., 0::2, 1::2])
    assert torch.equal(stacked[:, 9:12], x[..., 1::2, 1::2])
    eps = {m.eps for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert eps == {1e-3}


def test_official_style_checkpoint_loads_strictly_for_any_class_count(yolox_script, random_yolox, tmp_path):
    source = random_yolox("nano", num_classes=3, seed=1)
    path = tmp_path / "best_ckpt.pth"
    torch.save({"start_epoch": 300, "model": source.state_dict(), "optimizer": {}, "best_ap": 0.0}, path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    target = yolox_script.YOLOX(variant="nano", num_classes=3).eval()
    state = target.adapt_state_dict(checkpoint["model"])
    result = target.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    x = torch.rand(1, 3, *TEST_HW) * 255
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_other_variant_fails_strict_load_with_shape_mismatch(yolox_script):
    s_state = yolox_script.YOLOX("s").state_dict()
    tiny = yolox_script.YOLOX("tiny")
    with pytest.raises(RuntimeError, match=r"size mismatch for backbone\.backbone\.stem\.conv\.conv\.weight"):
        tiny.load_state_dict(s_state, strict=True)
    with pytest.raises(UserError, match=r"checkpoint is YOLOX-s \(stem conv \[32, 12, 3, 3\].*set model_kwargs variant: s"):
        tiny.adapt_state_dict(s_state)
    nano_state = yolox_script.YOLOX("nano").state_dict()
    with pytest.raises(RuntimeError, match=r"Unexpected key\(s\).*dconv"):
        tiny.load_state_dict(nano_state, strict=True)
    with torch.device("meta"):
        m_state, l_model = yolox_script.YOLOX("m").state_dict(), yolox_script.YOLOX("l")
    with pytest.raises(UserError, match=r"checkpoint is YOLOX-m .* variant='l'"):
        l_model.adapt_state_dict(m_state)


def test_class_count_mismatch_names_the_fix(yolox_script):
    state = yolox_script.YOLOX("nano", num_classes=3).state_dict()
    model = yolox_script.YOLOX("nano", num_classes=80)
    with pytest.raises(UserError, match=r"checkpoint has 3 classes but num_classes=80; set model_kwargs num_classes: 3"):
        model.adapt_state_dict(state)


def test_unknown_variant_is_rejected(yolox_script):
    with pytest.raises(ValueError, match="unknown YOLOX variant 'q'"):
        yolox_script.YOLOX(variant="q")


def test_forward_decodes_boxes_like_official_eval(random_yolox):
    """Recompute the decode from the raw head maps with plain loops over a few anchors."""
    model = random_yolox("nano", num_classes=2)
    raw = {}
    for name in ("reg_preds", "obj_preds", "cls_preds"):
        for level, conv in enumerate(getattr(model.head, name)):
            conv.register_forward_hook(lambda _m, _i, out, key=(name, level): raw.__setitem__(key, out))
    x = torch.rand(2, 3, 64, 96) * 255
    with torch.no_grad():
        out = model(x)
    assert out.shape == (2, 8 * 12 + 4 * 6 + 2 * 3, 7)
    offset = 0
    for level, stride in enumerate((8, 16, 32)):
        h, w = 64 // stride, 96 // stride
        for (row, col) in [(0, 0), (h - 1, w - 1), (h // 2, w - 1), (h - 1, 0)]:
            anchor = offset + row * w + col
            reg = raw["reg_preds", level][1, :, row, col]
            expected = [
                (reg[0] + col) * stride, (reg[1] + row) * stride,
                torch.exp(reg[2]) * stride, torch.exp(reg[3]) * stride,
                torch.sigmoid(raw["obj_preds", level][1, 0, row, col]),
                *torch.sigmoid(raw["cls_preds", level][1, :, row, col]),
            ]
            assert out[1, anchor].tolist() == pytest.approx([float(v) for v in expected], rel=1e-5, abs=1e-5)
        offset += h * w


@pytest.mark.parametrize("variant", ["nano", "s"])
def test_onnx_runtime_matches_pytorch_at_batch_1_and_3(random_yolox, export_yolox_onnx, tmp_path, variant):
    import onnxruntime as ort

    model = random_yolox(variant)
    path = export_yolox_onnx(model, tmp_path / f"yolox_{variant}.onnx", sample_batch=2)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.rand(batch, 3, *TEST_HW, generator=torch.Generator().manual_seed(batch)) * 255
        with torch.no_grad():
            expected = model(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == (batch, ANCHORS, 85)
        scale = np.abs(expected).max()
        assert np.abs(got - expected).max() <= 1e-4 + 1e-5 * scale
        # the score columns (sigmoids) must agree closely on their own
        assert np.abs(got[..., 4:] - expected[..., 4:]).max() < 1e-4


@pytest.mark.parametrize("variant", ["nano", "s"])
def test_tensorrt_rtx_builds_the_exported_graph(random_yolox, export_yolox_onnx, tmp_path, variant):
    """The core's builder (real TensorRT-RTX parser and builder, strongly typed, one profile)."""
    pytest.importorskip("tensorrt_rtx")
    from trt_converters.build import BuildOptions, build_engine
    from trt_converters.shapes import ShapeProfile

    onnx_path = export_yolox_onnx(random_yolox(variant), tmp_path / "model.onnx")
    shape = (3, *TEST_HW)
    profiles = {"images": ShapeProfile((1, *shape), (2, *shape), (4, *shape))}
    result = build_engine(onnx_path, tmp_path / "model.plan", profiles,
                          BuildOptions(backend="tensorrt-rtx", memory_pool_limit=1 << 30, progress=False))
    assert result.path.is_file() and result.engine_bytes > 100_000
    assert result.backend == "tensorrt-rtx"


def test_core_loader_reads_official_checkpoint_and_reports_wrong_variant(random_yolox, yolox_script_path, tmp_path):
    from trt_converters.loading import load_model

    ckpt = tmp_path / "best_ckpt.pth"
    source = random_yolox("nano", num_classes=3, seed=2)
    torch.save({"start_epoch": 10, "model": source.state_dict(), "optimizer": {}, "amp": None}, ckpt)
    model, info = load_model(yolox_script_path, "YOLOX", ckpt, model_kwargs={"variant": "nano", "num_classes": 3})
    x = torch.rand(1, 3, 64, 64) * 255
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    with pytest.raises(UserError, match=r"checkpoint is YOLOX-nano \(stem conv \[16, 12, 3, 3\], depthwise=True\) "
                                        r"but variant='tiny' expects stem conv \[24, 12, 3, 3\]; set model_kwargs variant: nano"):
        load_model(yolox_script_path, "YOLOX", ckpt, model_kwargs={"variant": "tiny", "num_classes": 3})
    with pytest.raises(UserError, match="checkpoint has 3 classes but num_classes=80"):
        load_model(yolox_script_path, "YOLOX", ckpt, model_kwargs={"variant": "nano", "num_classes": 80})
