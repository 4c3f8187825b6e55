"""Generic Triton python-backend model that serves `<version>/model.onnx` with ONNX Runtime (CPU).

Copy this file to `<repo>/<model>/<version>/model.py` next to `model.onnx` (or the file named by
the config parameter `onnx_file`). Inputs and outputs come from the Triton model config; a config may
leave out graph inputs only if the graph does not need them. Optional config parameters:
`intra_op_thread_count`, `inter_op_thread_count` (ONNX Runtime session threads).

All requests of one execute() call whose non-batch shapes agree run as one ONNX Runtime call
(concatenated along the batch dimension) and the outputs are split back per request. A request
that fails gets an error response; the other requests of the call are still answered.
"""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime.batching import execute_model, served_outputs  # noqa: E402
from serving_runtime.triton_io import model_arguments, parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "onnxruntime")


_ORT_TO_NUMPY = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def _parameter(config, key):
    return (parameter(config, key) or "").strip() or None


class TritonPythonModel:
    def initialize(self, args):
        import onnxruntime as ort

        self.config, self.model_name, folder = model_arguments(args)
        self.batched = int(self.config.get("max_batch_size", 0)) > 0

        # default_model_filename is the python backend's own (model.py), hence a parameter here
        filename = _parameter(self.config, "onnx_file") or "model.onnx"
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: ONNX file not found at {path}")

        options = ort.SessionOptions()
        for key, attribute in (("intra_op_thread_count", "intra_op_num_threads"),
                               ("inter_op_thread_count", "inter_op_num_threads")):
            value = _parameter(self.config, key)
            if value is not None:
                if not value.isdigit():
                    raise pb_utils.TritonModelException(
                        f"{self.model_name}: parameter {key} must be a non-negative integer, got {value!r}")
                setattr(options, attribute, int(value))
        self.session = ort.InferenceSession(path, sess_options=options, providers=["CPUExecutionProvider"])

        # Required inputs must be in the config; inputs with a default (an initializer) may be.
        graph_inputs = {i.name: i for i in self.session.get_inputs()}
        defaults = {i.name: i for i in self.session.get_overridable_initializers()}
        graph_outputs = {o.name: o for o in self.session.get_outputs()}
        config_inputs = [i["name"] for i in self.config.get("input", [])]
        unknown = [n for n in config_inputs if n not in graph_inputs and n not in defaults]
        missing = [n for n in graph_inputs if n not in config_inputs]
        if unknown or missing:
            raise pb_utils.TritonModelException(
                f"{self.model_name}: config inputs do not match the ONNX graph "
                f"(not in graph: {unknown}; needed by graph but not in config: {missing})")
        self.optional_inputs = {i["name"] for i in self.config.get("input", []) if i.get("optional")}
        self.input_dtypes = {
            n: _ORT_TO_NUMPY.get((graph_inputs.get(n) or defaults[n]).type) for n in config_inputs}

        self.outputs = served_outputs(self.config, graph_outputs, self.model_name, "ONNX graph")
        self.output_names = [name for name, _ in self.outputs]

    # -- request handling -----------------------------------------------------------------
    def _run(self, feeds):
        try:
            return self.session.run(self.output_names, feeds)
        except Exception as exc:  # ORT raises several types for bad shapes/values
            raise RuntimeError(f"ONNX Runtime failed: {exc}") from exc

    def execute(self, requests):
        return execute_model(self, requests, self._run, "ONNX graph")

    def finalize(self):
        self.session = None
