"""ONNX Runtime-native INT8 lowering of a tiny RoBERTa graph, checked against PyTorch, and the refusals."""

import warnings
from collections import Counter
from pathlib import Path

import pytest

from trt_converters.errors import StageError, UserError
from trt_converters.onnx_runner import run_onnx_model
from trt_converters.onnxruntime_cpu import (
    OrtInt8Options,
    classify_int8_graph,
    is_onnxruntime_targeted,
    optimize_for_onnxruntime,
    quantize_for_onnxruntime,
    refuse_for_onnxruntime_cpu,
    refuse_for_tensorrt,
)
from trt_converters.onnxruntime_cpu.accuracy import INT8_TOLERANCE, accuracy_report
from trt_converters.onnxruntime_cpu.quantize import model_size_bytes
from trt_converters.verify import DEFAULT_TOLERANCES

TINY_LAYERS = 2  # conftest.TINY_KWARGS num_hidden_layers


def op_counts(path: Path) -> Counter:
    import onnx

    return Counter(node.op_type for node in onnx.load(str(path)).graph.node)


@pytest.fixture(scope="module")
def dynamic_int8(tiny_roberta, tmp_path_factory):
    out = tmp_path_factory.mktemp("dynamic") / "model.int8-dynamic.onnx"
    return quantize_for_onnxruntime(tiny_roberta.fp32_onnx, out, OrtInt8Options(mode="dynamic"), io=tiny_roberta.io)


@pytest.fixture(scope="module")
def static_int8(tiny_roberta, tmp_path_factory):
    from trt_converters.calibration import load_calibration_data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the synthetic-calibration warning is expected here
        calibration = load_calibration_data(tiny_roberta.io, tiny_roberta.profiles, source=None, samples=8)
    out = tmp_path_factory.mktemp("static") / "model.int8-static.onnx"
    return quantize_for_onnxruntime(tiny_roberta.fp32_onnx, out, OrtInt8Options(mode="static"),
                                    io=tiny_roberta.io, calibration=calibration)


def test_dynamo_export_carries_weight_shapes_that_quantize_dynamic_rejects(tiny_roberta, tmp_path):
    """The reason quantize_for_onnxruntime cleans metadata first; if the exporter stops writing stale
    weight shapes this documents it (skip), and quantization must still work (other tests)."""
    import onnx
    from onnxruntime.quantization import quantize_dynamic

    graph = onnx.load(str(tiny_roberta.fp32_onnx))
    weights = {t.name for t in graph.graph.initializer}
    if not any(v.name in weights for v in graph.graph.value_info):
        pytest.skip("this exporter no longer writes value_info for weights")
    with pytest.raises(Exception, match="Inferred shape and existing shape differ"):
        quantize_dynamic(str(tiny_roberta.fp32_onnx), str(tmp_path / "raw.onnx"))


def test_dynamic_int8_uses_integer_matmuls_is_smaller_and_matches_pytorch(tiny_roberta, dynamic_int8):
    ops = op_counts(dynamic_int8)
    assert ops["MatMulInteger"] >= 2 * 6  # q, k, v, out, ffn1, ffn2 per layer
    assert ops["DynamicQuantizeLinear"] >= 1
    assert model_size_bytes(dynamic_int8) < 0.7 * model_size_bytes(tiny_roberta.fp32_onnx)  # biases, norms stay FP32
    outputs = run_onnx_model(dynamic_int8, tiny_roberta.check_inputs)
    report = accuracy_report(tiny_roberta.references, outputs)
    assert report.passed, report.worst()
    assert report.worst().max_rel_error < 0.05


def test_static_int8_is_a_qoperator_graph_that_matches_pytorch(tiny_roberta, static_int8):
    ops = op_counts(static_int8)
    assert ops["QLinearMatMul"] >= 2 * 6
    assert "MatMulInteger" not in ops
    outputs = run_onnx_model(static_int8, tiny_roberta.check_inputs)
    report = accuracy_report(tiny_roberta.references, outputs)
    assert report.passed, report.worst()


def test_outputs_are_marked_for_onnxruntime_and_tensorrt_refuses_them(tiny_roberta, dynamic_int8, static_int8):
    assert not is_onnxruntime_targeted(tiny_roberta.fp32_onnx)
    refuse_for_tensorrt(tiny_roberta.fp32_onnx)  # FP32 passes
    for path in (dynamic_int8, static_int8):
        assert is_onnxruntime_targeted(path)
        with pytest.raises(UserError, match=r"ONNX Runtime INT8 graph \(MatMulInteger/QOperator\); TensorRT cannot "
                                            r"build it: use --use-int8 for TensorRT Q/DQ"):
            refuse_for_tensorrt(path)


def test_unmarked_integer_graph_is_still_recognised(dynamic_int8, tmp_path):
    import onnx

    graph = onnx.load(str(dynamic_int8))
    del graph.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(graph, str(bare))
    assert not is_onnxruntime_targeted(bare)
    assert classify_int8_graph(bare) == "onnxruntime"
    with pytest.raises(UserError, match="TensorRT cannot build it"):
        refuse_for_tensorrt(bare)


def test_tensorrt_rtx_cannot_build_the_onnxruntime_graph(tiny_roberta, dynamic_int8, tmp_path):
    """The real builder: the CLI's refusal (UserError) or, without it, the parser's own failure."""
    pytest.importorskip("tensorrt_rtx")
    from trt_converters.build import BuildOptions, build_engine

    with pytest.raises((UserError, StageError)) as failure:
        build_engine(dynamic_int8, tmp_path / "model.plan", tiny_roberta.profiles,
                     BuildOptions(backend="tensorrt-rtx", progress=False))
    if failure.type is UserError:
        assert "TensorRT cannot build it" in str(failure.value)
    else:
        assert "cannot parse" in str(failure.value), failure.value
    assert not (tmp_path / "model.plan").exists()


def _qdq_graph(path: Path) -> Path:
    """A TensorRT-style explicit Q/DQ graph: x -> Q -> DQ -> MatMul(W) -> y."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("MatMul", ["xd", "w"], ["y"])]
    inits = [numpy_helper.from_array(np.array(0.05, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int8), "z"),
             numpy_helper.from_array(np.ones((4, 2), np.float32), "w")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 2])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_tensorrt_qdq_graph_is_refused_for_the_onnxruntime_cpu_path(tmp_path):
    from trt_converters.spec import parse_io_config

    qdq = _qdq_graph(tmp_path / "qdq.onnx")
    assert classify_int8_graph(qdq) == "tensorrt_qdq"
    refuse_for_tensorrt(qdq)  # TensorRT's own kind of INT8 passes
    with pytest.raises(UserError, match="TensorRT Q/DQ INT8 graph; ONNX Runtime on CPU runs it no faster"):
        refuse_for_onnxruntime_cpu(qdq)
    io = parse_io_config({"inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
                          "outputs": [{"name": "y", "dtype": "float32", "shape": [2]}]})
    with pytest.raises(UserError, match="TensorRT Q/DQ INT8 graph"):
        quantize_for_onnxruntime(qdq, tmp_path / "out.onnx", OrtInt8Options(mode="dynamic"), io=io)
    assert not (tmp_path / "out.onnx").exists()


def test_user_mistakes_are_one_line_errors_and_write_nothing(tiny_roberta, dynamic_int8, tmp_path):
    import numpy as np

    out = tmp_path / "out.onnx"
    with pytest.raises(UserError, match="--onnx-int8 'fast' is not one of dynamic, static"):
        quantize_for_onnxruntime(tiny_roberta.fp32_onnx, out, OrtInt8Options(mode="fast"), io=tiny_roberta.io)
    with pytest.raises(UserError, match="--calib-method 'best' is unknown"):
        quantize_for_onnxruntime(tiny_roberta.fp32_onnx, out, OrtInt8Options(mode="static", calib_method="best"),
                                 io=tiny_roberta.io)
    with pytest.raises(UserError, match="already an ONNX Runtime INT8 graph"):
        quantize_for_onnxruntime(dynamic_int8, out, OrtInt8Options(mode="dynamic"), io=tiny_roberta.io)
    with pytest.raises(UserError, match=r"no arrays for inputs \['attention_mask'\]"):
        quantize_for_onnxruntime(tiny_roberta.fp32_onnx, out, OrtInt8Options(mode="static"),
                                 io=tiny_roberta.io, calibration={"input_ids": np.full((2, 16), 5, np.int64)})
    wrong_io = tiny_roberta.io.with_inputs(["input_ids"])
    with pytest.raises(UserError, match="does not declare"):
        quantize_for_onnxruntime(tiny_roberta.fp32_onnx, out, OrtInt8Options(mode="dynamic"), io=wrong_io)
    with pytest.raises(UserError, match="does not exist"):
        quantize_for_onnxruntime(tmp_path / "missing.onnx", out, OrtInt8Options(mode="dynamic"), io=tiny_roberta.io)
    assert list(tmp_path.iterdir()) == []


def test_optimize_for_onnxruntime_keeps_fp32_results_and_marks_fused_graphs(tiny_roberta, tmp_path):
    extended = optimize_for_onnxruntime(tiny_roberta.fp32_onnx, tmp_path / "extended.onnx", level="extended")
    basic = optimize_for_onnxruntime(tiny_roberta.fp32_onnx, tmp_path / "basic.onnx", level="basic")
    assert is_onnxruntime_targeted(extended) and not is_onnxruntime_targeted(basic)
    assert sum(op_counts(extended).values()) < sum(op_counts(tiny_roberta.fp32_onnx).values())
    for path in (extended, basic):
        report = accuracy_report(tiny_roberta.references, run_onnx_model(path, tiny_roberta.check_inputs),
                                 DEFAULT_TOLERANCES["fp32"])
        assert report.passed, report.worst()
    with pytest.raises(UserError, match="optimization level 'max'"):
        optimize_for_onnxruntime(tiny_roberta.fp32_onnx, tmp_path / "x.onnx", level="max")


def test_accuracy_report_counts_top_class_agreement_and_can_fail():
    import numpy as np

    reference = [{"logits": np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0]], np.float32)}]
    flipped = [{"logits": np.array([[0.0, 1.0], [0.0, 1.0], [2.0, 1.0]], np.float32)}]
    report = accuracy_report(reference, flipped)
    assert report.top_class_agreement == {"logits": (2, 3)}
    assert not report.passed and report.tolerance == INT8_TOLERANCE
    assert accuracy_report(reference, reference).passed


def test_fused_graph_has_fused_attention_and_matches_pytorch(tiny_roberta, fused_roberta):
    from trt_converters.onnxruntime_cpu.fusion import FUSION_KEY
    from trt_converters.onnxruntime_cpu.targets import read_metadata

    assert fused_roberta.statistics.get("Attention") == TINY_LAYERS
    assert fused_roberta.statistics.get("SkipLayerNormalization") == 2 * TINY_LAYERS
    ops = op_counts(fused_roberta.path)
    assert ops["Attention"] == TINY_LAYERS and ops["SkipLayerNormalization"] == 2 * TINY_LAYERS
    assert ops["Softmax"] == 0  # attention left no unfused pieces behind
    assert is_onnxruntime_targeted(fused_roberta.path)
    assert '"Attention": 2' in read_metadata(fused_roberta.path)[FUSION_KEY]
    report = accuracy_report(tiny_roberta.references, run_onnx_model(fused_roberta.path, tiny_roberta.check_inputs),
                             DEFAULT_TOLERANCES["fp32"])
    assert report.passed, report.worst()


@pytest.mark.parametrize("small_elements", [None, 16])
def test_fusion_with_weightless_shape_inference_writes_the_library_s_own_graph(fused_roberta, small_elements,
                                                                               monkeypatch, tmp_path):
    """fusion.py runs the optimizer's symbolic shape inference on a weightless skeleton; the fusions decide the same:
    the graph is byte for byte the one onnxruntime.transformers.optimizer.optimize_model makes with the whole model.
    At 16 elements every weight and bias of the tiny model is left out of the skeleton, as RoBERTa-base's are."""
    import onnx
    from onnxruntime.transformers import optimizer

    from trt_converters.onnxruntime_cpu.fusion import fuse_for_onnxruntime
    from trt_converters.precision import graph_shapes

    if small_elements is not None:
        monkeypatch.setattr(graph_shapes, "SMALL_INITIALIZER_ELEMENTS", small_elements)
    fusable = fused_roberta.path.with_name("fusable.onnx")
    ours = fuse_for_onnxruntime(fusable, tmp_path / "fused.onnx", num_heads=fused_roberta.num_heads,
                                hidden_size=fused_roberta.hidden_size)
    library = optimizer.optimize_model(str(fusable), model_type="bert", num_heads=fused_roberta.num_heads,
                                       hidden_size=fused_roberta.hidden_size, opt_level=0)
    assert ours.statistics == {k: v for k, v in library.get_fused_operator_statistics().items() if v}
    assert ours.statistics.get("Attention") == TINY_LAYERS
    written = onnx.load(str(ours.path))
    assert written.graph.SerializeToString() == library.model.graph.SerializeToString()
    assert written.producer_name == library.model.producer_name == "onnxruntime.transformers"


def test_dynamic_int8_from_the_external_data_copy_is_quantize_dynamic_s_single_file_graph(tiny_roberta, fused_roberta,
                                                                                          tmp_path):
    """quantize_for_onnxruntime hands the quantizer its cleaned copy with the weights as external data (a bounded
    save); the quantized graph is the one quantize_dynamic makes from a single-file copy."""
    import onnx

    from trt_converters.onnxruntime_cpu.quantize import _quantize_dynamic, _Quantizer, clean_shape_metadata

    options = OrtInt8Options(mode="dynamic", cpu_target="avx512_vnni")
    ours = quantize_for_onnxruntime(fused_roberta.path, tmp_path / "ours.onnx", options, io=tiny_roberta.io)
    single = onnx.load(str(fused_roberta.path))
    clean_shape_metadata(single)
    onnx.save_model(single, str(tmp_path / "single.onnx"))
    _quantize_dynamic(tmp_path / "single.onnx", tmp_path / "reference.onnx",
                      _Quantizer(options, ort_method="MinMax", reduce_range=False, large=False))
    reference = onnx.load(str(tmp_path / "reference.onnx"))
    assert any(node.op_type == "MatMulInteger" for node in reference.graph.node)
    assert onnx.load(str(ours)).graph.SerializeToString() == reference.graph.SerializeToString()


def test_eager_attention_is_restored_after_the_fusable_export(tiny_roberta):
    from trt_converters.onnxruntime_cpu.fusion import eager_attention

    before = tiny_roberta.model.config._attn_implementation
    with eager_attention(tiny_roberta.model) as switched:
        assert switched and tiny_roberta.model.config._attn_implementation == "eager"
    assert tiny_roberta.model.config._attn_implementation == before


@pytest.mark.parametrize("target, bits", [("avx512_vnni", "8"), ("avx2", "7"), ("avx512", "7"), ("avx_vnni", "8")])
def test_per_target_int8_of_the_fused_graph_records_target_and_matches_pytorch(tiny_roberta, fused_roberta,
                                                                               tmp_path, target, bits):
    from trt_converters.onnxruntime_cpu.fusion import FUSION_KEY
    from trt_converters.onnxruntime_cpu.targets import CPU_TARGET_KEY, WEIGHT_BITS_KEY, read_metadata

    out = quantize_for_onnxruntime(fused_roberta.path, tmp_path / "int8.onnx",
                                   OrtInt8Options(mode="dynamic", cpu_target=target),
                                   io=tiny_roberta.io)
    metadata = read_metadata(out)
    assert (metadata[CPU_TARGET_KEY], metadata[WEIGHT_BITS_KEY]) == (target, bits)
    assert FUSION_KEY in metadata  # the fusion record survives quantization
    ops = op_counts(out)
    assert ops["QAttention"] == TINY_LAYERS and ops["MatMulInteger"] > 0 and ops["SkipLayerNormalization"] > 0
    report = accuracy_report(tiny_roberta.references, run_onnx_model(out, tiny_roberta.check_inputs))
    assert report.passed, report.worst()
    with pytest.raises(UserError, match="already an ONNX Runtime INT8 graph"):
        quantize_for_onnxruntime(out, tmp_path / "again.onnx", OrtInt8Options(mode="dynamic"), io=tiny_roberta.io)
    with pytest.raises(UserError, match="static quantizer cannot take fused operators"):
        quantize_for_onnxruntime(fused_roberta.path, tmp_path / "static.onnx", OrtInt8Options(mode="static"),
                                 io=tiny_roberta.io)
    assert not (tmp_path / "static.onnx").exists()


def test_cpu_target_detection_and_names():
    from trt_converters.onnxruntime_cpu.targets import detect_cpu_target, full_range_weights, resolve_cpu_target

    assert detect_cpu_target({"avx2", "avx512f", "avx512_vnni"}) == "avx512_vnni"
    assert detect_cpu_target({"avx2", "avx512f", "avx512bw"}) == "avx512"
    assert detect_cpu_target({"avx2", "avx_vnni"}) == "avx_vnni"
    assert detect_cpu_target({"avx2"}) == "avx2"
    assert resolve_cpu_target("auto") == detect_cpu_target()
    assert full_range_weights("avx512_vnni") and not full_range_weights("avx2")
    with pytest.raises(UserError, match="--cpu-target 'sse4' is not one of auto"):
        resolve_cpu_target("sse4")


def test_cli_fuses_before_int8_and_records_the_cpu_target(tiny_roberta, run_cli, tmp_path):
    import json

    from tests.ort_cpu.conftest import IO_CONFIG, ROBERTA_SCRIPT, TINY_KWARGS
    from trt_converters.onnxruntime_cpu.targets import CPU_TARGET_KEY, WEIGHT_BITS_KEY, read_metadata

    flags = ["--ckpt-path", tiny_roberta.checkpoint, "--model-script-path", ROBERTA_SCRIPT, "--model-class-name",
             "RobertaClassifier", "--model-kwargs", json.dumps(TINY_KWARGS), "--model-io-config",
             json.dumps(IO_CONFIG), "--model-name", "roberta", "--generate-onnx", "--onnx-int8", "dynamic"]
    result = run_cli(flags + ["--output-dir", tmp_path, "--cpu-target", "avx2"])
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "roberta" / "report.json").read_text())
    fusion, int8 = report["stages"]["ort_fusion"], report["stages"]["ort_int8_dynamic"]
    assert fusion["fused"] and fusion["statistics"]["Attention"] == TINY_LAYERS
    assert all(o["passed"] for o in fusion["verify"]["outputs"])
    assert (int8["cpu_target"], int8["weight_bits"], int8["fused"]) == ("avx2", 7, True)
    assert all(o["passed"] for o in int8["verify"]["outputs"])
    graph = tmp_path / "roberta" / "model.ort-int8-dynamic.onnx"
    assert read_metadata(graph)[WEIGHT_BITS_KEY] == "7" and op_counts(graph)["QAttention"] == TINY_LAYERS
    assert (tmp_path / "roberta" / "model.ort-fused.onnx").is_file()
    assert not list((tmp_path / "roberta").glob(".ort-fusable*"))

    plain = run_cli(flags + ["--output-dir", tmp_path / "plain", "--no-ort-fusion"])
    assert plain.exit_code == 0, plain.stderr
    report = json.loads((tmp_path / "plain" / "roberta" / "report.json").read_text())
    assert "ort_fusion" not in report["stages"] and not report["stages"]["ort_int8_dynamic"]["fused"]
    graph = tmp_path / "plain" / "roberta" / "model.ort-int8-dynamic.onnx"
    assert read_metadata(graph)[CPU_TARGET_KEY] == report["stages"]["ort_int8_dynamic"]["cpu_target"]
    assert op_counts(graph)["QAttention"] == 0


@pytest.mark.triton
def test_cli_tune_records_threads_and_instances_in_config_and_serves(tiny_roberta, run_cli, tmp_path):
    import json

    import numpy as np

    from tests.ort_cpu.conftest import IO_CONFIG, ROBERTA_SCRIPT, TINY_KWARGS, padded_inputs
    from trt_converters.triton.server import LocalTritonServer
    from tests.helpers.triton import triton_infer

    flags = ["--ckpt-path", tiny_roberta.checkpoint, "--model-script-path", ROBERTA_SCRIPT, "--model-class-name",
             "RobertaClassifier", "--model-kwargs", json.dumps(TINY_KWARGS), "--model-io-config",
             json.dumps(IO_CONFIG), "--model-name", "roberta", "--generate-onnx", "--onnx-int8", "dynamic",
             "--output-dir", tmp_path / "out", "--triton-repo", tmp_path / "repo", "--generate-triton-config",
             "--triton-backend", "python_onnxruntime", "--dynamic-batching"]
    without_config = [f for f in flags if f != "--generate-triton-config"]
    refused = run_cli(without_config + ["--tune"])
    assert refused.exit_code == 2 and "needs --generate-triton-config" in refused.stderr
    refused = run_cli(flags + ["--tune", "--instance-kind", "cpu", "--intra-op-threads", "2"])
    assert refused.exit_code == 2 and "give either --tune or those flags" in refused.stderr
    assert not (tmp_path / "out").exists()

    result = run_cli(flags + ["--tune", "--instance-kind", "cpu"])
    assert result.exit_code == 0, result.stderr
    tune = json.loads((tmp_path / "out" / "roberta" / "report.json").read_text())["stages"]["tune"]
    assert len(tune["measurements"]) >= 4 and all(m["runs_per_s"] > 0 for m in tune["measurements"])
    config = (tmp_path / "repo" / "roberta" / "config.pbtxt").read_text()
    assert f"count: {tune['instances']}" in config
    assert "intra_op_thread_count" in config and f'string_value: "{tune["intra_op_threads"]}"' in config
    request = padded_inputs(2, 12, 5)
    with LocalTritonServer(tmp_path / "repo", startup_timeout=180) as server:
        served = triton_infer("grpc", server.grpc_url, "roberta", request, "logits")
    expected = run_onnx_model(tmp_path / "out" / "roberta" / "model.ort-int8-dynamic.onnx", [request])[0]["logits"]
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-5)
