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


def optional_input(request, name: str):
    """The named input as numpy, or None when the request does not carry it."""
    import triton_python_backend_utils as pb_utils

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def call_model(model_name: str, inputs: dict, output_names):
    """One BLS request to another model in the repository; its error becomes a ValueError.

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
        raise ValueError(f"model {model_name}: {response.error().message()}")
    arrays = [pb_utils.get_output_tensor_by_name(response, name).as_numpy() for name in names]
    return arrays[0] if isinstance(output_names, str) else arrays


def error_response(message: str):
    import triton_python_backend_utils as pb_utils

    return pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(message))


def text_responses(requests, recognize: Callable) -> list:
    """A `text` output (one string a row) per request; a ValueError answers that request alone."""
    import numpy as np
    import triton_python_backend_utils as pb_utils

    responses = []
    for request in requests:
        try:
            rows = recognize(request)
            out = pb_utils.Tensor("text", np.array([[t.encode("utf-8")] for t in rows], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        except ValueError as exc:  # bad image from the client, or a core-model failure
            responses.append(error_response(str(exc)))
    return responses
