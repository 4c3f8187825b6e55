"""ModelOpt AutoCast's FP16 conversion, run in memory bounded by a few copies of the weights.

`convert_to_mixed_precision` reads the graph from a file, and its ReferenceRunner runs a deep copy of the whole
graph in ONNX Runtime with every tensor marked as an output and keeps every tensor of the whole batch until the
conversion ends: on RoBERTa-base at 8 x 128 tokens 3.6 GB of activations on top of four copies of the weights,
and DeBERTa-v3-large was killed at 24 GB. Here the same ModelOpt steps (GraphSanitizer, type inference,
NodeClassifier, PrecisionConverter, with AutoCast's defaults) run on the graph the caller hands over, and the one
step that cannot be bounded from outside, the reference run, is ours (`tensor_ranges`): one sample at a time, each
tensor reduced at once to the statistics the classifier reads (absmax, min, max, shape), from a session on the
weights written out once. While that session runs the graph in memory holds no weights.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

WEIGHTS_FILE = "weights.data"
# Tensors this small stay inside the graph: shape-like constants that type/shape inference reads.
INLINE_BYTES = 1024


def convert_fp16(load_model, reference_inputs: dict, *, work_dir: Path, op_types_to_exclude: list[str],
                 standalone_types: bool):
    """The mixed FP16 graph AutoCast would make of the graph `load_model()` returns, with keep_io_types and
    `reference_inputs` as its calibration data. The graph is taken from a loader so that no caller's frame keeps
    it.

    Protobuf (upb) frees a message's memory only with the whole message, and ModelOpt's NodeClassifier keeps the
    graph it classifies alive: so the weights go to a file once, the ranges and the classification work on a
    weightless graph (initializer ranges read from the file: `out_of_range_initializers`), and the converter gets a
    fresh graph with its weights.
    """
    from copy import deepcopy

    import onnx
    from modelopt.onnx import utils as onnx_utils
    from modelopt.onnx.autocast import utils as autocast_utils
    from modelopt.onnx.autocast.convert import (DEFAULT_DATA_MAX, DEFAULT_INIT_MAX,
                                                LATEST_IR_VERSION_SUPPORTED_BY_ORT)
    from modelopt.onnx.autocast.graphsanitizer import GraphSanitizer
    from modelopt.onnx.autocast.nodeclassifier import NodeClassifier
    from modelopt.onnx.autocast.precisionconverter import PrecisionConverter

    from trt_converters.memory import release

    model = load_model()
    release()  # what loading it left behind (the graph before constant folding)
    io_metadata = {"input": [deepcopy(v) for v in model.graph.input],
                   "output": [deepcopy(v) for v in model.graph.output]}
    sanitizer = GraphSanitizer(model, min_opset=13, max_ir_version=LATEST_IR_VERSION_SUPPORTED_BY_ORT)
    del model
    sanitizer.sanitize()
    model, custom_ops = sanitizer.model, sanitizer.custom_ops
    del sanitizer
    if custom_ops:
        from trt_converters.errors import StageError

        raise StageError(f"FP16 lowering: custom operators {sorted(custom_ops)} need TensorRT plugins to run")
    typed = work_dir / "typed.onnx"
    onnx.save_model(model, str(typed), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=WEIGHTS_FILE, size_threshold=INLINE_BYTES)
    del model
    release()
    model = onnx_utils.infer_types(onnx.load(str(typed), load_external_data=False), standalone_types,
                                   strict_mode=True)
    onnx.save_model(model, str(typed))  # weightless: its large tensors still point into WEIGHTS_FILE
    ranges = tensor_ranges(model, reference_inputs, work_dir)
    _, initializer_map, node_to_init_map = autocast_utils.setup_mappings(model)
    classifier = NodeClassifier(model, node_to_init_map, initializer_map, op_types_to_exclude=op_types_to_exclude,
                                data_max=DEFAULT_DATA_MAX, init_max=None,
                                custom_rule=initializer_range_rule(
                                    out_of_range_initializers(model, work_dir, DEFAULT_INIT_MAX)))
    low_precision_nodes, high_precision_nodes = classifier.run(ranges)
    del classifier, ranges, initializer_map, node_to_init_map, model
    release()

    model = onnx.load(str(typed))  # the typed graph with its weights, in memory of its own
    (work_dir / WEIGHTS_FILE).unlink(missing_ok=True)  # none where every tensor is small
    typed.unlink()
    value_info_map, initializer_map, node_to_init_map = autocast_utils.setup_mappings(model)
    converter = PrecisionConverter(model, value_info_map, initializer_map, node_to_init_map, keep_io_types=True,
                                   low_precision_type="fp16", custom_ops=custom_ops,
                                   use_standalone_type_inference=standalone_types,
                                   original_network_io_metadata=io_metadata, sanitize_model=False)
    del model, value_info_map, initializer_map, node_to_init_map  # the converter works on its own copy
    release()
    # ModelOpt's pass looks up each output's consumers by scanning every node (quadratic: 196 of the converter's
    # 261 s on DeBERTa-v3-large under a profiler); this is the same pass with one index, the graph unchanged meanwhile.
    converter._cleanup_no_consumer_nodes = lambda: remove_unconsumed_nodes(converter.model.graph)
    with _weightless_graph_passes():
        return converter.convert(high_precision_nodes, low_precision_nodes)


def remove_unconsumed_nodes(graph) -> None:
    """Removes the nodes none of whose outputs is read by a node of `graph` or is a graph output."""
    outputs = {output.name for output in graph.output}
    consumed = {name for node in graph.node for name in node.input}
    unused = [node for node in graph.node if not any(name in outputs or name in consumed for name in node.output)]
    for node in unused:
        graph.node.remove(node)


def initializer_range_rule(names: set[str]):
    """AutoCast's initializer range rule (a node reading an initializer beyond FP16's range stays FP32) as a
    ModelOpt rule on the names `out_of_range_initializers` found."""
    from modelopt.onnx.autocast.nodeclassifier import NodeRuleBase

    class InitializerRange(NodeRuleBase):
        def _check_inner(self, node):
            return any(name in names for name in node.input)

    return InitializerRange()


def out_of_range_initializers(model, work_dir: Path, limit: float) -> set[str]:
    """Names of the FP32 initializers of `model` holding a value beyond `limit`, read one at a time (the large
    ones from their external file under `work_dir`)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    found = set()
    for initializer in model.graph.initializer:
        if initializer.data_type != onnx.TensorProto.FLOAT:
            continue
        if initializer.data_location == onnx.TensorProto.EXTERNAL:
            where = {entry.key: entry.value for entry in initializer.external_data}
            values = np.fromfile(work_dir / where["location"], dtype="<f4", offset=int(where.get("offset", 0)),
                                 count=int(where["length"]) // 4 if "length" in where else -1)
        else:
            values = numpy_helper.to_array(initializer)
        if values.size and float(np.abs(values).max()) > limit:
            found.add(initializer.name)
    return found


@contextlib.contextmanager
def _weightless_graph_passes():
    """While active, two ModelOpt passes the converter runs see the graph without its large initializers (declared
    as typed inputs instead), and its graph gets their results: the onnx.checker call (`check_model`, which
    serialized the whole graph twice: three copies of the weights at once) and the standalone type inference
    (`infer_types`, which copied the whole graph twice per call, four calls per conversion; about half the
    converter's time). Neither reads a large tensor's values; the converted graph is then run in ONNX Runtime."""
    from modelopt.onnx import utils as onnx_utils

    from trt_converters.precision.graph_shapes import weightless_skeleton

    check_model, infer_types = onnx_utils.check_model, onnx_utils.infer_types

    def typed(model, use_standalone_type_inference: bool = False, **kwargs):
        if not use_standalone_type_inference or _has_subgraphs(model):
            return infer_types(model, use_standalone_type_inference, **kwargs)
        skeleton, _ = weightless_skeleton(model, value_info=True)
        skeleton = infer_types(skeleton, True, **kwargs)
        del model.graph.value_info[:]
        model.graph.value_info.extend(skeleton.graph.value_info)
        for output, inferred in zip(model.graph.output, skeleton.graph.output):
            output.type.CopyFrom(inferred.type)
        return model

    onnx_utils.check_model = lambda model: check_model(weightless_skeleton(model)[0])
    onnx_utils.infer_types = typed
    try:
        yield
    finally:
        onnx_utils.check_model, onnx_utils.infer_types = check_model, infer_types


def _has_subgraphs(model) -> bool:
    import onnx

    return any(attribute.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
               for node in model.graph.node for attribute in node.attribute)


def tensor_ranges(model, inputs: dict, work_dir: Path) -> dict:
    """Tensor name -> ModelOpt's TensorStats (absmax, min, max, shape) of every graph input and node output of
    the weightless `model` (weights in `work_dir`/WEIGHTS_FILE) on `inputs`, run one sample (row of the first
    axis) at a time."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from modelopt.onnx.autocast.referencerunner import TensorStats

    fed = {i.name for i in model.graph.input}
    inputs = {name: value for name, value in inputs.items() if name in fed}  # the exporter drops unused inputs
    marked = onnx.ModelProto()
    marked.CopyFrom(model)
    graph = marked.graph
    typed = {v.name: v for v in graph.value_info}
    present = {o.name for o in graph.output}
    for node in graph.node:
        for name in node.output:
            if name and name not in present:
                present.add(name)
                graph.output.append(typed[name] if name in typed else onnx.ValueInfoProto(name=name))
    path = work_dir / "reference.onnx"
    onnx.save_model(marked, str(path))
    del marked, graph, typed

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every tensor as in the graph
    options.enable_cpu_mem_arena = False  # each sample's tensors go back to the system, not kept for the next
    options.add_session_config_entry("session.disable_prepacking", "1")  # no second, packed copy of the weights
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    stats: dict = {}
    try:
        rows = min(int(np.asarray(value).shape[0]) for value in inputs.values())
        for row in range(rows):
            sample = {name: np.asarray(value)[row:row + 1] for name, value in inputs.items()}
            _fold(stats, sample.items(), TensorStats)
            _fold(stats, zip(names, session.run(names, sample)), TensorStats)
    finally:
        del session
        path.unlink(missing_ok=True)
    return stats


def _fold(stats: dict, tensors, tensor_stats) -> None:
    """Adds each (name, array) to its running statistics."""
    import numpy as np

    for name, array in tensors:
        array = np.asarray(array)
        if array.size == 0 or array.dtype.kind not in "biuf":
            low = high = 0.0
        else:
            low, high = float(array.min()), float(array.max())
        absmax = max(abs(low), abs(high))
        previous = stats.get(name)
        if previous is None:
            stats[name] = tensor_stats(absmax=absmax, min_val=low, max_val=high, shape=tuple(array.shape))
        else:
            previous.absmax = max(previous.absmax, absmax)
            previous.min_val, previous.max_val = min(previous.min_val, low), max(previous.max_val, high)
