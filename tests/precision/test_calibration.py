"""Calibration data sources: arrays, tokenized text, images, synthetic; and the user errors for each."""

import numpy as np
import pytest

from trt_converters.calibration import load_calibration_data
from trt_converters.errors import UserError
from trt_converters.shapes import profiles_for
from trt_converters.spec import IOSpec

TEXT_IO = IOSpec.model_validate({
    "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1], "opt_shape": [8], "min_shape": [1],
                "max_shape": [16]},
               {"name": "attention_mask", "dtype": "float32", "shape": [-1], "opt_shape": [8], "min_shape": [1],
                "max_shape": [16]},
               {"name": "token_type_ids", "dtype": "int32", "shape": [-1], "opt_shape": [8], "min_shape": [1],
                "max_shape": [16]}],
    "outputs": [{"name": "scores", "dtype": "float32", "shape": [2]}]})
IMAGE_IO = IOSpec.model_validate({"inputs": [{"name": "images", "dtype": "float32", "shape": [3, 6, 8]}],
                                  "outputs": [{"name": "logits", "dtype": "float32", "shape": [4]}]})
VECTOR_IO = IOSpec.model_validate({"inputs": [{"name": "x", "dtype": "float32", "shape": [5]},
                                              {"name": "ids", "dtype": "int64", "shape": [3]}],
                                   "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}]})


def _profiles(io):
    return profiles_for(io, max_batch_size=4)


def _vector_arrays(n=6):
    rng = np.random.default_rng(0)
    return {"x": rng.standard_normal((n, 5)).astype(np.float32), "ids": rng.integers(0, 9, (n, 3))}


def test_npz_and_npy_folder(tmp_path):
    arrays = _vector_arrays()
    np.savez(tmp_path / "calib.npz", **arrays, unused=np.zeros(3))
    loaded = load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=tmp_path / "calib.npz", samples=4)
    assert set(loaded) == {"x", "ids"} and loaded["x"].shape == (4, 5)
    np.testing.assert_array_equal(loaded["ids"], arrays["ids"][:4])

    folder = tmp_path / "arrays"
    folder.mkdir()
    np.save(folder / "x.npy", arrays["x"].astype(np.float64))  # cast within the float kind is accepted
    np.save(folder / "ids.npy", arrays["ids"])
    loaded = load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=folder, samples=None)
    assert loaded["x"].dtype == np.float32 and loaded["x"].shape == (6, 5)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.zeros((2, 5), np.float32)}, "no array for input\\(s\\) 'ids'"),
    ({"x": np.zeros((2, 5), np.float32), "ids": np.zeros((2, 3), np.float32)}, "'ids' is float32 but the IO spec"),
    ({"x": np.zeros((2, 5, 1), np.float32), "ids": np.zeros((2, 3), np.int64)}, "needs rank 2"),
    ({"x": np.zeros((2, 4), np.float32), "ids": np.zeros((2, 3), np.int64)}, "size 4 on dim 1"),
    ({"x": np.zeros((2, 5), np.float32), "ids": np.zeros((3, 3), np.int64)}, "different sample counts"),
])
def test_array_errors(arrays, message, tmp_path):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(UserError, match=message):
        load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=tmp_path / "bad.npz", samples=None)


def test_missing_source_and_empty_folder(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=tmp_path / "nope.npz", samples=None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no .npy files and no images"):
        load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=tmp_path / "empty", samples=None)
    (tmp_path / "one.npy").write_bytes(b"")
    with pytest.raises(UserError, match="single .npy file"):
        load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=tmp_path / "one.npy", samples=None)


def _word_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[PAD]": 0, "[UNK]": 1, "hello": 2, "world": 3, "tiny": 4, "model": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / "tokenizer.json"
    tokenizer.save(str(path))
    return path, tokenizer


def test_text_with_tokenizer_json_and_folder(tmp_path):
    from transformers import PreTrainedTokenizerFast

    tokenizer_file, tokenizer = _word_tokenizer(tmp_path)
    text = tmp_path / "lines.txt"
    text.write_text("hello world\n\nhello tiny unknown model " + "world " * 20 + "\n")
    loaded = load_calibration_data(TEXT_IO, _profiles(TEXT_IO), source=text, samples=None,
                                   tokenizer_path=tokenizer_file)
    assert loaded["input_ids"].shape == (2, 8) and loaded["input_ids"].dtype == np.int64
    np.testing.assert_array_equal(loaded["input_ids"][0], [2, 3, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(loaded["input_ids"][1], [2, 4, 1, 5, 3, 3, 3, 3])
    assert loaded["attention_mask"].dtype == np.float32
    np.testing.assert_array_equal(loaded["attention_mask"][0], [1, 1, 0, 0, 0, 0, 0, 0])
    assert loaded["token_type_ids"].dtype == np.int32 and not loaded["token_type_ids"].any()

    folder = tmp_path / "tok"
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="[PAD]", unk_token="[UNK]").save_pretrained(folder)
    from_folder = load_calibration_data(TEXT_IO, _profiles(TEXT_IO), source=text, samples=1, tokenizer_path=folder)
    np.testing.assert_array_equal(from_folder["input_ids"], loaded["input_ids"][:1])
    np.testing.assert_array_equal(from_folder["attention_mask"], loaded["attention_mask"][:1])


def test_text_errors(tmp_path):
    text = tmp_path / "lines.txt"
    text.write_text("hello world\n")
    with pytest.raises(UserError, match="pass --tokenizer"):
        load_calibration_data(TEXT_IO, _profiles(TEXT_IO), source=text, samples=None)
    tokenizer_file, _ = _word_tokenizer(tmp_path)
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(UserError, match="is empty"):
        load_calibration_data(TEXT_IO, _profiles(TEXT_IO), source=tmp_path / "empty.txt", samples=None,
                              tokenizer_path=tokenizer_file)
    with pytest.raises(UserError, match="input 'x'"):
        load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=text, samples=None, tokenizer_path=tokenizer_file)


def test_images_resized_scaled_and_ordered(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    pixels = np.zeros((12, 16, 3), np.uint8)
    pixels[..., 0], pixels[..., 2] = 255, 51  # pure red channel 255, blue 51
    Image.fromarray(pixels).save(folder / "a.png")
    Image.fromarray(pixels).resize((10, 10)).save(folder / "b.jpg", quality=100)
    (folder / "notes.txt").write_text("ignored")

    rgb = load_calibration_data(IMAGE_IO, _profiles(IMAGE_IO), source=folder, samples=None)
    assert rgb["images"].shape == (2, 3, 6, 8) and rgb["images"].dtype == np.float32
    np.testing.assert_allclose(rgb["images"][0, :, 0, 0], [1.0, 0.0, 0.2], atol=1e-6)

    options = {"channels": "bgr", "scale": 1, "mean": [10, 0, 0], "std": [2, 1, 1]}
    bgr = load_calibration_data(IMAGE_IO, _profiles(IMAGE_IO), source=folder, samples=1, image_options=options)
    assert bgr["images"].shape == (1, 3, 6, 8)
    np.testing.assert_allclose(bgr["images"][0, :, 0, 0], [(51 - 10) / 2, 0.0, 255.0], atol=1e-4)


def test_image_errors(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (4, 4)).save(folder / "a.png")
    with pytest.raises(UserError, match="unknown image option"):
        load_calibration_data(IMAGE_IO, _profiles(IMAGE_IO), source=folder, samples=None, image_options={"gamma": 2})
    with pytest.raises(UserError, match="channels 'rgba'"):
        load_calibration_data(IMAGE_IO, _profiles(IMAGE_IO), source=folder, samples=None,
                              image_options={"channels": "rgba"})
    with pytest.raises(UserError, match="one float input"):
        load_calibration_data(VECTOR_IO, _profiles(VECTOR_IO), source=folder, samples=None)
    with pytest.raises(UserError, match="folder holding the images"):
        load_calibration_data(IMAGE_IO, _profiles(IMAGE_IO), source=folder / "a.png", samples=None)


def test_synthetic_samples_warn(tmp_path):
    with pytest.warns(UserWarning, match="not representative"):
        arrays = load_calibration_data(TEXT_IO, _profiles(TEXT_IO), source=None, samples=5)
    assert arrays["input_ids"].shape == (5, 8) and arrays["attention_mask"].dtype == np.float32
    with pytest.raises(UserError, match="must be >= 1"):
        load_calibration_data(TEXT_IO, _profiles(TEXT_IO), source=None, samples=0)
