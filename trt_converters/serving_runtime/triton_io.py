"""Request plumbing for python-backend models inside Triton's python stub.

`triton_python_backend_utils` exists only inside the stub, so it is imported in the functions.
"""

from __future__ import annotations

import json
import os
from typing import Callable


def model_arguments(args: dict) -> tuple[dict, str, str]:
    """(model config, model name, version folder) from the `args` Triton passes to initialize()."""
    folder = os.path.join(args["model_repository"], args["model_version"])
    return json.loads(args["model_config"]), args["model_name"], folder


def parameter(config: dict, key: str, default=None):
    """A string parameter of the model config (`parameters { key: ... }`), `default` when unset or empty."""
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


def texts(array) -> list[str]:
    """A TYPE_STRING tensor's values, flattened, as str."""
    return [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]


def gather_texts(requests, name: str, model_name: str) -> tuple[list, list[str], list[tuple]]:
    """The texts of every request's TYPE_STRING input `name`, in one list for one batched call.

    Returns (responses: an INVALID_ARG answer where the input is missing, else None; the texts; one
    (request index, first text's position, the input's shape) per request that sent it)."""
    import triton_python_backend_utils as pb_utils

    responses, gathered, owners = [None] * len(requests), [], []
    for index, request in enumerate(requests):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        if tensor is None:
            responses[index] = error_response(f"{model_name}: missing input {name!r}", invalid_request=True)
            continue
        array = tensor.as_numpy()
        owners.append((index, len(gathered), array.shape))
        gathered += texts(array)
    return responses, gathered, owners


def optional_input(request, name: str):
    """The named input as numpy, or None when the request does not carry it."""
    import triton_python_backend_utils as pb_utils

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


class RequestError(ValueError):
    """The request is wrong (the client's mistake, e.g. bytes that are no image): answered with Triton's
    INVALID_ARG code, which the HTTP endpoint returns as 400 and gRPC as INVALID_ARGUMENT. Any other exception is a
    fault of the server (INTERNAL: HTTP 500), which clients and load balancers may retry."""


def call_model(model_name: str, inputs: dict, output_names):
    """One BLS request to another model in the repository. Its INVALID_ARG error becomes a RequestError, any other
    error a RuntimeError.

    `output_names` is one name (returns that array) or a list of names (returns a list).
    """
    import triton_python_backend_utils as pb_utils

    names = [output_names] if isinstance(output_names, str) else list(output_names)
    response = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=names,
        inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
    ).exec()
    if response.has_error():
        error = response.error()
        message = f"model {model_name}: {error.message()}"
        if error.code() == pb_utils.TritonError.INVALID_ARG:
            raise RequestError(message)
        raise RuntimeError(message)
    arrays = [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in names]
    return arrays[0] if isinstance(output_names, str) else arrays


def error_response(message: str, *, invalid_request: bool = False):
    """An error answer: INVALID_ARG (HTTP 400) for the client's mistakes, else INTERNAL (HTTP 500)."""
    import triton_python_backend_utils as pb_utils

    code = pb_utils.TritonError.INVALID_ARG if invalid_request else pb_utils.TritonError.INTERNAL
    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message, code))


def exception_response(exc: Exception, prefix: str = ""):
    """The error answer for an exception raised while handling one request (RequestError: the client's)."""
    return error_response(f"{prefix}{exc}", invalid_request=isinstance(exc, RequestError))


def text_responses(requests, recognize: Callable) -> list:
    """A `text` output (one string a row) per request; an exception answers that request alone (RequestError:
    HTTP 400, others 500)."""
    import numpy as np
    import triton_python_backend_utils as pb_utils

    responses = []
    for request in requests:
        try:
            rows = recognize(request)
            out = pb_utils.Tensor("text", np.array([[t.encode("utf-8")] for t in rows], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        except Exception as exc:  # bad image from the client, or a core-model failure
            responses.append(exception_response(exc))
    return responses
