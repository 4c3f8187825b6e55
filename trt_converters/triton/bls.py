"""Helpers for python-backend (BLS) models that run inside Triton's python stub.

`triton_python_backend_utils` exists only inside the stub, so it is imported in the functions.
"""

from __future__ import annotations

from typing import Callable


def optional_input(request, name: str):
    """The named input as numpy, or None when the request does not carry it."""
    import triton_python_backend_utils as pb_utils

    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy()


def call_model(model_name: str, inputs: dict, output_name: str):
    """One BLS request to another model in the repository; its error becomes a ValueError."""
    import triton_python_backend_utils as pb_utils

    response = pb_utils.InferenceRequest(
        model_name=model_name,
        requested_output_names=[output_name],
        inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
    ).exec()
    if response.has_error():
        raise ValueError(f"model {model_name}: {response.error().message()}")
    return pb_utils.get_output_tensor_by_name(response, output_name).as_numpy()


def text_responses(requests, recognize: Callable) -> list:
    """A `text` output (one string a row) per request; a ValueError answers that request alone."""
    import numpy as np
    import triton_python_backend_utils as pb_utils

    responses = []
    for request in requests:
        try:
            texts = recognize(request)
            out = pb_utils.Tensor("text", np.array([[t.encode("utf-8")] for t in texts], dtype=np.object_))
            responses.append(pb_utils.InferenceResponse(output_tensors=[out]))
        except ValueError as exc:  # bad image from the client, or a core-model failure
            responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
    return responses
