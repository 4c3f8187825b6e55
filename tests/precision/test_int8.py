"""INT8 Q/DQ lowering with ModelOpt: calibration, the calibration cache, method names, TensorRT-RTX builds."""

import numpy as np
import pytest

from trt_converters.errors import UserError
from trt_converters.precision.diagnose import run_like_tensorrt
from trt_converters.precision.options import PrecisionOptions
from trt_converters.precision import lower_graph
from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets, failure_message

MODEL_NAMES = ("mlp", "cnn", "text", "bert")


def _op_counts(path) -> dict:
    import collections

    import onnx

    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("precision", ["int8", "int8_fp16"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_int8_within_budget_and_builds(name, precision, exported, calibration_npz, rtx_build, tmp_path):
    import onnx

    model = exported(name)
    result = lower_graph(model.onnx_path, tmp_path / f"{name}.{precision}.onnx",
                         PrecisionOptions(mode=precision, calib_data=calibration_npz(model)),
                         io=model.io, profiles=model.profiles)
    ops = _op_counts(result.path)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0, result.notes
    initializer_types = {i.data_type for i in onnx.load(str(result.path)).graph.initializer}
    assert (onnx.TensorProto.FLOAT16 in initializer_types) == (precision == "int8_fp16")
    assert not any("synthetic" in n for n in result.notes)

    inputs = model.verification_inputs()
    comparisons = compare_output_sets(model.torch_outputs(inputs), run_like_tensorrt(result.path, inputs),
                                      DEFAULT_TOLERANCES["int8"])
    assert all(c.passed for c in comparisons), failure_message(precision, comparisons, DEFAULT_TOLERANCES["int8"])
    rtx_build(result.path, model.profiles)


def test_second_lowering_is_served_from_the_cache(exported, calibration_npz, tmp_path, monkeypatch):
    import onnx
    from onnx import numpy_helper

    import trt_converters.calibration as calibration
    from trt_converters.precision.calibration_cache import read_cache_scales

    model = exported("cnn")
    cache = tmp_path / "cnn.calib"
    first = lower_graph(model.onnx_path, tmp_path / "first.onnx",
                        PrecisionOptions(mode="int8", calib_data=calibration_npz(model), calibration_cache=cache),
                        io=model.io, profiles=model.profiles)
    assert cache.is_file() and any("calibration cache written" in n for n in first.notes)
    cached = read_cache_scales(cache)
    assert cached and all(scale > 0 for scale in cached.values())
    written = cache.read_bytes()

    def must_not_run(*args, **kwargs):
        raise AssertionError("calibration data was loaded although the cache matches")

    monkeypatch.setattr(calibration, "load_calibration_data", must_not_run)
    second = lower_graph(model.onnx_path, tmp_path / "second.onnx",
                         PrecisionOptions(mode="int8", calib_data=tmp_path / "gone.npz", calibration_cache=cache),
                         io=model.io, profiles=model.profiles)
    assert any("calibration data not read" in n for n in second.notes)
    assert cache.read_bytes() == written

    def activation_scales(path):
        graph = onnx.load(str(path)).graph
        inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        return {n.input[1]: float(inits[n.input[1]]) for n in graph.node
                if n.op_type == "QuantizeLinear" and n.input[0] not in inits and inits[n.input[1]].size == 1}

    assert activation_scales(second.path) == activation_scales(first.path)
    inputs = model.verification_inputs()[:1]
    np.testing.assert_array_equal(run_like_tensorrt(first.path, inputs)[0]["logits"],
                                  run_like_tensorrt(second.path, inputs)[0]["logits"])


def test_cache_of_another_graph_is_recalibrated(exported, calibration_npz, tmp_path):
    mlp, cnn = exported("mlp"), exported("cnn")
    cache = tmp_path / "shared.calib"
    lower_graph(mlp.onnx_path, tmp_path / "mlp.onnx",
                PrecisionOptions(mode="int8", calib_data=calibration_npz(mlp), calibration_cache=cache),
                io=mlp.io, profiles=mlp.profiles)
    result = lower_graph(cnn.onnx_path, tmp_path / "cnn.onnx",
                         PrecisionOptions(mode="int8", calib_data=calibration_npz(cnn), calibration_cache=cache),
                         io=cnn.io, profiles=cnn.profiles)
    assert any("was made for another FP32 graph" in n for n in result.notes)


def test_unknown_calibration_method_is_a_user_error(exported, tmp_path):
    model = exported("mlp")
    with pytest.raises(UserError, match="--calib-method 'kl' is unknown; use one of auto, distribution, entropy, max, minmax, percentile"):
        lower_graph(model.onnx_path, tmp_path / "x.onnx", PrecisionOptions(mode="int8", calib_method="kl"),
                    io=model.io, profiles=model.profiles)
    assert not (tmp_path / "x.onnx").exists()


def test_percentile_clips_below_max_and_is_cached(exported, tmp_path, monkeypatch):
    import onnx

    import trt_converters.calibration as calibration
    from trt_converters.precision.calibration_cache import read_cache_header, read_cache_scales
    from trt_converters.precision.int8 import activation_scales

    model = exported("cnn")
    npz = tmp_path / "normal.npz"  # a Gaussian tail, where the 99.99th percentile sits clearly below the max
    np.savez(npz, images=np.random.default_rng(0).standard_normal((32, 3, 32, 32)).astype(np.float32))
    caches = {method: tmp_path / f"{method}.calib" for method in ("max", "percentile")}
    results = {method: lower_graph(model.onnx_path, tmp_path / f"{method}.onnx",
                                   PrecisionOptions(mode="int8_fp16", calib_data=npz, calib_method=method,
                                                    calibration_cache=caches[method]),
                                   io=model.io, profiles=model.profiles)
               for method in ("max", "percentile")}
    assert any("percentile 99.99 over 32 samples" in n for n in results["percentile"].notes)
    max_scales, clipped = read_cache_scales(caches["max"]), read_cache_scales(caches["percentile"])
    assert max_scales and set(clipped) == set(max_scales)
    assert all(clipped[name] <= max_scales[name] * 1.001 for name in clipped)  # max is FP16-rounded here
    assert any(clipped[name] < max_scales[name] * 0.99 for name in clipped)
    in_graph = activation_scales(onnx.load(str(results["percentile"].path)))
    assert set(in_graph) == set(clipped)
    assert all(abs(in_graph[name] - clipped[name]) <= 1e-3 * clipped[name] for name in clipped)  # FP16 rounding

    inputs = model.verification_inputs()
    comparisons = compare_output_sets(model.torch_outputs(inputs),
                                      run_like_tensorrt(results["percentile"].path, inputs), DEFAULT_TOLERANCES["int8"])
    assert all(c.passed for c in comparisons), failure_message("percentile", comparisons, DEFAULT_TOLERANCES["int8"])

    monkeypatch.setattr(calibration, "load_calibration_data", lambda *a, **k: pytest.fail("recalibrated"))
    again = lower_graph(model.onnx_path, tmp_path / "again.onnx",
                        PrecisionOptions(mode="int8_fp16", calib_method="percentile",
                                         calibration_cache=caches["percentile"]),
                        io=model.io, profiles=model.profiles)
    assert any("method percentile 99.99); calibration data not read" in n for n in again.notes)
    assert _op_counts(again.path)["QuantizeLinear"] == _op_counts(results["percentile"].path)["QuantizeLinear"]

    monkeypatch.undo()  # another percentile: its scales differ, so the cache must not serve it
    other = lower_graph(model.onnx_path, tmp_path / "other.onnx",
                        PrecisionOptions(mode="int8_fp16", calib_data=npz, calib_method="percentile",
                                         calib_percentile=99.0, calibration_cache=caches["percentile"]),
                        io=model.io, profiles=model.profiles)
    assert any("was made for method percentile 99.99: recalibrated" in n for n in other.notes), other.notes
    assert read_cache_header(caches["percentile"]).percentile == 99.0
    assert read_cache_scales(caches["percentile"]) != clipped


def test_cache_header_records_the_percentile(tmp_path):
    from trt_converters.precision.calibration_cache import CacheHeader, cache_serves, read_cache_header, write_cache

    cache = tmp_path / "p.calib"
    write_cache(cache, CacheHeader("percentile", "abc", "x:8x4", 99.9), {"t": 0.5})
    header = read_cache_header(cache)
    assert header == CacheHeader("percentile", "abc", "x:8x4", 99.9)
    assert cache_serves(header, "abc", "percentile", 99.9) and cache_serves(header, "abc", "auto", 99.9)
    assert not cache_serves(header, "abc", "percentile", 99.99) and not cache_serves(header, "abc", "auto", 99.99)
    assert not cache_serves(header, "abc", "max", 99.9) and not cache_serves(header, "other", "percentile", 99.9)

    older = tmp_path / "older.calib"  # written before the percentile was recorded: its percentile is unknown
    older.write_text("TRT-trt_converters-percentile model-sha256=abc shapes=x:8x4\nt: 3f000000\n")
    header = read_cache_header(older)
    assert header.percentile is None and header.describe() == "percentile (value not recorded)"
    assert not any(cache_serves(header, "abc", method, 99.99) for method in ("percentile", "auto"))

    write_cache(cache, CacheHeader("max", "abc", "x:8x4"), {"t": 0.5})  # other methods: no percentile
    assert "percentile" not in cache.read_text().splitlines()[0]
    assert cache_serves(read_cache_header(cache), "abc", "max", 99.9)


def test_entropy_calibration(exported, calibration_npz, tmp_path):
    model = exported("mlp")
    result = lower_graph(model.onnx_path, tmp_path / "mlp.onnx",
                         PrecisionOptions(mode="int8", calib_data=calibration_npz(model), calib_method="entropy"),
                         io=model.io, profiles=model.profiles)
    assert any("entropy over 32 samples" in n for n in result.notes)
    inputs = model.verification_inputs()
    comparisons = compare_output_sets(model.torch_outputs(inputs), run_like_tensorrt(result.path, inputs),
                                      DEFAULT_TOLERANCES["int8"])
    assert all(c.passed for c in comparisons)


def test_synthetic_calibration_warns_loudly(exported, tmp_path):
    model = exported("mlp")
    with pytest.warns(UserWarning, match="synthetic calibration data"):
        result = lower_graph(model.onnx_path, tmp_path / "mlp.onnx", PrecisionOptions(mode="int8", calib_samples=8),
                             io=model.io, profiles=model.profiles)
    assert any("not representative" in n for n in result.notes)
    assert any("over 8 samples" in n for n in result.notes)


def test_text_model_calibrated_from_tokenized_lines(exported, tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    words = ["[PAD]", "[UNK]"] + [f"w{i}" for i in range(40)]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.save(str(tmp_path / "tokenizer.json"))
    rng = np.random.default_rng(3)
    lines = [" ".join(f"w{i}" for i in rng.integers(0, 40, rng.integers(3, 20))) for _ in range(24)]
    (tmp_path / "calib.txt").write_text("\n".join(lines) + "\n")

    model = exported("text")  # inputs input_ids (int64) and input_mask (float32)
    result = lower_graph(model.onnx_path, tmp_path / "text.int8.onnx",
                         PrecisionOptions(mode="int8", calib_data=tmp_path / "calib.txt",
                                          tokenizer_path=tmp_path / "tokenizer.json"),
                         io=model.io, profiles=model.profiles)
    assert any("over 24 samples" in n for n in result.notes), result.notes
    inputs = model.verification_inputs()
    comparisons = compare_output_sets(model.torch_outputs(inputs), run_like_tensorrt(result.path, inputs),
                                      DEFAULT_TOLERANCES["int8"])
    assert all(c.passed for c in comparisons), failure_message("int8", comparisons, DEFAULT_TOLERANCES["int8"])
