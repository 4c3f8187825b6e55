"""Generic Triton python-backend model that serves `<version>/model.xml` (+ model.bin) with OpenVINO on CPU.

For Triton servers without the openvino backend (the nvidia-pytriton wheel has only the python backend).
Inputs and outputs come from the Triton model config; a config may leave out graph inputs only if the
graph does not need them. Optional config parameters (OpenVINO CPU properties):
`inference_precision` (f32 or bf16; unset: OpenVINO's default, BF16 on CPUs with AMX or AVX-512 BF16),
`inference_num_threads`, `num_streams` (default 1: one request at a time per instance),
`performance_hint` (LATENCY or THROUGHPUT; default LATENCY), `ir_file` (default model.xml).

All requests of one execute() call whose non-batch shapes agree run as one OpenVINO call
(concatenated along the batch dimension) and the outputs are split back per request.
"""

import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime.batching import execute_model, served_outputs  # noqa: E402
from serving_runtime.triton_io import model_arguments, parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "openvino")

_CHOICES = {"inference_precision": ("f32", "bf16"), "performance_hint": ("LATENCY", "THROUGHPUT")}
_COUNTS = ("inference_num_threads", "num_streams")
_PROPERTIES = {"inference_precision": "INFERENCE_PRECISION_HINT", "performance_hint": "PERFORMANCE_HINT",
               "inference_num_threads": "INFERENCE_NUM_THREADS", "num_streams": "NUM_STREAMS"}


def _properties(config, model_name):
    """OpenVINO compile properties from the config parameters; a bad value is a load error."""
    properties = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "LATENCY"}
    for key in (*_CHOICES, *_COUNTS):
        value = (parameter(config, key) or "").strip()
        if not value:
            continue
        if key in _COUNTS and not value.isdigit():
            raise pb_utils.TritonModelException(
                f"{model_name}: parameter {key} must be a non-negative integer, got {value!r}")
        if key in _CHOICES and value not in _CHOICES[key]:
            raise pb_utils.TritonModelException(
                f"{model_name}: parameter {key} must be one of {', '.join(_CHOICES[key])}, got {value!r}")
        properties[_PROPERTIES[key]] = value
    return properties


class TritonPythonModel:
    def initialize(self, args):
        import openvino as ov

        self.config, self.model_name, folder = model_arguments(args)
        self.batched = int(self.config.get("max_batch_size", 0)) > 0
        filename = (parameter(self.config, "ir_file") or "model.xml").strip()
        path = os.path.join(folder, filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(f"{self.model_name}: OpenVINO IR not found at {path}")
        core = ov.Core()
        self.compiled = core.compile_model(core.read_model(path), "CPU", _properties(self.config, self.model_name))
        self.request = self.compiled.create_infer_request()

        graph_inputs = {name: port for port in self.compiled.inputs for name in port.get_names()}
        graph_outputs = {name: port for port in self.compiled.outputs for name in port.get_names()}
        config_inputs = [i["name"] for i in self.config.get("input", [])]
        unknown = [n for n in config_inputs if n not in graph_inputs]
        missing = [p.get_any_name() for p in self.compiled.inputs if not set(p.get_names()) & set(config_inputs)]
        if unknown or missing:
            raise pb_utils.TritonModelException(
                f"{self.model_name}: config inputs do not match the OpenVINO model "
                f"(not in model: {unknown}; needed by model but not in config: {missing})")
        self.optional_inputs = {i["name"] for i in self.config.get("input", []) if i.get("optional")}
        self.input_dtypes = {n: graph_inputs[n].get_element_type().to_dtype().type for n in config_inputs}
        self.outputs = served_outputs(self.config, graph_outputs, self.model_name, "OpenVINO model")
        self.output_ports = [graph_outputs[name] for name, _ in self.outputs]

    def _run(self, feeds):
        try:
            results = self.request.infer(feeds)
        except Exception as exc:  # OpenVINO raises RuntimeError for bad shapes/values
            raise RuntimeError(f"OpenVINO failed: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}") \
                from exc
        return [np.array(results[port]) for port in self.output_ports]

    def execute(self, requests):
        return execute_model(self, requests, self._run, "OpenVINO model")

    def finalize(self):
        self.request = None
        self.compiled = None
