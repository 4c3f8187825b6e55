"""Sensitivity-driven INT8: the search for nodes to keep out of INT8, calibration auto, and the divergence report."""

import pytest

from trt_converters.errors import UserError
from trt_converters.precision.options import PrecisionOptions
from trt_converters.precision import lower_graph
from trt_converters.precision.diagnose import diagnose_divergence, run_like_tensorrt
from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets, failure_message


def test_search_brings_the_outlier_model_within_budget_and_builds(exported, calibration_npz, rtx_build, tmp_path):
    model = exported("outlier")
    npz = calibration_npz(model)
    result = lower_graph(model.onnx_path, tmp_path / "outlier.int8.onnx", PrecisionOptions(mode="int8", calib_data=npz),
                         io=model.io, profiles=model.profiles)
    details = result.details
    assert details["error_over_budget"] > 1.0, details  # the plain INT8 graph misses its budget
    assert details["excluded_nodes"] == ["/middle/Gemm"], details
    assert details["search_met_budget"] and details["error_over_budget_after_search"] <= 1.0
    assert details["sensitivity"][0]["nodes"] == "/middle/Gemm"
    assert 0.5 < details["int8_flop_fraction"] < 0.9  # the first layer (most FLOPs) stays INT8
    assert any("kept 1 node(s) out of INT8 (/middle/Gemm)" in note for note in result.notes)

    inputs = model.verification_inputs()
    comparisons = compare_output_sets(model.torch_outputs(inputs), run_like_tensorrt(result.path, inputs),
                                      DEFAULT_TOLERANCES["int8"])
    assert all(c.passed for c in comparisons), failure_message("searched", comparisons, DEFAULT_TOLERANCES["int8"])
    rtx_build(result.path, model.profiles)

    plain = lower_graph(model.onnx_path, tmp_path / "plain.int8.onnx",
                        PrecisionOptions(mode="int8", calib_data=npz, int8_search=False),
                        io=model.io, profiles=model.profiles)
    assert "excluded_nodes" not in plain.details and not plain.details["met_budget_on_calibration_samples"]
    divergence = diagnose_divergence(model.onnx_path, plain.path, inputs[-1])
    assert divergence is not None and divergence.node_name == "/middle/Gemm", divergence
    assert divergence.tensor == "/middle/Gemm_output_0" and divergence.node_type == "Gemm"
    assert "/middle/Gemm" in divergence.action and "--int8-search" in divergence.action


def test_calibration_auto_keeps_the_smallest_error(exported, calibration_npz, tmp_path):
    model = exported("text")
    result = lower_graph(model.onnx_path, tmp_path / "text.int8.onnx",
                         PrecisionOptions(mode="int8", calib_data=calibration_npz(model), calib_method="auto",
                                          calib_percentile=99.9),
                         io=model.io, profiles=model.profiles)
    errors = result.details["calib_method_errors"]
    assert set(errors) == {"max", "percentile", "entropy"}
    assert result.details["calib_method"] == min(errors, key=errors.get)
    assert any("percentile 99.9," in note for note in result.notes), result.notes


def test_method_table_serves_both_int8_paths():
    from trt_converters.precision.methods import resolve_method

    assert resolve_method("MinMax").name == "max" and resolve_method("minmax", path="onnxruntime").onnxruntime == "MinMax"
    assert resolve_method("percentile", path="onnxruntime").onnxruntime == "Percentile"
    with pytest.raises(UserError, match="not available for --onnx-int8"):
        resolve_method("auto", path="onnxruntime")
    with pytest.raises(UserError, match="not available for --use-int8"):
        resolve_method("distribution")
    with pytest.raises(UserError, match="'kl' is unknown"):
        resolve_method("kl")


def test_forced_search_halves_the_error_and_keeps_most_flops_in_int8(exported, calibration_npz, tmp_path):
    model = exported("bert")
    result = lower_graph(model.onnx_path, tmp_path / "bert.int8.onnx",
                         PrecisionOptions(mode="int8", calib_data=calibration_npz(model), int8_search=True),
                         io=model.io, profiles=model.profiles)
    details = result.details
    assert details["search"] == "asked for (--int8-search)"
    assert details["search_target_error_over_budget"] == pytest.approx(details["error_over_budget"] / 2, abs=1e-3)
    if details["search_met_budget"]:
        assert details["excluded_nodes"]
        assert details["error_over_budget_after_search"] <= details["search_target_error_over_budget"]
    assert details["int8_flop_fraction"] >= 0.5  # the search never keeps more than half of the INT8 FLOPs out
    assert len(details["sensitivity"]) >= 2
