"""Activation ranges that ignore padding, and outlier input channels of INT8 MatMuls computed apart.

Transformer activations carry a few channels far outside the rest (on all-MiniLM-L6-v2 one LayerNorm output
channel reaches 30 where the median channel peaks at 1.4, and one GELU output channel 24.6 against 1.0). One
per-tensor INT8 scale sized for them leaves the other channels a handful of levels. Here such a MatMul's input
is split, with the weights, into the ordinary channels (quantized, outlier channels zeroed) and the few outlier
channels (an unquantized MatMul of width |outliers|), added back together: the graph computes the same
function, and the INT8 range shrinks to the ordinary channels'. The channels are chosen once, from the
calibration data (a static form of the mixed-precision decomposition of Dettmers et al., LLM.int8(), 2022).

Padded positions of a text batch are computed but masked out of the answer; on all-MiniLM-L6-v2 their activations
reached 3.4x the maximum of the real tokens other than [CLS], so statistics are taken over the positions the attention mask keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

# A channel is an outlier when its calibration maximum passes this multiple of the median channel's, and at
# most MAX_OUTLIER_SHARE of a MatMul's input channels (at least MIN_OUTLIERS) are computed apart. Measured on
# all-MiniLM-L6-v2 (benchmarks/minilm_int8_accuracy.py, 32 sentences, minimum cosine / share of FLOPs in INT8):
# ratio 3, share 1/48: 0.989 / 94%; ratio 2, share 1/16: 0.991 / 92%; ratio 1.5, share 1/8: 0.994 / 88%;
# without the split 0.890 / 95%. Beyond this the error left is spread thinly over every layer.
OUTLIER_RATIO = 2.0
MAX_OUTLIER_SHARE = 1 / 16
MIN_OUTLIERS = 8
TOKEN_MASK_INPUTS = ("attention_mask",)
SIDE_MATMUL_SUFFIX = "/outlier_channels_MatMul"
INLIERS_SUFFIX = "_inlier_channels"


@dataclass
class ChannelRanges:
    """Per-channel max |x| of one tensor over the calibration data: over kept positions and over all."""

    kept: "object"  # np.ndarray [channels]
    every: "object"


def token_mask_input(model) -> str | None:
    """The graph input that marks padded positions (0) of a [batch, sequence] text input, if there is one."""
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name in TOKEN_MASK_INPUTS and len(dims) == 2:
            return value.name
    return None


def weight_matmul_inputs(model) -> dict[str, list]:
    """Activation tensor -> the MatMul nodes that multiply it by a 2-D constant weight."""
    initializers = {i.name: i for i in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is not None and len(weight.dims) == 2 and node.input[0] not in initializers:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def activation_batches(model, tensors: list[str], data: dict, batch: int, mask_input: str | None):
    """Runs the FP32 graph over `data`, `batch` samples at a time, and yields ({tensor: |value|}, kept) per
    batch: `kept` marks the [batch, sequence] positions `mask_input` keeps (None without one)."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph_inputs = {i.name for i in probe.graph.input}
    present = {o.name for o in probe.graph.output}
    for name in tensors:
        if name not in graph_inputs and name not in present:
            probe.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    fetched = [name for name in tensors if name not in graph_inputs]
    samples = next(iter(data.values())).shape[0]
    for start in range(0, samples, batch):
        feeds = {name: value[start:start + batch] for name, value in data.items()}
        values = dict(zip(fetched, session.run(fetched, feeds)))
        values.update({name: feeds[name] for name in tensors if name in graph_inputs})
        yield ({name: np.abs(np.asarray(value, dtype=np.float32)) for name, value in values.items()},
               feeds[mask_input].astype(bool) if mask_input else None)


def channel_ranges(model, tensors: list[str], data: dict, batch: int, mask_input: str | None) -> dict[str, ChannelRanges]:
    """Runs the FP32 graph over the calibration data once and keeps each tensor's per-channel (last axis)
    maximum magnitude, over the positions `mask_input` keeps (all positions without one) and over all."""
    import numpy as np

    ranges: dict[str, ChannelRanges] = {}
    for values, kept_positions in activation_batches(model, tensors, data, batch, mask_input):
        for name, value in values.items():
            if value.ndim < 2:
                continue
            every = value.reshape(-1, value.shape[-1]).max(axis=0)
            if kept_positions is not None and value.shape[:2] == kept_positions.shape:
                kept_values = value[kept_positions]
                kept = kept_values.reshape(-1, value.shape[-1]).max(axis=0) if kept_values.size else np.zeros_like(every)
            else:
                kept = every
            if name in ranges:
                ranges[name] = ChannelRanges(np.maximum(ranges[name].kept, kept), np.maximum(ranges[name].every, every))
            else:
                ranges[name] = ChannelRanges(kept, every)
    return ranges


def choose_outliers(ranges: dict[str, ChannelRanges]) -> dict[str, list[int]]:
    """Tensor -> its outlier channels, largest first (tensors without any left out)."""
    import numpy as np

    chosen = {}
    for name, found in ranges.items():
        kept = found.kept
        limit = max(MIN_OUTLIERS, int(kept.shape[0] * MAX_OUTLIER_SHARE))
        typical = float(np.median(kept))
        order = np.argsort(kept)[::-1][:limit]
        channels = [int(c) for c in order if kept[c] > OUTLIER_RATIO * typical]
        if channels and len(channels) < kept.shape[0]:
            chosen[name] = channels
    return chosen


def split_outlier_channels(model, outliers: dict[str, list[int]]):
    """A copy of `model` where each MatMul reading a tensor of `outliers` computes those channels apart:
    X W = (X * keep) (W with those rows zeroed) + X[..., outliers] W[outliers]. The first product is the one
    quantized; the second is named with SIDE_MATMUL_SUFFIX and stays out of INT8."""
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph = copy.graph
    initializers = {i.name: i for i in graph.initializer}
    groups = {name: nodes for name, nodes in weight_matmul_inputs(copy).items() if name in outliers}
    before: dict[str, list] = {}  # first consumer's name -> nodes to insert before it
    after: dict[str, list] = {}
    for tensor, consumers in groups.items():
        channels = np.asarray(outliers[tensor], dtype=np.int64)
        width = numpy_helper.to_array(initializers[consumers[0].input[1]]).shape[0]
        keep = np.ones(width, dtype=np.float32)
        keep[channels] = 0.0
        keep_name, index_name = f"{tensor}_inlier_mask", f"{tensor}_outlier_index"
        inliers, outlier_values = tensor + INLIERS_SUFFIX, f"{tensor}_outlier_channels"
        graph.initializer.extend([numpy_helper.from_array(keep, keep_name),
                                  numpy_helper.from_array(channels, index_name)])
        before[consumers[0].name] = [
            helper.make_node("Mul", [tensor, keep_name], [inliers], name=f"{tensor}/inlier_channels_Mul"),
            helper.make_node("Gather", [tensor, index_name], [outlier_values], name=f"{tensor}/outlier_channels_Gather",
                             axis=-1)]
        for node in consumers:
            weight = numpy_helper.to_array(initializers[node.input[1]])
            rows = f"{node.input[1]}_outlier_rows"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(weight[channels]), rows))
            zeroed = weight.copy()
            zeroed[channels] = 0.0
            initializers[node.input[1]].CopyFrom(numpy_helper.from_array(zeroed, node.input[1]))
            output = node.output[0]
            node.input[0], node.output[0] = inliers, f"{output}_inlier_part"
            after[node.name] = [
                helper.make_node("MatMul", [outlier_values, rows], [f"{output}_outlier_part"],
                                 name=node.name + SIDE_MATMUL_SUFFIX),
                helper.make_node("Add", [node.output[0], f"{output}_outlier_part"], [output],
                                 name=node.name + "/outlier_channels_Add")]
    ordered = []
    for node in graph.node:
        ordered += before.get(node.name, []) + [node] + after.get(node.name, [])
    del graph.node[:]
    graph.node.extend(ordered)
    return copy


def side_matmul_names(model) -> list[str]:
    return [n.name for n in model.graph.node if n.name.endswith(SIDE_MATMUL_SUFFIX)]


def activation_matmuls(model) -> list[str]:
    """MatMuls of two activations (attention scores and context): no constant operand."""
    constants = {i.name for i in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    return [n.name for n in model.graph.node
            if n.op_type == "MatMul" and not any(i in constants for i in n.input[:2])]


def masked_scales(scales: dict[str, float], ranges: dict[str, ChannelRanges],
                  outliers: dict[str, list[int]]) -> dict[str, float]:
    """ModelOpt's max scales rescaled from the maximum over all positions to the maximum over kept ones.

    A quantized tensor is either a tensor of `ranges` or the inlier part of one (its outlier channels zeroed).
    Tensors with no ranges keep their scale."""
    import numpy as np

    rescaled = dict(scales)
    for name, scale in scales.items():
        source, channels = name, None
        if name.endswith(INLIERS_SUFFIX) and name[:-len(INLIERS_SUFFIX)] in ranges:
            source = name[:-len(INLIERS_SUFFIX)]
            channels = outliers.get(source, [])
        if source not in ranges:
            continue
        kept, every = ranges[source].kept.copy(), ranges[source].every.copy()
        if channels:
            kept[channels] = 0.0
            every[channels] = 0.0
        if every.max() > 0 and kept.max() > 0:
            rescaled[name] = scale * float(kept.max()) / float(every.max())
    return {name: float(np.float32(value)) for name, value in rescaled.items()}
