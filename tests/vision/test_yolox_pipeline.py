"""YOLOX Triton pipeline: the writer's repository layout and validation, and end-to-end runs on the
real tritonserver (ensemble preprocess -> core model served by ONNX Runtime -> postprocess) compared
with PyTorch + the same NMS, over HTTP and gRPC, plus bad inputs."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from trt_converters.errors import UserError
from trt_converters.serving_runtime import images, letterbox, nms

ROOT = Path(__file__).resolve().parents[2]
HW = (128, 128)
ANCHORS = sum((HW[0] // s) * (HW[1] // s) for s in (8, 16, 32))
CLASS_NAMES = ["cat", "dog", "bird"]
OPTIONS = {"score_threshold": 0.3, "iou_threshold": 0.45, "max_detections": 50, "class_names": CLASS_NAMES}
PIPELINE = "yolox_test_detector"


def _request(tmp_path, **changes):
    from trt_converters.pipelines.base import PipelineRequest
    from trt_converters.spec import IOSpec

    io_spec = IOSpec.model_validate({
        "inputs": [{"name": "images", "dtype": "float32", "shape": changes.pop("input_shape", [3, *HW])}],
        "outputs": [{"name": "detections", "dtype": "float32", "shape": [ANCHORS, 5 + len(CLASS_NAMES)]}],
    })
    fields = dict(repo=tmp_path, core_model_name="yolox_test", pipeline_name=PIPELINE, io=io_spec,
                  max_batch_size=4, instance_kind="cpu", options=dict(OPTIONS))
    fields["options"].update(changes.pop("options", {}))
    fields.update(changes)
    return PipelineRequest(**fields)


# ---------------------------------------------------------------- writer, no server
def test_writer_lays_out_an_ensemble_with_self_contained_python_models(tmp_path):
    from trt_converters.pipelines.yolox import write_pipeline
    from trt_converters.triton.config import read_config

    written = write_pipeline(_request(tmp_path))
    assert all(p.is_relative_to(tmp_path) and p.exists() for p in written)
    pre, post = tmp_path / f"{PIPELINE}_preprocess", tmp_path / f"{PIPELINE}_postprocess"
    for folder in (pre, post):
        for module in ("images.py", "letterbox.py", "nms.py", "triton_io.py"):
            copied = folder / "1" / "serving_runtime" / module
            assert copied.read_text() == (ROOT / "trt_converters/serving_runtime" / module).read_text()
        assert (folder / "1" / "model.py").is_file()
    assert (post / "1" / "class_names.json").read_text().count('"') == 6

    ensemble = read_config(tmp_path / PIPELINE / "config.pbtxt")
    assert ensemble.platform == "ensemble" and ensemble.max_batch_size == 4
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [pre.name, "yolox_test", post.name]
    assert [i.name for i in ensemble.input] == ["image", "image_raw"] and all(i.optional for i in ensemble.input)
    assert [o.name for o in ensemble.output] == ["boxes", "scores", "classes", "num_detections", "labels"]
    preprocess = read_config(pre / "config.pbtxt")
    assert list(preprocess.output[0].dims) == [3, *HW]
    assert preprocess.parameters["channel_order"].string_value == "BGR"
    postprocess = read_config(post / "config.pbtxt")
    assert list(postprocess.input[0].dims) == [ANCHORS, 8]
    assert postprocess.parameters["score_threshold"].string_value == "0.3"


@pytest.mark.parametrize("changes, message", [
    ({"options": {"score_threshold": 1.5}}, "score_threshold=1.5 must be <= 1"),
    ({"options": {"class_names": ["a"]}}, "class_names has 1 names but the model predicts 3"),
    ({"options": {"nms_threshold": 0.5}}, "unknown option 'nms_threshold'; valid options: channel_order, "),
    ({"options": {"max_detections": 0}}, "max_detections=0 must be >= 1"),
    ({"options": {"channel_order": "HSV"}}, "channel_order='HSV' must be BGR or RGB"),
    ({"input_shape": [3, -1, -1]}, "set pipeline_options input_size"),
    ({"input_shape": [3, 100, 128]}, "multiples of 32"),
    ({"input_shape": [1, 128, 128]}, r"must be float32 \[3, H, W\]"),
    ({"pipeline_name": "yolox_test"}, "equals the core model's name"),
    ({"max_batch_size": 0}, "max_batch_size >= 1"),
])
def test_writer_rejects_bad_settings(tmp_path, changes, message):
    from trt_converters.pipelines.yolox import write_pipeline

    with pytest.raises(UserError, match=message):
        write_pipeline(_request(tmp_path, **changes))
    assert not any(tmp_path.iterdir()), "nothing may be written on a user error"


def test_dynamic_input_with_input_size(tmp_path):
    from trt_converters.pipelines.yolox import resolve_options

    settings = resolve_options(_request(tmp_path, input_shape=[3, -1, -1], options={"input_size": [96, 160]}))
    assert (settings["input_height"], settings["input_width"]) == (96, 160)


# ---------------------------------------------------------------- end to end on tritonserver
def _encode(array_rgb: np.ndarray, fmt: str) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array_rgb).save(buffer, format=fmt)
    return buffer.getvalue()


def _photo(seed: int, height: int, width: int) -> np.ndarray:
    """A smooth random RGB picture (JPEG-friendly) with some blocks, as uint8 HWC."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width].copy()


@pytest.fixture(scope="module")
def served_yolox(tmp_path_factory, yolox_script, random_yolox):
    """Random-weight YOLOX-nano (3 classes, 128x128) converted with trt-convert and served by tritonserver."""
    import torch

    pytest.importorskip("tritonclient.grpc")
    from trt_converters.triton.server import LocalTritonServer, find_triton_distribution

    try:
        find_triton_distribution()
    except UserError as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("yolox_e2e")
    model = random_yolox("nano", num_classes=len(CLASS_NAMES), seed=3)
    with torch.no_grad():  # spread the random logits so that tens of boxes pass the score threshold
        for conv in [*model.head.obj_preds, *model.head.cls_preds]:
            conv.weight.mul_(30)
    torch.save({"model": model.state_dict(), "start_epoch": 1}, work / "best_ckpt.pth")
    config = yaml.safe_load((ROOT / "configs" / "yolox_nano.yaml").read_text())
    config.update(model_name="yolox_test", pipeline_name=PIPELINE, pipeline_options=dict(OPTIONS),
                  model_script_path=str(ROOT / "model_scripts" / "yolox.py"),
                  model_kwargs={"variant": "nano", "num_classes": len(CLASS_NAMES)}, max_batch_size=4)
    config["model_io_config"]["inputs"][0]["shape"] = [3, *HW]
    config["model_io_config"]["outputs"][0]["shape"] = [ANCHORS, 5 + len(CLASS_NAMES)]
    (work / "yolox_test.yaml").write_text(yaml.safe_dump(config))
    command = [sys.executable, "-m", "trt_converters.cli", "--config", str(work / "yolox_test.yaml"),
               "--ckpt-path", str(work / "best_ckpt.pth"), "--triton-repo", str(work / "repo"),
               "--output-dir", str(work / "out"), "--generate-onnx", "--generate-triton-config",
               "--triton-backend", "python_onnxruntime", "--instance-kind", "cpu"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    with LocalTritonServer(work / "repo", log_path=work / "server.log") as server:
        yield model, server


def _reference(model, encoded_or_raw) -> nms.Detections:
    """PyTorch on the same letterboxed tensor, then the same NMS."""
    import torch

    if isinstance(encoded_or_raw, bytes):
        bgr = images.decode_image(encoded_or_raw, channel_order="BGR")
    else:
        bgr = encoded_or_raw
    padded, ratio = letterbox.letterbox(bgr, HW)
    with torch.no_grad():
        prediction = model(torch.from_numpy(letterbox.to_model_input(padded))[None])[0].numpy()
    return nms.postprocess(prediction, ratio, score_threshold=OPTIONS["score_threshold"],
                           iou_threshold=OPTIONS["iou_threshold"], max_detections=OPTIONS["max_detections"],
                           image_hw=bgr.shape[:2])


def _client(protocol: str, server):
    if protocol == "http":
        import tritonclient.http as client_module

        return client_module, client_module.InferenceServerClient(server.http_url)
    import tritonclient.grpc as client_module

    return client_module, client_module.InferenceServerClient(server.grpc_url)


def _infer(protocol, server, name, array, datatype):
    module, client = _client(protocol, server)
    tensor = module.InferInput(name, list(array.shape), datatype)
    tensor.set_data_from_numpy(array)
    outputs = [module.InferRequestedOutput(n) for n in ("boxes", "scores", "classes", "num_detections", "labels")]
    result = client.infer(PIPELINE, [tensor], outputs=outputs)
    return {n: result.as_numpy(n) for n in ("boxes", "scores", "classes", "num_detections", "labels")}


def _assert_same(result, row: int, expected: nms.Detections):
    count = int(result["num_detections"][row, 0])
    assert count == len(expected) > 0
    np.testing.assert_array_equal(result["classes"][row, :count], expected.classes)
    np.testing.assert_allclose(result["scores"][row, :count], expected.scores, atol=1e-4)
    np.testing.assert_allclose(result["boxes"][row, :count], expected.boxes, atol=2e-3)
    labels = [v.decode() if isinstance(v, bytes) else v for v in result["labels"][row, :count]]
    assert labels == [CLASS_NAMES[c] for c in expected.classes]
    assert (result["classes"][row, count:] == -1).all()


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_encoded_images_give_pytorch_boxes(served_yolox, protocol):
    model, server = served_yolox
    png = _encode(_photo(1, 100, 150), "PNG")
    jpeg = _encode(_photo(2, 200, 96), "JPEG")
    result = _infer(protocol, server, "image", np.array([[png], [jpeg]], dtype=np.object_), "BYTES")
    assert result["boxes"].shape[0] == 2
    _assert_same(result, 0, _reference(model, png))
    _assert_same(result, 1, _reference(model, jpeg))
    # boxes are in original pixels: within each image
    assert result["boxes"][1, :, 0::2].max() <= 96 and result["boxes"][1, :, 1::2].max() <= 200


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_raw_uint8_images_give_pytorch_boxes(served_yolox, protocol):
    model, server = served_yolox
    raw_bgr = _photo(4, 64, 128)[:, :, ::-1].copy()
    result = _infer(protocol, server, "image_raw", raw_bgr[None], "UINT8")
    _assert_same(result, 0, _reference(model, raw_bgr))


@pytest.mark.triton
def test_bad_requests_get_400_with_a_clear_message_and_the_server_keeps_serving(served_yolox):
    from tests.helpers.bad_requests import BadRequest, assert_battery, http_infer

    model, server = served_yolox
    good = _encode(_photo(5, 80, 80), "PNG")
    jpeg = _encode(_photo(6, 80, 80), "JPEG")
    outputs = ["boxes", "scores", "classes", "num_detections"]

    def send(name, array, datatype):
        return lambda: http_infer(server, PIPELINE, {name: (array, datatype)}, outputs)

    def encoded(*items):
        return send("image", np.array([[item] for item in items], dtype=np.object_), "BYTES")

    random_bytes = np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    cases = [
        BadRequest("random bytes", encoded(random_bytes), "image 0: cannot decode image: 4096 bytes in no known"),
        BadRequest("a text file", encoded(b"name,score\nbox,0.5\n"), "image 0: cannot decode image"),
        BadRequest("empty bytes", encoded(b""), "image 0: empty image: 0 bytes received"),
        BadRequest("truncated JPEG", encoded(jpeg[: len(jpeg) // 2]), "image 0: cannot decode image: corrupt"),
        BadRequest("one bad image of two", encoded(good, b"junk"), "image 1: cannot decode image"),
        BadRequest("0x0 raw image", send("image_raw", np.zeros((1, 0, 0, 3), dtype=np.uint8), "UINT8"),
                   "raw image is empty|empty"),
        BadRequest("4-channel raw image", send("image_raw", np.zeros((1, 20, 20, 4), dtype=np.uint8), "UINT8"),
                   "unexpected shape|dims|4 channels"),
        BadRequest("float raw image", send("image_raw", np.zeros((1, 20, 20, 3), dtype=np.float32), "FP32"),
                   "data-type|datatype|FP32"),
        BadRequest("both inputs", lambda: http_infer(server, PIPELINE, {
            "image": (np.array([[good]], dtype=np.object_), "BYTES"),
            "image_raw": (_photo(1, 20, 20)[None], "UINT8")}, outputs), "send exactly one of 'image'"),
    ]
    assert_battery(server, cases, encoded(good))


@pytest.mark.triton
def test_alpha_palette_16_bit_and_grayscale_images_are_read_as_opencv_reads_them(served_yolox):
    """cv2.imread(path) (the reference demo's reader) drops alpha, expands palette and grayscale images and keeps
    the high byte of 16-bit samples: each variant gets the boxes of its 8-bit RGB equivalent."""
    from PIL import Image

    from tests.helpers.bad_requests import http_infer

    model, server = served_yolox
    rgb = _photo(9, 96, 80)
    alpha = np.dstack([rgb, np.full(rgb.shape[:2], 40, dtype=np.uint8)])
    gray = rgb[..., 0]
    variants = {"rgba": (_encode(alpha, "PNG"), rgb),
                "gray": (_encode(gray, "PNG"), np.dstack([gray] * 3)),
                "gray16": (_png16(gray.astype(np.uint16) * 257), np.dstack([gray] * 3))}
    palette = Image.fromarray(rgb).quantize(64)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG")
    variants["palette"] = (buffer.getvalue(), np.asarray(palette.convert("RGB")))
    outputs = ["boxes", "scores", "classes", "num_detections"]
    for name, (data, equivalent) in variants.items():
        got = http_infer(server, PIPELINE, {"image": (np.array([[data]], dtype=np.object_), "BYTES")}, outputs)
        same = http_infer(server, PIPELINE, {"image": (np.array([[_encode(equivalent, "PNG")]], dtype=np.object_),
                                                       "BYTES")}, outputs)
        for key in outputs:
            np.testing.assert_array_equal(got[key], same[key], err_msg=name)
        assert int(got["num_detections"][0, 0]) > 0, name


def _png16(array: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array.astype(np.uint16)).save(buffer, "PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------- export script (TensorRT plan)
def test_export_script_rejects_bad_arguments():
    script = ROOT / "scripts" / "export_trt_engine.sh"
    for args, message in ([["--variant", "huge"]], "unknown variant"), ([["--bogus"]], "unknown option"), \
                         ([["--ckpt", "/no/such.pth"]], "not found"), ([["--int8"]], "--calib-images"):
        done = subprocess.run(["bash", str(script), *args[0]], capture_output=True, text=True, timeout=60)
        assert done.returncode != 0
        assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    helped = subprocess.run(["bash", str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert helped.returncode == 0 and "--calib-images" in helped.stdout


def test_export_script_builds_a_plan_and_its_config(tmp_path, random_yolox):
    import torch

    pytest.importorskip("tensorrt_rtx")
    from trt_converters.triton.config import read_config

    torch.save({"model": random_yolox("nano").state_dict()}, tmp_path / "best_ckpt.pth")
    io_json = ('{"inputs":[{"name":"images","dtype":"float32","shape":[3,128,128],"value_range":[0,255]}],'
               f'"outputs":[{{"name":"detections","dtype":"float32","shape":[{ANCHORS},85]}}]}}')
    command = ["bash", str(ROOT / "scripts" / "export_trt_engine.sh"), "--ckpt", str(tmp_path / "best_ckpt.pth"),
               "--variant", "nano", "--repo", str(tmp_path / "repo"), "--max-batch-size", "4",
               "--workspace", "512M", "--", "--model-io-config", io_json, "--output-dir", str(tmp_path / "out")]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trt-convert --config" in done.stdout  # the command it runs is printed
    plan = tmp_path / "repo" / "yolox" / "1" / "model.plan"
    assert plan.is_file() and plan.stat().st_size > 100_000
    config = read_config(tmp_path / "repo" / "yolox" / "config.pbtxt")
    assert config.platform == "tensorrt_plan" and config.max_batch_size == 4
    assert (tmp_path / "repo" / "yolox_detector" / "config.pbtxt").is_file()


# ---------------------------------------------------------------- python models without a server
class _FakeBackendUtils:
    """The few pieces of triton_python_backend_utils the YOLOX models use."""

    class Tensor:
        def __init__(self, name, array):
            self.name, self._array = name, np.asarray(array)

        def as_numpy(self):
            return self._array

    class TritonError:
        INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

        def __init__(self, message, code=INTERNAL):
            self.message, self.code = message, code

    class InferenceResponse:
        def __init__(self, output_tensors=None, error=None):
            self.outputs = {t.name: t.as_numpy() for t in output_tensors or []}
            self.error = error

    @staticmethod
    def get_input_tensor_by_name(request, name):
        return request.get(name)


def _load_python_model(tmp_path, monkeypatch, role: str):
    import importlib.util
    import json

    from trt_converters.pipelines.yolox import write_pipeline
    from trt_converters.triton.config import read_config

    write_pipeline(_request(tmp_path))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", _FakeBackendUtils)
    folder = tmp_path / f"{PIPELINE}_{role}"
    spec = importlib.util.spec_from_file_location(f"yolox_{role}_under_test", folder / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from google.protobuf import json_format

    config = json_format.MessageToDict(read_config(folder / "config.pbtxt"), preserving_proto_field_name=True)
    model = module.TritonPythonModel()
    model.initialize({"model_config": json.dumps(config)})
    return model


def test_preprocess_answers_each_request_on_its_own(tmp_path, monkeypatch):
    model = _load_python_model(tmp_path, monkeypatch, "preprocess")
    T = _FakeBackendUtils.Tensor
    png = _encode(_photo(7, 40, 64), "PNG")
    responses = model.execute([
        {"image": T("image", np.array([[png], [png]], dtype=np.object_))},
        {"image": T("image", np.array([[b"\x89PNG broken"]], dtype=np.object_))},
        {"image_raw": T("image_raw", _photo(8, 64, 32)[None])},
        {},
        {"image": T("image", np.zeros((0, 1), dtype=np.object_))},
    ])
    good, bad, raw, none, empty = responses
    assert good.error is None and good.outputs["images"].shape == (2, 3, *HW)
    assert good.outputs["letterbox_info"].tolist() == [[2.0, 40, 64]] * 2
    expected, _ = letterbox.letterbox_batch([images.decode_image(png, channel_order="BGR")], HW)
    np.testing.assert_array_equal(good.outputs["images"][:1], expected)
    assert "image 0: cannot decode image" in bad.error.message
    assert raw.error is None and raw.outputs["letterbox_info"].tolist() == [[2.0, 64, 32]]
    assert "send exactly one of 'image'" in none.error.message
    assert "empty batch" in empty.error.message
    assert bad.error.code == none.error.code == empty.error.code == "INVALID_ARG"  # the client's mistakes: 400


def test_postprocess_pads_rows_and_names_classes(tmp_path, monkeypatch):
    model = _load_python_model(tmp_path, monkeypatch, "postprocess")
    T = _FakeBackendUtils.Tensor
    predictions = np.zeros((2, ANCHORS, 8), dtype=np.float32)
    predictions[0, 0] = [20, 20, 10, 10, 0.9, 0.1, 0.9, 0.1]   # dog, score 0.81
    predictions[0, 1] = [60, 60, 10, 10, 0.8, 0.7, 0.1, 0.1]   # cat, 0.56
    predictions[0, 2] = [21, 20, 10, 10, 0.9, 0.1, 0.8, 0.1]   # overlaps the dog -> suppressed
    info = np.array([[0.5, 64, 64], [1.0, 128, 128]], dtype=np.float32)
    (response,) = model.execute([{"detections": T("detections", predictions), "letterbox_info": T("li", info)}])
    assert response.error is None
    assert response.outputs["num_detections"].tolist() == [[2], [0]]
    assert response.outputs["boxes"].shape == (2, 2, 4)
    assert response.outputs["boxes"][0, 0].tolist() == pytest.approx([30, 30, 50, 50])
    assert response.outputs["classes"].tolist() == [[1, 0], [-1, -1]]
    assert response.outputs["labels"][0].tolist() == [b"dog", b"cat"]


@pytest.mark.slow
def test_export_script_int8_from_a_folder_of_images(tmp_path, random_yolox):
    """--int8 --calib-images: explicit Q/DQ calibrated on images (BGR, 0..255 per the config), real build."""
    import torch

    pytest.importorskip("tensorrt_rtx")
    pytest.importorskip("modelopt")
    from trt_converters.triton.config import read_config

    torch.save({"model": random_yolox("nano").state_dict()}, tmp_path / "best_ckpt.pth")
    calib = tmp_path / "calib"
    calib.mkdir()
    for index in range(4):
        (calib / f"{index}.jpg").write_bytes(_encode(_photo(20 + index, 48, 64), "JPEG"))
    anchors = sum((64 // s) ** 2 for s in (8, 16, 32))
    io_json = ('{"inputs":[{"name":"images","dtype":"float32","shape":[3,64,64],"value_range":[0,255]}],'
               f'"outputs":[{{"name":"detections","dtype":"float32","shape":[{anchors},85]}}]}}')
    command = ["bash", str(ROOT / "scripts" / "export_trt_engine.sh"), "--ckpt", str(tmp_path / "best_ckpt.pth"),
               "--variant", "nano", "--int8", "--calib-images", str(calib), "--repo", str(tmp_path / "repo"),
               "--max-batch-size", "2", "--", "--model-io-config", io_json, "--output-dir", str(tmp_path / "out")]
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "--use-int8 --calib-data" in done.stdout
    assert (tmp_path / "out" / "yolox" / "model.int8.onnx").is_file()
    assert (tmp_path / "repo" / "yolox" / "1" / "model.plan").stat().st_size > 100_000
    assert read_config(tmp_path / "repo" / "yolox" / "config.pbtxt").platform == "tensorrt_plan"


# ---------------------------------------------------------------- trt-serve's curl, trt-infer, trt-bench on images
@pytest.mark.triton
def test_printed_image_curl_trt_infer_and_trt_bench_reach_the_pipeline(served_yolox, tmp_path):
    """What trt-serve prints for an image entry point works as pasted; trt-infer --image and trt-bench too."""
    import json
    import shutil

    from click.testing import CliRunner

    from trt_converters.bench_cli import main as bench_main
    from trt_converters.infer_cli import main as infer_main
    from trt_converters.triton.config import read_config
    from trt_converters.triton.examples import curl_command

    model, server = served_yolox
    jpeg = _encode(_photo(7, 120, 90), "JPEG")
    (tmp_path / "photo.jpg").write_bytes(jpeg)
    expected = _reference(model, jpeg)
    curl = curl_command(server.http_url, PIPELINE, read_config(server.repo / PIPELINE / "config.pbtxt"))
    if shutil.which("curl"):
        done = subprocess.run(["bash", "-c", curl], capture_output=True, cwd=tmp_path, timeout=120)
        outputs = {o["name"]: o for o in json.loads(done.stdout)["outputs"]}
        count = outputs["num_detections"]["data"][0]
        assert count == len(expected) > 0
        boxes = np.array(outputs["boxes"]["data"], dtype=np.float32).reshape(outputs["boxes"]["shape"])[0, :count]
        np.testing.assert_allclose(boxes, expected.boxes, atol=2e-3)

    runner = CliRunner()
    url = f"http://{server.http_url}"
    result = runner.invoke(infer_main, ["--url", url, "--model", PIPELINE, "--image", str(tmp_path / "photo.jpg")])
    assert result.exit_code == 0, result.stderr
    assert f"num_detections: INT32 [1, 1]\n  [photo.jpg] {len(expected)}" in result.stdout
    assert f"[photo.jpg] {CLASS_NAMES[expected.classes[0]]}" in result.stdout

    result = runner.invoke(bench_main, ["--triton", url, "--model", PIPELINE, "--concurrency", "1",
                                        "--measurement-seconds", "1", "--json", str(tmp_path / "load.json")])
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads((tmp_path / "load.json").read_text())["rows"]
    assert row["requests"] > 0 and row["errors"] == 0
