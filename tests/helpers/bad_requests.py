"""A bad-request battery for a served pipeline: each client mistake gets its HTTP status and message, the server
stays up, and a good request gets the same answer after the battery as before it."""

from __future__ import annotations

import dataclasses
import re
import urllib.request
from typing import Callable

import numpy as np


@dataclasses.dataclass(frozen=True)
class BadRequest:
    label: str
    send: Callable[[], object]  # raises tritonclient's InferenceServerException
    message: str  # a regular expression the error message must match
    status: str = "400"


def http_client(server):
    import tritonclient.http as client_lib

    return client_lib, client_lib.InferenceServerClient(server.http_url)


def http_infer(server, model: str, tensors: dict[str, tuple[np.ndarray, str]], outputs: list[str]) -> dict:
    """One HTTP request with binary tensors: {name: (array, datatype)} -> {output: array}."""
    client_lib, client = http_client(server)
    inputs = []
    for name, (array, datatype) in tensors.items():
        tensor = client_lib.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array, binary_data=True)
        inputs.append(tensor)
    result = client.infer(model, inputs, outputs=[client_lib.InferRequestedOutput(o) for o in outputs])
    return {o: result.as_numpy(o) for o in outputs}


def assert_battery(server, cases: list[BadRequest], good: Callable[[], dict]) -> None:
    from tritonclient.utils import InferenceServerException

    before = good()
    failures = []
    for case in cases:
        try:
            case.send()
            failures.append(f"{case.label}: answered, expected HTTP {case.status}")
            continue
        except InferenceServerException as exc:
            status, message = exc.status(), exc.message()
        if status != case.status or not re.search(case.message, message):
            failures.append(f"{case.label}: HTTP {status} {message!r}, expected HTTP {case.status} /{case.message}/")
    assert not failures, "\n".join(failures)
    assert server.is_running()
    with urllib.request.urlopen(f"http://{server.http_url}/v2/health/ready", timeout=30) as reply:
        assert reply.status == 200
    after = good()
    assert after.keys() == before.keys()
    for name in before:
        np.testing.assert_array_equal(after[name], before[name])
