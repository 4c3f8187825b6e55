"""Requests to a real Triton server from tests."""

from __future__ import annotations


def triton_infer(protocol: str, url: str, model: str, inputs: dict, output: str):
    """One request to a real Triton server over "http" or "grpc"; returns the named output as numpy."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient
    from tritonclient.utils import np_to_triton_dtype

    client_module = grpcclient if protocol == "grpc" else httpclient
    tensors = []
    for name, array in inputs.items():
        tensor = client_module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return client_module.InferenceServerClient(url).infer(model, tensors).as_numpy(output)
