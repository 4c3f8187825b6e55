"""The bounded AutoCast (precision/autocast_bounded.py) makes the graph ModelOpt's convert_to_mixed_precision makes,
from statistics gathered one sample at a time."""

from pathlib import Path

import numpy as np
import onnx
import pytest

from trt_converters.precision.autocast_bounded import convert_fp16, out_of_range_initializers, tensor_ranges
from trt_converters.precision.fp16 import SENSITIVE_OP_TYPES, fold_constants
from trt_converters.precision import check_inputs_for


def _padded(model) -> dict:
    inputs = check_inputs_for(model.io, model.profiles)
    for name, value in inputs.items():
        if "mask" in name:  # half the rows padded: the masked positions reach the attention scores
            value[::2, value.shape[1] // 2:] = 0
    return inputs


def _graph_facts(model) -> tuple:
    return ([(n.name, n.op_type) for n in model.graph.node],
            sorted((i.name, i.data_type) for i in model.graph.initializer))


@pytest.mark.parametrize("name", ["bert", "text"])
def test_same_graph_as_modelopt_autocast(name, exported, tmp_path):
    from modelopt.onnx.autocast import convert_to_mixed_precision

    from trt_converters.onnx_runner import run_onnx_model

    model = exported(name)
    inputs = _padded(model)
    folded = tmp_path / "folded.onnx"
    onnx.save_model(fold_constants(onnx.load(str(model.onnx_path))), str(folded))
    data = tmp_path / "data"
    data.mkdir()
    np.savez(data / "0.npz", **inputs)
    theirs = convert_to_mixed_precision(str(folded), low_precision_type="fp16", keep_io_types=True,
                                        op_types_to_exclude=list(SENSITIVE_OP_TYPES), providers=["cpu"],
                                        calibration_data=str(data), use_standalone_type_inference=True)
    work = tmp_path / "work"
    work.mkdir()
    ours = convert_fp16(lambda: onnx.load(str(folded)), inputs, work_dir=work,
                        op_types_to_exclude=list(SENSITIVE_OP_TYPES), standalone_types=True)
    assert _graph_facts(ours) == _graph_facts(theirs)
    assert list(work.iterdir()) == []  # the weights file and the graphs it wrote are gone
    paths = []
    for label, graph in (("ours", ours), ("theirs", theirs)):
        paths.append(tmp_path / f"{label}.onnx")
        onnx.save_model(graph, str(paths[-1]))
    ours_out, theirs_out = (run_onnx_model(path, [inputs])[0] for path in paths)
    for output in theirs_out:
        np.testing.assert_array_equal(ours_out[output], theirs_out[output])


def test_ranges_one_sample_at_a_time_equal_the_whole_batch(exported, tmp_path):
    import onnxruntime as ort

    model = exported("bert")
    inputs = _padded(model)
    graph = onnx.load(str(model.onnx_path))
    onnx.save_model(graph, str(tmp_path / "g.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=1024)
    weightless = onnx.load(str(tmp_path / "g.onnx"), load_external_data=False)
    ranges = tensor_ranges(weightless, inputs, tmp_path)
    session = ort.InferenceSession(str(model.onnx_path), providers=["CPUExecutionProvider"])
    whole = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs)))
    for name, value in {**inputs, **whole}.items():
        stats = ranges[name]
        assert stats.min_val == pytest.approx(float(value.min()), rel=1e-5, abs=1e-6), name
        assert stats.max_val == pytest.approx(float(value.max()), rel=1e-5, abs=1e-6), name
        assert stats.absmax == pytest.approx(float(np.abs(value).max()), rel=1e-5, abs=1e-6), name
    assert len(ranges) > len(whole) + len(inputs)  # the intermediate tensors too
    assert not (tmp_path / "reference.onnx").exists()


def test_out_of_range_initializers_read_from_the_weights_file(tmp_path):
    from onnx import helper, numpy_helper

    large = np.linspace(-1, 1, 4096, dtype=np.float32).reshape(64, 64)
    beyond = large.copy()
    beyond[3, 5] = 1e6
    small = np.array([-3.4e38, 0.0], dtype=np.float32)
    initializers = [numpy_helper.from_array(large, "large"), numpy_helper.from_array(beyond, "beyond"),
                    numpy_helper.from_array(small, "small")]
    nodes = [helper.make_node("MatMul", ["x", "large"], ["a"]), helper.make_node("MatMul", ["a", "beyond"], ["b"]),
             helper.make_node("ReduceMax", ["b"], ["c"], keepdims=0), helper.make_node("Add", ["c", "small"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 64])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [2])], initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save_model(model, str(tmp_path / "g.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.data", size_threshold=1024)
    weightless = onnx.load(str(tmp_path / "g.onnx"), load_external_data=False)
    assert {i.name for i in weightless.graph.initializer if i.data_location == onnx.TensorProto.EXTERNAL} == \
        {"large", "beyond"}
    assert out_of_range_initializers(weightless, Path(tmp_path), limit=65504.0) == {"beyond", "small"}


def test_unconsumed_nodes_removed_as_modelopt_removes_them(exported):
    import copy
    from types import SimpleNamespace

    from modelopt.onnx.autocast.precisionconverter import PrecisionConverter
    from onnx import helper

    from trt_converters.precision.autocast_bounded import remove_unconsumed_nodes

    model = onnx.load(str(exported("bert").onnx_path))
    graph = model.graph
    first_output = graph.node[3].output[0]
    graph.node.append(helper.make_node("Cast", [first_output], ["dead_end_cast"], to=10, name="dead_end_cast"))
    graph.node.append(helper.make_node("Identity", ["dead_end_cast"], ["dead_end_identity"], name="dead_identity"))
    theirs = copy.deepcopy(model)
    PrecisionConverter._cleanup_no_consumer_nodes(SimpleNamespace(model=theirs))
    remove_unconsumed_nodes(graph)
    assert [n.name for n in graph.node] == [n.name for n in theirs.graph.node]
    assert "dead_identity" not in {n.name for n in graph.node} and "dead_end_cast" in {n.name for n in graph.node}
