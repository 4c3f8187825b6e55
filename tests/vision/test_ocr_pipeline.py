"""OCR pipelines end to end on the real Triton server: text-line images (encoded bytes or raw
uint8) in, strings out over HTTP and gRPC, equal to PyTorch greedy decoding of the same inputs.

Core models are served as `python_onnxruntime` (the server has no TensorRT/ONNX Runtime backend);
the pipeline writers are the ones `trt-convert` calls.
"""
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trt_converters.errors import UserError  # noqa: E402
from trt_converters.config_file import read_config_file  # noqa: E402
from trt_converters.pipelines import crnn as crnn_pipeline  # noqa: E402
from trt_converters.pipelines import trocr as trocr_pipeline  # noqa: E402
from trt_converters.serving_runtime import ocr_preprocess  # noqa: E402
from trt_converters.pipelines.base import PipelineRequest  # noqa: E402
from trt_converters.spec import IOSpec  # noqa: E402
from trt_converters.serving_runtime.ctc import ctc_greedy_decode  # noqa: E402
from trt_converters.serving_runtime.ocr_decoding import greedy_decode  # noqa: E402

CHARSET = "0123456789abcdefghij"  # writer tests; the served CRNN uses configs/crnn_line.yaml's charset
TOKEN_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
VOCAB = ["<s>", "<pad>", "</s>", "<unk>", *TOKEN_CHARS]  # one string per TrOCR token id
CRNN_KWARGS = {"hidden_size": 16, "channels": [8, 16, 32, 32]}  # num_classes 37 from the YAML
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

def run_cli(*args):
    from click.testing import CliRunner

    from trt_converters.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def deployed_options(repo, model):
    """The pipeline_options JSON the BLS model reads from its config.pbtxt."""
    from trt_converters.triton.config import read_config

    config = read_config(repo / model / "config.pbtxt")
    return json.loads(config.parameters["pipeline_options"].string_value)


def char_tokenizer(path):
    """A character-level Hugging Face tokenizer.json: ids 0-3 special, then one id per character."""
    from tokenizers import Tokenizer, decoders, models

    special = ["<s>", "<pad>", "</s>", "<unk>"]
    vocab = {token: i for i, token in enumerate(special + list(TOKEN_CHARS))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.decoder = decoders.Fuse()
    tokenizer.add_special_tokens(special)
    tokenizer.save(str(path))
    return path


@pytest.fixture(scope="module")
def crnn(tmp_path_factory):
    torch.manual_seed(0)
    model = load_script("ocr_crnn").CRNN(num_classes=37, **CRNN_KWARGS).eval()
    checkpoint = tmp_path_factory.mktemp("crnn") / "crnn.pt"
    torch.save(model.state_dict(), checkpoint)
    return model, checkpoint


@pytest.fixture(scope="module")
def trocr(tmp_path_factory):
    """A VisionEncoderDecoderModel saved the Hugging Face way: weights, config.json, tokenizer.json."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, VisionEncoderDecoderModel

    torch.manual_seed(0)
    enc, dec = dict(ENCODER_CFG), dict(DECODER_CFG)
    reference = VisionEncoderDecoderModel(
        encoder=AutoModel.from_config(AutoConfig.for_model(enc.pop("model_type"), **enc), attn_implementation="eager"),
        decoder=AutoModelForCausalLM.from_config(AutoConfig.for_model(dec.pop("model_type"), **dec),
                                                 attn_implementation="eager"),
    ).eval()
    folder = tmp_path_factory.mktemp("trocr")
    torch.save(reference.state_dict(), folder / "model.pt")
    reference.config.to_json_file(str(folder / "config.json"))
    char_tokenizer(folder / "tokenizer.json")
    return reference, folder / "model.pt", pick_eos(reference)


def pick_eos(reference):
    """An end token that these random weights emit early for some test lines and never for others.

    eos only decides where decoding stops, so a probe run that never stops shows the candidates.
    """
    pixel_values = ocr_preprocess.preprocess_images(LINES, {"image_size": [32, 96], "mean": [0.5] * 3,
                                                            "std": [0.5] * 3})

    def encode(px):
        return reference.enc_to_dec_proj(reference.encoder(torch.from_numpy(px)).last_hidden_state).detach().numpy()

    def decode(ids, hidden):
        return reference.decoder(input_ids=torch.from_numpy(ids),
                                 encoder_hidden_states=torch.from_numpy(hidden)).logits.detach().numpy()

    with torch.no_grad():
        probe = greedy_decode(encode, decode, pixel_values, start_token_id=START, eos_token_id=-1, max_length=12)
    rows = probe[:, 1:].tolist()
    for candidate in probe[:, 2:7].reshape(-1).tolist():
        if candidate not in (START, PAD) and any(candidate not in row for row in rows):
            return candidate
    pytest.fail(f"no usable eos token in probe decode {rows}")


def trocr_io(seq=13, width=48):
    return IOSpec.model_validate({
        "inputs": [{"name": "decoder_input_ids", "dtype": "int64", "shape": [-1], "min_shape": [1],
                    "opt_shape": [8], "max_shape": [32], "value_range": [0, len(VOCAB)]},
                   {"name": "encoder_hidden_states", "dtype": "float32", "shape": [seq, width]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1, len(VOCAB)]}],  # last_token_logits
    })


ENCODER_IO = {"inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [3, 32, 96], "value_range": [-1, 1]}],
              "outputs": [{"name": "encoder_hidden_states", "dtype": "float32", "shape": [13, 48]}]}


@pytest.fixture(scope="module")
def repo(tmp_path_factory, crnn, trocr):
    """The repository exactly as `trt-convert` writes it: three runs with the configs in configs/."""
    work = tmp_path_factory.mktemp("ocr_convert")
    repo = work / "repo"
    common = ["--triton-repo", repo, "--output-dir", work / "out", "--generate-onnx", "--generate-trt",
              "--generate-triton-config", "--triton-backend", "python_onnxruntime", "--instance-kind", "cpu",
              "--max-batch-size", MAX_BATCH, "--intra-op-threads", 1, "--inter-op-threads", 1]
    run_cli("--config", ROOT / "configs" / "crnn_line.yaml", "--ckpt-path", crnn[1],
            "--model-kwargs", json.dumps(CRNN_KWARGS), *common)
    # The same core model behind a second entry model that runs each line on its own.
    crnn_config = read_config_file(ROOT / "configs" / "crnn_line.yaml")
    crnn_pipeline.write_pipeline(PipelineRequest(
        repo=repo, core_model_name="crnn_line", pipeline_name="crnn_line_text_per_line",
        io=IOSpec.model_validate(crnn_config["model_io_config"]), max_batch_size=MAX_BATCH,
        options={**crnn_config["pipeline_options"], "pad_batches": False}))
    _, checkpoint, eos = trocr
    run_cli("--config", ROOT / "configs" / "trocr_encoder.yaml", "--ckpt-path", checkpoint,
            "--model-io-config", json.dumps(ENCODER_IO), *common)
    run_cli("--config", ROOT / "configs" / "trocr_decoder.yaml", "--ckpt-path", checkpoint,
            "--model-io-config", json.dumps(trocr_io().model_dump(exclude_none=True)), *common,
            "--pipeline-option", "image_size=32,96", "--pipeline-option", "max_length=12",
            "--pipeline-option", f"eos_token_id={eos}")
    return repo


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    pytest.importorskip("pytriton")
    from trt_converters.triton.server import LocalTritonServer

    log = tmp_path_factory.mktemp("triton_log") / "server.log"
    with LocalTritonServer(repo, log_path=log, startup_timeout=120) as running:
        yield running


# ------------------------------------------------------------------------------ references

def crnn_reference(model, options, images):
    from PIL import Image

    gray = [img if img.shape[2] == 1 else np.asarray(Image.fromarray(img).convert("L"))[:, :, None] for img in images]
    batch, steps = ocr_preprocess.batch_lines(gray, options)
    with torch.no_grad():
        logits = model(torch.from_numpy(batch)).numpy()
    return ctc_greedy_decode(logits, options["labels"], blank_index=options["blank_index"], lengths=steps)


def trocr_reference(reference, options, tokenizer_file, images):
    """Hugging Face generate (greedy) on the pipeline's preprocessing, decoded with the same tokenizer."""
    from tokenizers import Tokenizer

    pixel_values = torch.from_numpy(ocr_preprocess.preprocess_images(images, options))
    with torch.no_grad():
        rows = reference.generate(pixel_values, do_sample=False, num_beams=1, max_length=options["max_length"],
                                  decoder_start_token_id=options["start_token_id"],
                                  eos_token_id=options["eos_token_id"], pad_token_id=options["pad_token_id"])
    return ocr_preprocess.tokens_to_text(rows.tolist(), options, Tokenizer.from_file(str(tokenizer_file)))


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


@pytest.mark.parametrize("options,message", [
    ({"charset": 123456789}, "quote it"),
    ({"charset": CHARSET, "mean": "0.5,0.5"}, "needs 1 numbers"),
    ({"charset": CHARSET, "width_downsample": 0}, "width_downsample"),
])
def test_crnn_writer_rejects_bad_options(tmp_path, options, message):
    request = PipelineRequest(repo=tmp_path, core_model_name="crnn_line", pipeline_name="p",
                              io=IOSpec.model_validate(CRNN_IO), max_batch_size=2, options=options)
    with pytest.raises(UserError, match=message):
        crnn_pipeline.write_pipeline(request)


def test_list_options_from_command_line_strings():
    assert crnn_pipeline.number_list("32x96", name="image_size", length=2, kind=int) == [32, 96]
    assert crnn_pipeline.number_list("0.5,0.4,0.3", name="mean", length=3) == [0.5, 0.4, 0.3]
    assert crnn_pipeline.number_list(0.5, name="mean", length=1) == [0.5]


def test_trocr_writer_rejects_max_length_over_profile(tmp_path):
    request = PipelineRequest(repo=tmp_path, core_model_name="trocr_decoder", pipeline_name="p", io=trocr_io(),
                              max_batch_size=2, options={**TROCR_OPTIONS, "max_length": 64})
    with pytest.raises(UserError, match="max_shape"):
        trocr_pipeline.write_pipeline(request)


def test_trocr_writer_copies_tokenizer_from_checkpoint_dir(tmp_path):
    (tmp_path / "ckpt").mkdir()
    char_tokenizer(tmp_path / "ckpt" / "tokenizer.json")
    options = {**TROCR_OPTIONS, "tokenizer_path": "."}  # a folder, relative to the checkpoint's
    written = trocr_pipeline.write_pipeline(PipelineRequest(
        repo=tmp_path / "repo", core_model_name="trocr_decoder", pipeline_name="p", io=trocr_io(),
        max_batch_size=2, options=options, checkpoint_dir=tmp_path / "ckpt"))
    assert (tmp_path / "repo" / "p" / "1" / "tokenizer.json") in written


def test_trocr_writer_rejects_tokenizer_of_another_size(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{}")
    request = PipelineRequest(repo=tmp_path / "repo", core_model_name="d", pipeline_name="p", io=trocr_io(),
                              max_batch_size=2, options={**TROCR_OPTIONS, "tokenizer_path": str(tmp_path)})
    with pytest.raises(UserError, match="not a Hugging Face tokenizer.json"):
        trocr_pipeline.write_pipeline(request)
    small = {"version": "1.0", "model": {"type": "WordLevel", "vocab": {"a": 0, "<unk>": 1}, "unk_token": "<unk>"}}
    (tmp_path / "tokenizer.json").write_text(json.dumps(small))
    with pytest.raises(UserError, match="2 entries"):
        trocr_pipeline.write_pipeline(request)


def test_trocr_special_tokens_from_config_json_unless_given(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"decoder_start_token_id": 5, "pad_token_id": 7,
                                                      "decoder": {"eos_token_id": [6, 9]}}))
    options = {k: v for k, v in TROCR_OPTIONS.items() if not k.endswith("_token_id")}

    def resolved(opts):
        return trocr_pipeline.resolve_options(PipelineRequest(
            repo=tmp_path, core_model_name="d", pipeline_name="p", io=trocr_io(), max_batch_size=2,
            options=opts, checkpoint_dir=tmp_path))[0]

    got = resolved(options)
    assert (got["start_token_id"], got["eos_token_id"], got["pad_token_id"]) == (5, 6, 7)
    assert resolved({**options, "eos_token_id": "3"})["eos_token_id"] == 3


def test_crnn_batch_pads_to_common_width_and_reports_steps():
    options = crnn_pipeline.resolve_options(PipelineRequest(
        repo=Path("."), core_model_name="c", pipeline_name="p", io=IOSpec.model_validate(CRNN_IO),
        max_batch_size=4, options={"charset": CHARSET, "pad_value": 1.0}))
    gray = [img[:, :, :1] for img in LINES]
    batch, steps = ocr_preprocess.batch_lines(gray, options)
    widths = [round(img.shape[1] * 32 / img.shape[0]) for img in gray]  # 144, 229, 48
    assert batch.shape == (3, 1, 32, 232)
    assert steps == [w // 4 for w in widths]
    assert np.all(batch[2, :, :, widths[2]:] == 1.0)


# ------------------------------------------------------------------------------ real Triton

@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_crnn_pipeline_matches_pytorch(server, repo, crnn, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    options = deployed_options(repo, "crnn_line_text")
    got = infer(protocol, url, "crnn_line_text", encoded=[png_bytes(img) for img in LINES])
    assert got == crnn_reference(crnn[0], options, LINES)
    assert any(got)
    raw = np.stack([line_image(120, 32, 5, channels=1), line_image(120, 32, 6, channels=1)])
    assert infer(protocol, url, "crnn_line_text", raw=raw) == crnn_reference(crnn[0], options, list(raw))


@pytest.mark.triton
def test_crnn_per_line_pipeline_is_independent_of_batch_mates(server, repo, crnn):
    options = deployed_options(repo, "crnn_line_text_per_line")
    assert options["pad_batches"] is False
    got = infer("grpc", server.grpc_url, "crnn_line_text_per_line", encoded=[png_bytes(img) for img in LINES])
    assert got == [crnn_reference(crnn[0], options, [img])[0] for img in LINES]


@pytest.mark.triton
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_trocr_pipeline_matches_pytorch_generate(server, repo, trocr, protocol):
    url = server.http_url if protocol == "http" else server.grpc_url
    options = deployed_options(repo, "trocr_text")
    assert options["tokenizer_file"] and options["eos_token_id"] == trocr[2]
    tokenizer_file = trocr[1].parent / "tokenizer.json"
    got = infer(protocol, url, "trocr_text", encoded=[png_bytes(img) for img in LINES])
    expected = trocr_reference(trocr[0], options, tokenizer_file, LINES)
    assert got == expected
    assert len(set(map(len, expected))) > 1  # some lines stop at eos, others run to max_length
    raw = np.stack([line_image(96, 32, 7), line_image(96, 32, 8)])
    assert infer(protocol, url, "trocr_text", raw=raw) == trocr_reference(trocr[0], options, tokenizer_file, list(raw))


@pytest.mark.triton
@pytest.mark.parametrize("model", ["crnn_line_text", "trocr_text"])
def test_bad_requests_get_400_with_a_clear_message_and_the_server_keeps_serving(server, model):
    from tests.helpers.bad_requests import BadRequest, assert_battery, http_infer

    def send(name, array, datatype):
        return lambda: http_infer(server, model, {name: (array, datatype)}, ["text"])

    def encoded(*items):
        return send("image", np.array([[item] for item in items], dtype=np.object_), "BYTES")

    random_bytes = np.random.default_rng(1).integers(0, 256, 2048, dtype=np.uint8).tobytes()
    channels = 1 if model.startswith("crnn") else 3  # CRNN reads grayscale lines
    cases = [
        BadRequest("random bytes", encoded(random_bytes), "cannot decode image: 2048 bytes in no known image format"),
        BadRequest("a text file", encoded(b"hello\nworld\n"), "cannot decode image"),
        BadRequest("empty bytes", encoded(b""), "empty image: 0 bytes received"),
        BadRequest("0x0 raw image", send("image_raw", np.zeros((1, 0, 0, channels), dtype=np.uint8), "UINT8"),
                   "raw image is empty: shape \\[0, 0, "),
        BadRequest("4-channel raw image", send("image_raw", np.zeros((1, 20, 40, 4), dtype=np.uint8), "UINT8"),
                   f"raw image has 4 channels; expected {channels}"),
        BadRequest("no image input", lambda: http_infer(server, model, {}, ["text"]),
                   "send exactly one of the inputs|expected 1 inputs|input"),
    ]
    assert_battery(server, cases, encoded(png_bytes(LINES[0])))


@pytest.mark.triton
@pytest.mark.parametrize("model", ["crnn_line_text", "trocr_text"])
def test_alpha_and_16_bit_lines_read_as_their_8_bit_rgb(server, model):
    from PIL import Image

    line = LINES[1] if LINES[1].shape[2] == 3 else np.repeat(LINES[1], 3, axis=2)
    expected = infer("http", server.http_url, model, encoded=[png_bytes(line)])
    buffer = io.BytesIO()
    Image.fromarray(np.dstack([line, np.full(line.shape[:2], 90, dtype=np.uint8)]), "RGBA").save(buffer, "PNG")
    assert infer("http", server.http_url, model, encoded=[buffer.getvalue()]) == expected
    gray = line[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(gray.astype(np.uint16) * 257).save(buffer, "PNG")
    assert infer("http", server.http_url, model, encoded=[buffer.getvalue()]) == \
        infer("http", server.http_url, model, encoded=[png_bytes(np.dstack([gray] * 3))])