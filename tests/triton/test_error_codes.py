"""Which answers are the client's mistakes (INVALID_ARG: HTTP 400) and which are faults (INTERNAL: HTTP 500)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from trt_converters.serving_runtime import triton_io
from trt_converters.serving_runtime.images import InvalidImageError


class _Error:
    INVALID_ARG, INTERNAL = "INVALID_ARG", "INTERNAL"

    def __init__(self, message, code=INTERNAL):
        self._message, self._code = message, code

    def message(self):
        return self._message

    def code(self):
        return self._code


class _Response:
    def __init__(self, output_tensors=None, error=None):
        self.output_tensors, self._error = output_tensors, error

    def has_error(self):
        return self._error is not None

    def error(self):
        return self._error


@pytest.fixture
def pb_utils(monkeypatch):
    module = types.SimpleNamespace(TritonError=_Error, InferenceResponse=_Response,
                                   Tensor=lambda name, value: (name, value))
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", module)
    return module


def test_request_errors_are_invalid_arg_and_faults_internal(pb_utils):
    bad = triton_io.exception_response(InvalidImageError("cannot decode image"), "m: ")
    fault = triton_io.exception_response(RuntimeError("ONNX Runtime failed"), "m: ")
    assert (bad.error().code(), bad.error().message()) == ("INVALID_ARG", "m: cannot decode image")
    assert (fault.error().code(), fault.error().message()) == ("INTERNAL", "m: ONNX Runtime failed")


def test_text_responses_answer_each_request_with_its_own_code(pb_utils):
    def recognize(request):
        if request == "bad":
            raise InvalidImageError("empty image: 0 bytes received")
        if request == "fault":
            raise RuntimeError("model crnn: out of memory")
        return ["text"]

    good, bad, fault = triton_io.text_responses(["good", "bad", "fault"], recognize)
    assert not good.has_error() and good.output_tensors[0][0] == "text"
    assert bad.error().code() == "INVALID_ARG" and fault.error().code() == "INTERNAL"


@pytest.mark.parametrize("code, raised", [("INVALID_ARG", triton_io.RequestError), ("INTERNAL", RuntimeError)])
def test_a_called_models_error_keeps_its_kind(pb_utils, code, raised):
    class Request:
        def __init__(self, **kwargs):
            pass

        def exec(self):
            return _Response(error=_Error("image 0: bad", code))

    pb_utils.InferenceRequest = Request
    with pytest.raises(raised, match="model core: image 0: bad"):
        triton_io.call_model("core", {"x": np.zeros(1)}, "y")
