"""ONNX shape inference without pushing the weights through protobuf.

onnx.shape_inference.infer_shapes serializes the whole model and parses the result back: two copies of every
weight (on RoBERTa-base about 500 MB each way, several seconds per call). Inference needs the weights' types and
shapes, and the values only of small tensors (Reshape targets and the like), so it runs here on a skeleton:
the nodes, small initializers, and every large initializer declared as a typed graph input instead.
"""

from __future__ import annotations

SMALL_INITIALIZER_ELEMENTS = 1024


def infer_shapes(model, *, data_prop: bool = False):
    """`model` with its value_info replaced by shape inference's (returned, updated in place)."""
    import numpy as np
    import onnx

    skeleton = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(skeleton, field, getattr(model, field))
    skeleton.opset_import.extend(model.opset_import)
    skeleton.functions.extend(model.functions)
    graph = skeleton.graph
    graph.name = model.graph.name
    graph.node.extend(model.graph.node)
    graph.input.extend(model.graph.input)
    graph.output.extend(model.graph.output)
    declared = {i.name for i in model.graph.input}
    for initializer in model.graph.initializer:
        small = int(np.prod(initializer.dims, dtype=np.int64)) <= SMALL_INITIALIZER_ELEMENTS
        if small and initializer.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(initializer)
        elif initializer.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(initializer.name, initializer.data_type,
                                                                  list(initializer.dims)))
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=data_prop)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    outputs = {o.name: o for o in inferred.graph.output}
    for output in model.graph.output:
        if output.name in outputs:
            output.CopyFrom(outputs[output.name])
    return model
