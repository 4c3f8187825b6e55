"""Outlier input channels of INT8 MatMuls computed apart, and activation ranges that leave padding out."""

import numpy as np
import pytest

from trt_converters.onnx_runner import run_onnx_models
from trt_converters.precision.options import PrecisionOptions
from trt_converters.precision import lower_graph
from trt_converters.precision.diagnose import run_like_tensorrt
from trt_converters.precision.int8_search import budget_ratio
from trt_converters.verify import DEFAULT_TOLERANCES

PLANTED = "layer.1/attention/output/LayerNorm"  # conftest's bert_outlier: this LayerNorm's channel 5 is x40


def _folded(model):
    import onnx

    from trt_converters.precision.fp16 import fold_constants

    return fold_constants(onnx.load(str(model.onnx_path)))


def _ranges(folded, data):
    from trt_converters.precision.outlier_channels import channel_ranges, token_mask_input, weight_matmul_inputs

    return channel_ranges(folded, list(weight_matmul_inputs(folded)), data, 8, token_mask_input(folded))


def test_the_planted_channel_is_split_off_and_the_function_is_unchanged(exported, calibration_npz, tmp_path):
    from trt_converters.onnx_files import save_model
    from trt_converters.precision.outlier_channels import choose_outliers, side_matmul_names, split_outlier_channels

    model = exported("bert_outlier")
    folded = _folded(model)
    outliers = choose_outliers(_ranges(folded, dict(np.load(calibration_npz(model)))))
    planted = [name for name in outliers if PLANTED in name]
    assert len(planted) == 1 and outliers[planted[0]][0] == 5, outliers

    split = split_outlier_channels(folded, outliers)
    assert len(side_matmul_names(split)) == sum(
        sum(n.op_type == "MatMul" and n.input[0] == name for n in folded.graph.node) for name in outliers)
    save_model(folded, tmp_path / "folded.onnx")
    save_model(split, tmp_path / "split.onnx")
    inputs = model.verification_inputs()
    before, after = run_onnx_models([tmp_path / "folded.onnx", tmp_path / "split.onnx"], inputs)
    for reference, candidate in zip(before, after):
        for name, value in reference.items():
            np.testing.assert_allclose(candidate[name], value, rtol=1e-4, atol=1e-4)


def test_ranges_do_not_depend_on_what_padded_positions_hold(exported):
    from trt_converters.shapes import synthetic_inputs

    model = exported("bert_outlier")
    folded = _folded(model)
    data = synthetic_inputs(model.io, {"input_ids": (16, 16), "attention_mask": (16, 16)}, seed=3)
    data["attention_mask"] = np.ones_like(data["attention_mask"])
    data["attention_mask"][:, 10:] = 0  # the last 6 positions are padding
    other = dict(data, input_ids=data["input_ids"].copy())
    other["input_ids"][:, 10:] = (other["input_ids"][:, 10:] + 37) % 100  # other tokens where the mask is 0
    first, second = _ranges(folded, data), _ranges(folded, other)
    assert first.keys() == second.keys() and first
    changed = 0
    for name in first:
        np.testing.assert_allclose(first[name].kept, second[name].kept, rtol=1e-5, atol=1e-6)
        assert np.all(first[name].kept <= first[name].every + 1e-6)
        changed += not np.allclose(first[name].every, second[name].every)
    assert changed, "the padded positions' tokens changed no range over all positions: the test proves nothing"


@pytest.fixture(scope="module")
def lowered(exported, tmp_path_factory):
    """bert_outlier in INT8 with and without the split (one calibration each), with a calibration cache."""
    from tests.precision.conftest import write_calibration_npz

    model = exported("bert_outlier")
    work = tmp_path_factory.mktemp("outliers")
    data = write_calibration_npz(model, work / "calib.npz")
    graphs = {}
    for split in (True, False):
        graphs[split] = lower_graph(model.onnx_path, work / f"split-{split}.onnx",
                                    PrecisionOptions(mode="int8", calib_data=data, int8_outlier_channels=split,
                                                     calibration_cache=work / f"split-{split}.calib",
                                                     int8_search=False),
                                    io=model.io, profiles=model.profiles)
    return model, graphs, work


def test_splitting_outlier_channels_cuts_the_int8_error_and_builds(lowered, rtx_build):
    model, graphs, work = lowered
    inputs = model.verification_inputs()
    references = run_onnx_models([model.onnx_path], inputs)[0]
    errors = {}
    for split, result in graphs.items():
        outputs = run_like_tensorrt(result.path, inputs)
        # The hidden states read the planted channel's MatMul; the pooler's error is its own Gemm's, alike in both.
        errors[split] = float(np.sqrt(sum(np.sum((o["last_hidden_state"] - r["last_hidden_state"]) ** 2)
                                          for o, r in zip(outputs, references))
                                      / sum(np.sum(r["last_hidden_state"] ** 2) for r in references)))
        assert budget_ratio(references, outputs, DEFAULT_TOLERANCES["int8"]) <= 1.0
    assert errors[True] < 0.6 * errors[False], errors  # measured: 2.2x lower
    assert any(PLANTED in name for name in graphs[True].details["outlier_channels"])
    assert any("outlier channel" in note for note in graphs[True].notes)
    assert graphs[False].details["outlier_channels"] == {}
    rtx_build(graphs[True].path, model.profiles)


def test_the_cache_records_the_split_and_reproduces_it(lowered, monkeypatch):
    import onnx

    import trt_converters.calibration as calibration
    from trt_converters.precision.calibration_cache import read_cache_header, read_cache_scales
    from trt_converters.precision.outlier_channels import side_matmul_names

    model, graphs, work = lowered
    cache = work / "split-True.calib"
    header = read_cache_header(cache)
    assert {k: len(v) for k, v in header.outliers.items()} == graphs[True].details["outlier_channels"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("calibration data was loaded although the cache matches")

    monkeypatch.setattr(calibration, "load_calibration_data", must_not_run)
    again = lower_graph(model.onnx_path, work / "from-cache.onnx",
                        PrecisionOptions(mode="int8", calibration_cache=cache, int8_search=False),
                        io=model.io, profiles=model.profiles)
    first, second = onnx.load(str(graphs[True].path)), onnx.load(str(again.path))
    assert side_matmul_names(second) == side_matmul_names(first) and side_matmul_names(first)
    scales = read_cache_scales(cache)
    assert any(name.endswith("_inlier_channels") for name in scales)
    # Without the split, that cache does not fit: recalibrated, not reused.
    monkeypatch.undo()
    refused = lower_graph(model.onnx_path, work / "no-split.onnx",
                          PrecisionOptions(mode="int8", calibration_cache=cache, int8_search=False,
                                           int8_outlier_channels=False, calib_data=work / "calib.npz"),
                          io=model.io, profiles=model.profiles)
    assert any("recalibrated" in note for note in refused.notes), refused.notes
