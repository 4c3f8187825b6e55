"""OCR model scripts: checkpoint loading, greedy decoding vs Hugging Face generate, ONNX export
verified with ONNX Runtime at shapes other than the export sample, and real TensorRT-RTX builds."""
import importlib.util
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from trt_converters.serving_runtime.ctc import ctc_greedy_decode, ctc_labels  # noqa: E402
from trt_converters.serving_runtime.ocr_decoding import greedy_decode, strip_special_tokens  # noqa: E402

START, PAD = 2, 1
ENCODERS = {
    "vit": dict(model_type="vit", image_size=[32, 96], patch_size=16, num_channels=3, hidden_size=32,
                num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
    "deit": dict(model_type="deit", image_size=[32, 96], patch_size=16, num_channels=3, hidden_size=48,
                 num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
}
# init_std well above the default keeps the top logits apart, so argmax is not decided by rounding.
DECODER = dict(model_type="trocr", vocab_size=40, d_model=48, decoder_layers=2, decoder_attention_heads=2,
               decoder_ffn_dim=64, max_position_embeddings=64, init_std=0.3, bos_token_id=0, pad_token_id=PAD,
               decoder_start_token_id=START)


def load_script(name):
    spec = importlib.util.spec_from_file_location(f"_ocr_script_{name}", ROOT / "model_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_trocr(encoder_kind):
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, VisionEncoderDecoderModel

    torch.manual_seed(0)
    enc = dict(ENCODERS[encoder_kind])
    dec = dict(DECODER)
    enc_cfg = AutoConfig.for_model(enc.pop("model_type"), **enc)
    dec_cfg = AutoConfig.for_model(dec.pop("model_type"), **dec)
    model = VisionEncoderDecoderModel(
        encoder=AutoModel.from_config(enc_cfg, attn_implementation="eager"),
        decoder=AutoModelForCausalLM.from_config(dec_cfg, attn_implementation="eager"),
    )
    return model.eval()


def torch_callables(encoder, decoder):
    def encode(pixel_values):
        with torch.no_grad():
            return encoder(torch.from_numpy(pixel_values)).numpy()

    def decode(ids, hidden):
        with torch.no_grad():
            return decoder(torch.from_numpy(ids), torch.from_numpy(hidden)).numpy()

    return encode, decode


def ort_callables(encoder_path, decoder_path):
    import onnxruntime as ort

    enc = ort.InferenceSession(str(encoder_path), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(str(decoder_path), providers=["CPUExecutionProvider"])
    return (
        lambda px: enc.run(None, {"pixel_values": px})[0],
        lambda ids, h: dec.run(None, {"decoder_input_ids": ids, "encoder_hidden_states": h})[0],
    )


def export_legacy(module, args, path, input_names, output_names, dynamic_axes):
    # The legacy exporter traces these models with the dynamic dims intact (checked below at
    # other shapes) and takes a fraction of a second; the dynamo exporter takes ~7 s here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic_axes, opset_version=17, dynamo=False)
    return path


def build_trt_engine(onnx_path, profile):
    """Real TensorRT-RTX build through the converter's builder (strongly typed, one profile)."""
    pytest.importorskip("tensorrt_rtx")
    from trt_converters.build import BuildOptions, build_engine
    from trt_converters.shapes import ShapeProfile

    profiles = {name: ShapeProfile(*shapes) for name, shapes in profile.items()}
    engine = Path(onnx_path).with_suffix(".plan")
    result = build_engine(onnx_path, engine, profiles, BuildOptions(memory_pool_limit=1 << 28, progress=False))
    assert result.engine_bytes > 0 and engine.stat().st_size == result.engine_bytes
    return result


# ------------------------------------------------------------------------- greedy decode (numpy)

def scripted_decoder(script, vocab=6):
    """A fake decoder whose next token for row r at step t is script[r][t]; records call batch sizes."""
    calls = []

    def decode(ids, hidden):
        calls.append(ids.shape[0])
        logits = np.zeros((ids.shape[0], ids.shape[1], vocab), dtype=np.float32)
        for i, row_id in enumerate(hidden[:, 0, 0].astype(int)):
            logits[i, -1, script[row_id][ids.shape[1] - 1]] = 1.0
        return logits

    return decode, calls


def test_greedy_decode_pads_finished_rows_and_stops_early():
    rows = np.arange(3, dtype=np.float32).reshape(3, 1, 1)  # the "hidden state" carries the row id
    decode, calls = scripted_decoder([[4, 5, 3, 4], [3, 0, 0, 0], [5, 4, 4, 3]])
    ids = greedy_decode(lambda px: px, decode, rows, start_token_id=0, eos_token_id=3, max_length=10, pad_token_id=1)
    assert ids.tolist() == [[0, 4, 5, 3, 1], [0, 3, 1, 1, 1], [0, 5, 4, 4, 3]]
    assert calls == [3, 2, 2, 1]  # finished rows are left out of later calls
    assert [strip_special_tokens(r, start_token_id=0, eos_token_id=3, pad_token_id=1) for r in ids] == \
        [[4, 5], [], [5, 4, 4]]


def test_greedy_decode_max_length_counts_the_start_token():
    decode, calls = scripted_decoder([[4, 4, 4, 4]])
    ids = greedy_decode(lambda px: px, decode, np.zeros((1, 1, 1), np.float32),
                        start_token_id=0, eos_token_id=3, max_length=3)
    assert ids.tolist() == [[0, 4, 4]] and calls == [1, 1]
    assert greedy_decode(lambda px: px, decode, np.zeros((1, 1, 1), np.float32),
                         start_token_id=0, eos_token_id=3, max_length=1).tolist() == [[0]]


# ----------------------------------------------------------------------------------------- TrOCR

@pytest.fixture(scope="module", params=["vit", "deit"])
def trocr(request, tmp_path_factory):
    script = load_script("ocr_trocr")
    reference = reference_trocr(request.param)
    checkpoint = tmp_path_factory.mktemp(f"trocr_{request.param}") / "model.pt"
    torch.save(reference.state_dict(), checkpoint)
    kwargs = script.TrOCREncoder.hf_config_to_kwargs(reference.config.to_dict())
    full = torch.load(checkpoint, weights_only=True)
    encoder = script.TrOCREncoder(**kwargs).eval()
    decoder = script.TrOCRDecoder(**kwargs).eval()
    encoder.load_state_dict(encoder.adapt_state_dict(full), strict=True)
    decoder.load_state_dict(decoder.adapt_state_dict(full), strict=True)
    eos = pick_eos(encoder, decoder)
    return reference, encoder, decoder, eos


def pick_eos(encoder, decoder):
    """An end token that random weights emit mid-sequence in some rows and never in others.

    eos only decides where decoding stops, never the logits, so a probe run without stopping
    shows which token makes rows end at different lengths (exercising the pad path).
    """
    probe = greedy_decode(*torch_callables(encoder, decoder), images(4, seed=1),
                          start_token_id=START, eos_token_id=-1, max_length=12)[:, 1:]
    for candidate in probe[:, 1:6].reshape(-1).tolist():
        if candidate not in (START, PAD) and any(candidate not in row for row in probe.tolist()):
            return candidate
    pytest.fail(f"no usable eos token in probe decode {probe.tolist()}")


def images(batch, seed):
    return torch.randn(batch, 3, 32, 96, generator=torch.Generator().manual_seed(seed)).numpy()


def test_adapt_state_dict_keeps_each_half(trocr):
    reference, encoder, decoder, _ = trocr
    full = reference.state_dict()
    enc_keys, dec_keys = set(encoder.adapt_state_dict(full)), set(decoder.adapt_state_dict(full))
    assert enc_keys.isdisjoint(dec_keys) and enc_keys | dec_keys == set(full)
    assert all(k.startswith("decoder.") for k in dec_keys)
    # A half checkpoint (already split) passes through unchanged.
    assert decoder.adapt_state_dict(decoder.state_dict()).keys() == decoder.state_dict().keys()


def test_greedy_decode_matches_hf_generate(trocr):
    reference, encoder, decoder, eos = trocr
    pixel_values = images(4, seed=1)
    with torch.no_grad():
        expected = reference.generate(torch.from_numpy(pixel_values), do_sample=False, num_beams=1, max_length=12,
                                      decoder_start_token_id=START, eos_token_id=eos, pad_token_id=PAD)
    ours = greedy_decode(*torch_callables(encoder, decoder), pixel_values,
                         start_token_id=START, eos_token_id=eos, max_length=12, pad_token_id=PAD)
    assert ours.tolist() == expected.tolist()


def test_onnx_export_greedy_decode_matches_pytorch(trocr, tmp_path):
    _, encoder, decoder, eos = trocr
    sample = images(2, seed=2)
    enc_path = export_legacy(encoder, (torch.from_numpy(sample),), tmp_path / "encoder.onnx",
                             ["pixel_values"], ["encoder_hidden_states"],
                             {"pixel_values": {0: "batch"}, "encoder_hidden_states": {0: "batch"}})
    hidden = encoder(torch.from_numpy(sample)).detach()
    dec_path = export_legacy(decoder, (torch.randint(0, 40, (2, 5)), hidden), tmp_path / "decoder.onnx",
                             ["decoder_input_ids", "encoder_hidden_states"], ["logits"],
                             {"decoder_input_ids": {0: "batch", 1: "length"}, "encoder_hidden_states": {0: "batch"},
                              "logits": {0: "batch", 1: "length"}})
    encode, decode = ort_callables(enc_path, dec_path)
    # Shapes away from the export sample (batch 2, length 5): batch 1 and 5, every length 1..15.
    for batch, seed in ((1, 3), (5, 4)):
        pixel_values = images(batch, seed)
        kwargs = dict(start_token_id=START, eos_token_id=eos, max_length=16, pad_token_id=PAD)
        expected = greedy_decode(*torch_callables(encoder, decoder), pixel_values, **kwargs)
        assert greedy_decode(encode, decode, pixel_values, **kwargs).tolist() == expected.tolist()
        with torch.no_grad():
            torch_hidden = encoder(torch.from_numpy(pixel_values)).numpy()
        np.testing.assert_allclose(encode(pixel_values), torch_hidden, atol=1e-4, rtol=1e-4)

    plan_enc = build_trt_engine(enc_path, {"pixel_values": ((1, 3, 32, 96), (4, 3, 32, 96), (8, 3, 32, 96))})
    seq, width = hidden.shape[1:]
    plan_dec = build_trt_engine(dec_path, {
        "decoder_input_ids": ((1, 1), (4, 16), (8, 32)),
        "encoder_hidden_states": ((1, seq, width), (4, seq, width), (8, seq, width)),
    })
    assert plan_enc.engine_bytes > 0 and plan_dec.engine_bytes > 0


def test_last_token_logits_decoder_exports_and_decodes_the_same(trocr, tmp_path):
    reference, encoder, decoder, eos = trocr
    script = load_script("ocr_trocr")
    kwargs = script.TrOCRDecoder.hf_config_to_kwargs(reference.config.to_dict())
    last_only = script.TrOCRDecoder(**kwargs, last_token_logits=True).eval()
    last_only.load_state_dict(decoder.state_dict(), strict=True)
    hidden = encoder(torch.from_numpy(images(2, seed=2))).detach()
    ids = torch.randint(0, 40, (2, 5))
    with torch.no_grad():
        assert last_only(ids, hidden).shape == (2, 1, 40)
        torch.testing.assert_close(last_only(ids, hidden), decoder(ids, hidden)[:, -1:])
    path = export_legacy(last_only, (ids, hidden), tmp_path / "decoder_last.onnx",
                         ["decoder_input_ids", "encoder_hidden_states"], ["logits"],
                         {"decoder_input_ids": {0: "batch", 1: "length"}, "encoder_hidden_states": {0: "batch"},
                          "logits": {0: "batch"}})
    enc_path = export_legacy(encoder, (torch.from_numpy(images(2, seed=2)),), tmp_path / "encoder.onnx",
                             ["pixel_values"], ["encoder_hidden_states"],
                             {"pixel_values": {0: "batch"}, "encoder_hidden_states": {0: "batch"}})
    pixel_values = images(3, seed=5)
    kw = dict(start_token_id=START, eos_token_id=eos, max_length=14, pad_token_id=PAD)
    expected = greedy_decode(*torch_callables(encoder, decoder), pixel_values, **kw)
    assert greedy_decode(*ort_callables(enc_path, path), pixel_values, **kw).tolist() == expected.tolist()


def test_rows_end_at_eos_and_pad_after(trocr):
    _, encoder, decoder, eos = trocr
    ids = greedy_decode(*torch_callables(encoder, decoder), images(4, seed=1),
                        start_token_id=START, eos_token_id=eos, max_length=12, pad_token_id=PAD)
    ended = [row for row in ids.tolist() if eos in row]
    assert ended and len(ended) < len(ids)
    for row in ended:
        assert set(row[row.index(eos) + 1:]) <= {PAD}
    stripped = [strip_special_tokens(r, start_token_id=START, eos_token_id=eos, pad_token_id=PAD) for r in ids]
    assert min(map(len, stripped)) < max(map(len, stripped))


# ------------------------------------------------------------------------------------------ CRNN

@pytest.fixture(scope="module")
def crnn():
    script = load_script("ocr_crnn")
    torch.manual_seed(0)
    return script.CRNN(num_classes=11, image_height=32, hidden_size=16, channels=(8, 16, 32, 32)).eval()


def test_crnn_output_steps_follow_width(crnn):
    with torch.no_grad():
        assert crnn(torch.rand(3, 1, 32, 100)).shape == (3, 25, 11)
        assert crnn(torch.rand(1, 1, 32, 32)).shape == (1, 8, 11)


def test_crnn_rejects_height_not_divisible():
    with pytest.raises(ValueError, match="multiple of 16"):
        load_script("ocr_crnn").CRNN(num_classes=5, image_height=40)


def test_crnn_export_dynamic_width_matches_pytorch(crnn, tmp_path):
    path = export_legacy(crnn, (torch.rand(2, 1, 32, 64),), tmp_path / "crnn.onnx", ["images"], ["logits"],
                         {"images": {0: "batch", 3: "width"}, "logits": {0: "batch", 1: "steps"}})
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    labels = ctc_labels("0123456789", 0)
    for batch, width in ((1, 32), (3, 100), (2, 512), (5, 36)):
        x = torch.rand(batch, 1, 32, width, generator=torch.Generator().manual_seed(width))
        with torch.no_grad():
            expected = crnn(x).numpy()
        got = session.run(None, {"images": x.numpy()})[0]
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)
        assert ctc_greedy_decode(got, labels) == ctc_greedy_decode(expected, labels)
    plan = build_trt_engine(path, {"images": ((1, 1, 32, 32), (4, 1, 32, 128), (16, 1, 32, 512))})
    assert plan.engine_bytes > 0


# ------------------------------------------------------------------------------- shipped configs

@pytest.mark.parametrize("config_name", ["crnn_line", "trocr_encoder", "trocr_decoder"])
def test_shipped_config_io_matches_model(config_name):
    """configs/<name>.yaml at full size: the model built from its kwargs produces the declared output
    shapes (on the meta device: shapes only, no weights or compute)."""
    from trt_converters.config_file import read_config_file
    from trt_converters.options import build_options

    options = build_options(read_config_file(ROOT / "configs" / f"{config_name}.yaml"), {})
    spec = importlib.util.spec_from_file_location(f"_cfg_{config_name}", options.model_script_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    io = options.model_io_config
    with torch.device("meta"):
        model = getattr(module, options.model_class_name)(**options.model_kwargs).eval()
        inputs = [torch.zeros([2, *[(t.opt_shape or t.shape)[i] if d == -1 else d for i, d in enumerate(t.shape)]],
                              dtype=getattr(torch, t.dtype)) for t in io.inputs]
        output = model(*inputs)
    declared = io.outputs[0].shape
    assert len(io.outputs) == 1 and output.dim() == len(declared) + 1
    assert all(d == -1 or d == got for d, got in zip(declared, output.shape[1:])), (declared, output.shape)
