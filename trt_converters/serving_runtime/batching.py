"""One execute() call's requests answered in groups: requests whose non-batch shapes agree run as one
call (concatenated along the batch dimension) and the outputs are split back per request.

A request that cannot be read, or whose group fails and then fails alone, gets an error response (a
RequestError: INVALID_ARG, HTTP 400; any other exception: INTERNAL, HTTP 500); the other requests of the call
are still answered. `answer_in_groups` is the grouping every served model uses; `execute_model` is the whole
execute() of a graph-runtime model (ONNX Runtime, OpenVINO), with the input reading and responses those
models share.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from .triton_io import RequestError, exception_response


def answer_in_groups(requests, read: Callable, run: Callable, respond: Callable, *, batched: bool,
                     model_name: str) -> list:
    """One response per request, in order.

    `read(request)` gives {input name: array} (RequestError for a bad request), `run(feeds)` the output
    arrays in config order, `respond(outputs)` the InferenceResponse. Unbatched models (`batched` False)
    run each request alone.
    """
    responses = [None] * len(requests)
    groups: dict = {}
    for index, request in enumerate(requests):
        try:
            feeds = read(request)
        except RequestError as exc:
            responses[index] = exception_response(exc, f"{model_name}: ")
            continue
        key = tuple((n, a.shape[1:], a.dtype.str) for n, a in feeds.items()) if batched else ("request", index)
        groups.setdefault(key, []).append((index, feeds))
    for members in groups.values():
        try:
            answered = _run_group(members, run, respond)
        except Exception:
            answered = {}
            for index, feeds in members:  # one bad request must not fail the others
                try:
                    answered.update(_run_group([(index, feeds)], run, respond))
                except Exception as exc:  # answer this request with its error, keep serving
                    answered[index] = exception_response(exc, f"{model_name}: ")
        for index, response in answered.items():
            responses[index] = response
    return responses


def _run_group(members, run: Callable, respond: Callable) -> dict:
    """Run (index, feeds) pairs with equal non-batch shapes as one call; index -> response."""
    if len(members) == 1:
        index, feeds = members[0]
        return {index: respond(run(feeds))}
    sizes = [next(iter(feeds.values())).shape[0] for _, feeds in members]
    names = list(members[0][1])
    stacked = {n: np.concatenate([feeds[n] for _, feeds in members], axis=0) for n in names}
    results = run(stacked)
    if any(np.ndim(r) == 0 or np.shape(r)[0] != sum(sizes) for r in results):
        raise RuntimeError("outputs are not batched along dimension 0")  # the model's fault; run them alone
    bounds = np.cumsum(sizes)[:-1]
    per_output = [np.split(np.asarray(r), bounds, axis=0) for r in results]
    return {index: respond([parts[k] for parts in per_output]) for k, (index, _) in enumerate(members)}


def to_text(array):
    return np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])(array)


def to_bytes(array):
    return np.vectorize(lambda v: v if isinstance(v, bytes) else str(v).encode("utf-8"), otypes=[object])(array)


def read_inputs(request, input_dtypes: dict, *, batched: bool, optional: set, model_name: str,
                graph: str = "graph") -> dict:
    """name -> numpy array of one request, cast to the graph's dtype (None: as sent; object: text)."""
    import triton_python_backend_utils as pb_utils

    feeds = {}
    for name, dtype in input_dtypes.items():
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            if name in optional:
                raise RequestError(f"input {name!r} is required by the {graph} of {model_name}")
            raise RequestError(f"missing input {name!r}")
        array = tensor.as_numpy()
        if dtype is np.object_:
            array = to_text(array)
        elif dtype is not None and array.dtype != dtype:
            array = array.astype(dtype)
        if batched and array.ndim == 0:
            raise RequestError(f"input {name!r} has no batch dimension")
        feeds[name] = array
    if batched:
        sizes = {a.shape[0] for a in feeds.values()}
        if len(sizes) > 1:
            raise RequestError(f"inputs disagree on batch size: {sorted(sizes)}")
    return feeds


def response(outputs: list, results: list):
    """An InferenceResponse of (name, numpy dtype) outputs from the runtime's result arrays."""
    import triton_python_backend_utils as pb_utils

    tensors = []
    for (name, dtype), value in zip(outputs, results):
        value = np.asarray(value)
        value = to_bytes(value) if dtype is np.object_ else value.astype(dtype, copy=False)
        tensors.append(pb_utils.Tensor(name, value))
    return pb_utils.InferenceResponse(output_tensors=tensors)


def execute_model(model, requests, run: Callable, graph: str) -> list:
    """execute() of a graph-runtime model whose `input_dtypes`, `optional_inputs`, `outputs`, `batched` and
    `model_name` attributes describe its tensors; `run(feeds)` -> result arrays in `outputs` order; `graph`
    names what it runs in error messages."""
    def read(request):
        return read_inputs(request, model.input_dtypes, batched=model.batched, optional=model.optional_inputs,
                           model_name=model.model_name, graph=graph)

    return answer_in_groups(requests, read, run, lambda results: response(model.outputs, results),
                            batched=model.batched, model_name=model.model_name)


def served_outputs(config: dict, graph_outputs, model_name: str, graph: str) -> list:
    """(name, numpy dtype) of the config's outputs; a name the graph lacks is a load error naming `graph`."""
    import triton_python_backend_utils as pb_utils

    outputs = []
    for entry in config.get("output", []):
        if entry["name"] not in graph_outputs:
            raise pb_utils.TritonModelException(f"{model_name}: config output {entry['name']!r} is not an output of "
                                                f"the {graph} (its outputs: {sorted(graph_outputs)})")
        outputs.append((entry["name"], pb_utils.triton_string_to_numpy(entry["data_type"])))
    return outputs
