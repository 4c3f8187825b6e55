"""Shape inference and opset conversion on the weightless skeleton give what ONNX gives on the whole graph."""

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from trt_converters.precision.graph_shapes import convert_opset, infer_shapes


def _graph(opset: int):
    """MatMul with a large weight, then ReduceMean (its axes move from an attribute to an input at opset 18)."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.standard_normal((64, 32)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(rng.standard_normal(32).astype(np.float32), "bias")
    nodes = [helper.make_node("MatMul", ["x", "weight"], ["h"], name="matmul"),
             helper.make_node("Add", ["h", "bias"], ["a"], name="add"),
             helper.make_node("ReduceMean", ["a"], ["y"], name="mean", axes=[1], keepdims=1) if opset < 18 else
             helper.make_node("ReduceMean", ["a", "axes"], ["y"], name="mean", keepdims=1)]
    initializers = [weight, bias] + ([numpy_helper.from_array(np.array([1], np.int64), "axes")] if opset >= 18 else [])
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 64])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=8)


def test_skeleton_opset_conversion_equals_onnx_on_the_whole_graph():
    for source in (17, 18):  # 17 -> 19 rewrites ReduceMean (a new axes constant); 18 -> 19 only the opset
        model = _graph(source)
        expected = onnx.version_converter.convert_version(model, 19)
        converted = convert_opset(_graph(source), 19)
        assert converted == expected, source
        onnx.checker.check_model(converted)
    reduce = next(n for n in convert_opset(_graph(17), 19).graph.node if n.op_type == "ReduceMean")
    assert len(reduce.input) == 2  # the adapter did run on the skeleton


def test_skeleton_shape_inference_equals_onnx():
    model = _graph(19)
    expected = onnx.shape_inference.infer_shapes(model)
    assert list(infer_shapes(_graph(19)).graph.value_info) == list(expected.graph.value_info)
