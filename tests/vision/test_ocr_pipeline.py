"""OCR pipelines end to end on the real Triton server: text-line images (encoded bytes or raw
uint8) in, strings out over HTTP and gRPC, equal to PyTorch greedy decoding of the same inputs.

Core models are served as `python_onnxruntime` (the server has no TensorRT/ONNX Runtime backend);
the pipeline writers are the ones `trt-convert` calls.
"""
import importlib.util
import io
import shutil
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trt_converters.errors import UserError  # noqa: E402
from trt_converters.pipelines import crnn as crnn_pipeline  # noqa: E402
from trt_converters.pipelines import trocr as trocr_pipeline  # noqa: E402
from trt_converters.pipelines.base import PipelineRequest  # noqa: E402
from trt_converters.spec import IOSpec  # noqa: E402
from trt_converters.vision.ctc import ctc_greedy_decode  # noqa: E402
from trt_converters.vision.ocr_decoding import greedy_decode  # noqa: E402

ORT_PYTHON_MODEL = ROOT / "triton_models" / "onnxruntime_python" / "model.py"
CHARSET = "0123456789abcdefghij"
VOCAB = list("abcdefghijklmnopqrstuvwxyz0123456789.,-!")  # one character per TrOCR token id
MAX_BATCH = 4
START, PAD = 2, 1

CRNN_IO = {
    "inputs": [{"name": "images", "dtype": "float32", "shape": [1, 32, -1],
                "min_shape": [1, 32, 16], "opt_shape": [1, 32, 128], "max_shape": [1, 32, 256]}],
    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, len(CHARSET) + 1]}],
}
ENCODER_CFG = dict(model_type="vit", image_size=[32, 96], patch_size=16, num_channels=3, hidden_size=32,
                   num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
DECODER_CFG = dict(model_type="trocr", vocab_size=len(VOCAB), d_model=48, decoder_layers=2,
                   decoder_attention_heads=2, decoder_ffn_dim=64, max_position_embeddings=64, init_std=0.3,
                   bos_token_id=0, pad_token_id=PAD, decoder_start_token_id=START)
TROCR_OPTIONS = {"encoder_model_name": "trocr_encoder", "image_size": [32, 96], "vocab": VOCAB,
                 "start_token_id": START, "pad_token_id": PAD, "max_length": 12}


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"_ocr_pipe_{name}", ROOT / "model_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def export(module, args, path, input_names, output_names, dynamic_axes):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)


def write_core_model(repo, name, onnx_file, io):
    """A core model as `python_onnxruntime` would serve it: ONNX Runtime inside the python backend."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    dtypes = {"float32": mc.TYPE_FP32, "int64": mc.TYPE_INT64}
    config = mc.ModelConfig(name=name, backend="python", max_batch_size=MAX_BATCH)
    for tensor in io.inputs:
        config.input.add(name=tensor.name, data_type=dtypes[tensor.dtype], dims=tensor.shape)
    for tensor in io.outputs:
        config.output.add(name=tensor.name, data_type=dtypes[tensor.dtype], dims=tensor.shape)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.dynamic_batching.SetInParent()
    for key in ("intra_op_thread_count", "inter_op_thread_count"):
        config.parameters[key].string_value = "1"
    version = repo / name / "1"
    version.mkdir(parents=True)
    shutil.copyfile(onnx_file, version / "model.onnx")
    shutil.copyfile(ORT_PYTHON_MODEL, version / "model.py")
    (repo / name / "config.pbtxt").write_text(text_format.MessageToString(config))


def line_image(text_width, height, seed, channels=3):
    """A synthetic text line: dark glyph-like strokes on a light background."""
    rng = np.random.default_rng(seed)
    image = np.full((height, text_width, channels), 230, dtype=np.uint8)
    for x in range(4, text_width - 6, 7):
        top, bottom = sorted(rng.integers(2, height - 2, size=2))
        image[top:bottom + 1, x:x + 3] = rng.integers(0, 60)
    return image


def png_bytes(image):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image[:, :, 0] if image.shape[2] == 1 else image).save(buffer, format="PNG")
    return buffer.getvalue()


LINES = [line_image(90, 20, 1), line_image(200, 28, 2), line_image(60, 40, 3)]


# ------------------------------------------------------------------------------ models and repo

@pytest.fixture(scope="module")
def crnn(tmp_path_factory):
    torch.manual_seed(0)
    model = load_script("ocr_crnn").CRNN(num_classes=len(CHARSET) + 1, hidden_size=16, channels=(8, 16, 32, 32)).eval()
    path = tmp_path_factory.mktemp("crnn") / "crnn.onnx"
    export(model, (torch.rand(2, 1, 32, 64),), path, ["images"], ["logits"],
           {"images": {0: "batch", 3: "width"}, "logits": {0: "batch", 1: "steps"}})
    return model, path


@pytest.fixture(scope="module")
def trocr(tmp_path_factory):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, VisionEncoderDecoderModel

    torch.manual_seed(0)
    enc, dec = dict(ENCODER_CFG), dict(DECODER_CFG)
    reference = VisionEncoderDecoderModel(
        encoder=AutoModel.from_config(AutoConfig.for_model(enc.pop("model_type"), **enc), attn_implementation="eager"),
        decoder=AutoModelForCausalLM.from_config(AutoConfig.for_model(dec.pop("model_type"), **dec),
                                                 attn_implementation="eager"),
    ).eval()
    script = load_script("ocr_trocr")
    kwargs = {"encoder_config": ENCODER_CFG, "decoder_config": DECODER_CFG}
    encoder, decoder = script.TrOCREncoder(**kwargs).eval(), script.TrOCRDecoder(**kwargs).eval()
    state = reference.state_dict()
    encoder.load_state_dict(encoder.adapt_state_dict(state), strict=True)
    decoder.load_state_dict(decoder.adapt_state_dict(state), strict=True)
    folder = tmp_path_factory.mktemp("trocr")
    sample = torch.randn(2, 3, 32, 96)
    export(encoder, (sample,), folder / "encoder.onnx", ["pixel_values"], ["encoder_hidden_states"],
           {"pixel_values": {0: "batch"}, "encoder_hidden_states": {0: "batch"}})
    export(decoder, (torch.randint(0, len(VOCAB), (2, 5)), encoder(sample).detach()), folder / "decoder.onnx",
           ["decoder_input_ids", "encoder_hidden_states"], ["logits"],
           {"decoder_input_ids": {0: "batch", 1: "length"}, "encoder_hidden_states": {0: "batch"},
            "logits": {0: "batch", 1: "length"}})
    options = dict(TROCR_OPTIONS, eos_token_id=pick_eos(encoder, decoder))
    return reference, folder, options


def pick_eos(encoder, decoder):
    """An end token that these random weights emit early for some test lines and never for others.

    eos only decides where decoding stops, so a probe run that never stops shows the candidates.
    """
    options, _ = trocr_pipeline.resolve_options(PipelineRequest(
        repo=Path("."), core_model_name="d", pipeline_name="x", io=trocr_io(), max_batch_size=MAX_BATCH,
        options=TROCR_OPTIONS))
    pixel_values = trocr_pipeline.preprocess_images(LINES, options)

    def encode(px):
        return encoder(torch.from_numpy(px)).detach().numpy()

    def decode(ids, hidden):
        return decoder(torch.from_numpy(ids), torch.from_numpy(hidden)).detach().numpy()

    probe = greedy_decode(encode, decode, pixel_values, start_token_id=START, eos_token_id=-1, max_length=12)
    rows = probe[:, 1:].tolist()
    for candidate in probe[:, 2:7].reshape(-1).tolist():
        if candidate not in (START, PAD) and any(candidate not in row for row in rows):
            return candidate
    pytest.fail(f"no usable eos token in probe decode {rows}")


def trocr_io(seq=13, width=48):
    return IOSpec.model_validate({
        "inputs": [{"name": "decoder_input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1],
                    "opt_shape": [8], "max_shape": [32]},
                   {"name": "encoder_hidden_states", "dtype": "float32", "shape": [seq, width]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, len(VOCAB)]}],
    })


@pytest.fixture(scope="module")
def repo(tmp_path_factory, crnn, trocr):
    repo = tmp_path_factory.mktemp("ocr_repo")
    crnn_io = IOSpec.model_validate(CRNN_IO)
    write_core_model(repo, "crnn_line", crnn[1], crnn_io)
    crnn_pipeline.write_pipeline(PipelineRequest(
        repo=repo, core_model_name="crnn_line", pipeline_name="crnn_line_text", io=crnn_io,
        max_batch_size=MAX_BATCH, instance_kind="cpu", options={"charset": CHARSET, "blank_index": 0}))

    encoder_io = IOSpec.model_validate({
        "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [3, 32, 96]}],
        "outputs": [{"name": "encoder_hidden_states", "dtype": "float32", "shape": [-1, 48]}]})
    write_core_model(repo, "trocr_encoder", trocr[1] / "encoder.onnx", encoder_io)
    write_core_model(repo, "trocr_decoder", trocr[1] / "decoder.onnx", trocr_io(seq=-1))
    trocr_pipeline.write_pipeline(PipelineRequest(
        repo=repo, core_model_name="trocr_decoder", pipeline_name="trocr_text", io=trocr_io(),
        max_batch_size=MAX_BATCH, instance_kind="cpu", options=trocr[2]))
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    pytest.importorskip("pytriton")
    from trt_converters.triton.server import LocalTritonServer

    log = tmp_path_factory.mktemp("triton_log") / "server.log"
    with LocalTritonServer(repo, log_path=log, startup_timeout=120) as running:
        yield running


# ------------------------------------------------------------------------------ references

def crnn_reference(model, images):
    options = crnn_pipeline.resolve_options(PipelineRequest(
        repo=Path("."), core_model_name="crnn_line", pipeline_name="x", io=IOSpec.model_validate(CRNN_IO),
        max_batch_size=MAX_BATCH, options={"charset": CHARSET}))
    gray = [img if img.shape[2] == 1 else np.asarray(
        __import__("PIL.Image", fromlist=["Image"]).fromarray(img).convert("L"))[:, :, None] for img in images]
    batch, steps = crnn_pipeline.batch_lines(gray, options)
    with torch.no_grad():
        logits = model(torch.from_numpy(batch)).numpy()
    return ctc_greedy_decode(logits, options["labels"], blank_index=0, lengths=steps)


def trocr_reference(trocr, images):
    reference, _, pipeline_options = trocr
    options, _ = trocr_pipeline.resolve_options(PipelineRequest(
        repo=Path("."), core_model_name="trocr_decoder", pipeline_name="x", io=trocr_io(),
        max_batch_size=MAX_BATCH, options=pipeline_options))
    pixel_values = torch.from_numpy(trocr_pipeline.preprocess_images(images, options))
    with torch.no_grad():
        rows = reference.generate(pixel_values, do_sample=False, num_beams=1, max_length=options["max_length"],
                                  decoder_start_token_id=START, eos_token_id=options["eos_token_id"], pad_token_id=PAD)
    return trocr_pipeline.tokens_to_text(rows.tolist(), options)


def infer(protocol, url, model, *, encoded=None, raw=None):
    if protocol == "http":
        import tritonclient.http as client
    else:
        import tritonclient.grpc as client
    triton = client.InferenceServerClient(url)
    if encoded is not None:
        data = np.array([[b] for b in encoded], dtype=np.object_)
        tensor = client.InferInput("image", list(data.shape), "BYTES")
    else:
        data = np.ascontiguousarray(raw)
        tensor = client.InferInput("image_raw", list(data.shape), "UINT8")
    tensor.set_data_from_numpy(data)
    result = triton.infer(model, [tensor], outputs=[client.InferRequestedOutput("text")])
    return [t.decode("utf-8") for t in result.as_numpy("text").reshape(-1)]


# ------------------------------------------------------------------------------ writer checks

def test_crnn_writer_rejects_charset_not_matching_classes(tmp_path):
    request = PipelineRequest(repo=tmp_path, core_model_name="crnn_line", pipeline_name="p",
                              io=IOSpec.model_validate(CRNN_IO), max_batch_size=2, options={"charset": "abc"})
    with pytest.raises(UserError, match="21"):
        crnn_pipeline.write_pipeline(request)
    assert not any(tmp_path.iterdir())


def test_trocr_writer_rejects_max_length_over_profile(tmp_path):
    request = PipelineRequest(repo=tmp_path, core_model_name="trocr_decoder", pipeline_name="p", io=trocr_io(),
                              max_batch_size=2, options={**TROCR_OPTIONS, "max_length": 64})
    with pytest.raises(UserError, match="max_shape"):
        trocr_pipeline.write_pipeline(request)


def test_trocr_writer_copies_tokenizer_from_checkpoint_dir(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "tokenizer.json").write_text("{}")
    options = {k: v for k, v in TROCR_OPTIONS.items() if k != "vocab"} | {"tokenizer_file": "tokenizer.json"}
    written = trocr_pipeline.write_pipeline(PipelineRequest(
        repo=tmp_path / "repo", core_model_name="trocr_decoder", pipeline_name="p", io=trocr_io(),
        max_batch_size=2, options=options, checkpoint_dir=tmp_path / "ckpt"))
    assert (tmp_path / "repo" / "p" / "1" / "tokenizer.json") in written


def test_crnn_batch_pads_to_common_width_and_reports_steps():
    options = crnn_pipeline.resolve_options(PipelineRequest(
        repo=Path("."), core_model_name="c", pipeline_name="p", io=IOSpec.model_validate(CRNN_IO),
        max_batch_size=4, options={"charset": CHARSET, "pad_value": 1.0}))
    gray = [img[:, :, :1] for img in LINES]
    batch, steps = crnn_pipeline.batch_lines(gray, options)
    widths = [round(img.shape[1] * 32 / img.shape[0]) for img in gray]  # 144, 229, 48
    assert batch.shape == (3, 1, 32, 232)
    assert steps == [w // 4 for w in widths]
    assert np.all(batch[2, :, :, widths[2]:] == 1.0)


# ------------------------------------------------------------------------------ real Triton

@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_crnn_pipeline_matches_pytorch(server, crnn, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    got = infer(protocol, url, "crnn_line_text", encoded=[png_bytes(img) for img in LINES])
    assert got == crnn_reference(crnn[0], LINES)
    assert any(got)
    raw = np.stack([line_image(120, 32, 5, channels=1), line_image(120, 32, 6, channels=1)])
    assert infer(protocol, url, "crnn_line_text", raw=raw) == crnn_reference(crnn[0], list(raw))


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_trocr_pipeline_matches_pytorch_generate(server, trocr, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    got = infer(protocol, url, "trocr_text", encoded=[png_bytes(img) for img in LINES])
    expected = trocr_reference(trocr, LINES)
    assert got == expected
    assert len(set(map(len, expected))) > 1  # some lines stop at eos, others run to max_length
    raw = np.stack([line_image(96, 32, 7), line_image(96, 32, 8)])
    assert infer(protocol, url, "trocr_text", raw=raw) == trocr_reference(trocr, list(raw))


@pytest.mark.triton
@pytest.mark.parametrize("model", ["crnn_line_text", "trocr_text"])
def test_bad_images_get_clear_errors_and_server_keeps_serving(server, model):
    from tritonclient.utils import InferenceServerException

    with pytest.raises(InferenceServerException, match="cannot decode image"):
        infer("http", server.http_url, model, encoded=[b"not an image"])
    with pytest.raises(InferenceServerException, match="channels"):
        infer("http", server.http_url, model, raw=np.zeros((1, 20, 40, 4), dtype=np.uint8))
    assert len(infer("http", server.http_url, model, encoded=[png_bytes(LINES[0])])) == 1
