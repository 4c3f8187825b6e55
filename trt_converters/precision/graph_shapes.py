"""ONNX shape inference and opset conversion without pushing the weights through protobuf.

onnx.shape_inference.infer_shapes and onnx.version_converter.convert_version serialize the whole model and parse
the result back: two copies of every weight (on RoBERTa-base about 500 MB each way, several seconds per call).
Both need the weights' types and shapes, and the values only of small tensors (Reshape targets and the like), so
they run here on a skeleton: the nodes, small initializers, and every large initializer declared as a typed
graph input instead.
"""

from __future__ import annotations

SMALL_INITIALIZER_ELEMENTS = 1024


def weightless_skeleton(model, *, value_info: bool = False):
    """(skeleton, names of the large initializers it declares as graph inputs); `value_info`: with the graph's
    value_info (the shapes and types known so far)."""
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
    if value_info:
        graph.value_info.extend(model.graph.value_info)
    declared = {i.name for i in model.graph.input}
    stand_ins = set()
    for initializer in model.graph.initializer:
        small = int(np.prod(initializer.dims, dtype=np.int64)) <= SMALL_INITIALIZER_ELEMENTS
        if small and initializer.data_location != onnx.TensorProto.EXTERNAL:
            graph.initializer.append(initializer)
        elif initializer.name not in declared:
            graph.input.append(onnx.helper.make_tensor_value_info(initializer.name, initializer.data_type,
                                                                  list(initializer.dims)))
            stand_ins.add(initializer.name)
    return skeleton, stand_ins


def infer_shapes(model, *, data_prop: bool = False):
    """`model` with its value_info replaced by shape inference's (returned, updated in place)."""
    import onnx

    skeleton, _ = weightless_skeleton(model)
    inferred = onnx.shape_inference.infer_shapes(skeleton, data_prop=data_prop)
    del model.graph.value_info[:]
    model.graph.value_info.extend(inferred.graph.value_info)
    outputs = {o.name: o for o in inferred.graph.output}
    for output in model.graph.output:
        if output.name in outputs:
            output.CopyFrom(outputs[output.name])
    return model


def convert_opset(model, version: int):
    """`model` converted to default-domain opset `version` by onnx.version_converter (returned, updated in place).

    The converter's adapters rewrite nodes, attributes and small constants; a large initializer is only read by
    name, so it stays as it is. Should an adapter have consumed one (it would then be missing from the converted
    skeleton's inputs), the whole model is converted instead.
    """
    import onnx

    skeleton, stand_ins = weightless_skeleton(model)
    converted = onnx.version_converter.convert_version(skeleton, version)
    if not stand_ins <= {i.name for i in converted.graph.input}:
        converted = onnx.version_converter.convert_version(model, version)
        model.CopyFrom(converted)
        return model
    model.ir_version = converted.ir_version
    del model.opset_import[:]
    model.opset_import.extend(converted.opset_import)
    graph, result = model.graph, converted.graph
    for field in ("node", "value_info", "output"):
        del getattr(graph, field)[:]
        getattr(graph, field).extend(getattr(result, field))
    small = [i for i in graph.initializer if i.name not in stand_ins]
    if list(result.initializer) != small:  # an adapter changed a small constant: rebuild the list in its order
        large = {i.name: i for i in graph.initializer if i.name in stand_ins}
        kept = [*result.initializer, *large.values()]
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return model
