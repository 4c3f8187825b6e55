"""Triton python-backend model that serves a PyTorch module on CPU: the baseline for the CPU path.

Files in the version folder, beside this one (written by trt_converters.onnxruntime_cpu.pytorch_baseline):
    model_script.py     the user's model definition (code the user chose to run)
    checkpoint.<ext>    the state_dict checkpoint (loaded with weights_only=True)
    model_kwargs.json   keyword arguments for the model class
    serving_runtime/    the serving runtime (trt_converters/serving_runtime), copied by the writer
Config parameters: `model_class` (required), `torch_intra_op_threads`, `torch_inter_op_threads`.
Loading goes through serving_runtime.torch_loading, the code trt-convert loads checkpoints with
(strict key matching); trt_converters itself is not needed.

Inputs are passed to forward() positionally in config order; a tensor, tuple/list or dict result
is mapped to the config outputs in order (dicts by name). Requests of one execute() call with equal
non-batch shapes run as one forward pass and are split back per request.
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime import torch_loading  # noqa: E402
from serving_runtime.batching import execute_model  # noqa: E402
from serving_runtime.triton_io import model_arguments, parameter  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt),
# plus those model_script.py imports
REQUIRES = ("numpy", "safetensors", "torch")


def _int_parameter(config, key, model_name):
    value = parameter(config, key)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise pb_utils.TritonModelException(f"{model_name}: parameter {key} must be a positive integer, got {value!r}")
    return int(value)


class TritonPythonModel:
    def initialize(self, args):
        import torch

        self.config, self.model_name, folder = model_arguments(args)
        self.batched = int(self.config.get("max_batch_size", 0)) > 0

        intra = _int_parameter(self.config, "torch_intra_op_threads", self.model_name)
        inter = _int_parameter(self.config, "torch_inter_op_threads", self.model_name)
        if intra is not None:
            torch.set_num_threads(intra)
        if inter is not None:
            torch.set_num_interop_threads(inter)

        class_name = parameter(self.config, "model_class")
        if class_name is None:
            raise pb_utils.TritonModelException(f"{self.model_name}: config parameter model_class is required")
        checkpoints = sorted(n for n in os.listdir(folder) if n.startswith("checkpoint."))
        kwargs_path = os.path.join(folder, "model_kwargs.json")
        kwargs = json.loads(open(kwargs_path).read()) if os.path.isfile(kwargs_path) else {}
        model_class = torch_loading.import_model_class(os.path.join(folder, "model_script.py"), class_name)
        self.model = model_class(**kwargs)
        if checkpoints:
            torch_loading.load_weights(self.model, torch_loading.read_state_dict(os.path.join(folder, checkpoints[0])))
        self.model.eval()
        self.torch = torch
        self.inputs = [(i["name"], pb_utils.triton_string_to_numpy(i["data_type"])) for i in self.config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in self.config["output"]]
        self.input_dtypes, self.optional_inputs = dict(self.inputs), set()

    def _forward(self, arrays):
        """Outputs of forward() on {input name: array}, inputs passed positionally in config order."""
        with self.torch.inference_mode():
            result = self.model(*[self.torch.from_numpy(np.ascontiguousarray(arrays[name])) for name, _ in self.inputs])
        if isinstance(result, dict):
            result = [result[name] for name, _ in self.outputs]
        elif not isinstance(result, (tuple, list)):
            result = [result]
        if len(result) < len(self.outputs):
            raise RuntimeError(f"the model returned {len(result)} outputs, the config lists {len(self.outputs)}")
        return [r.detach().cpu().numpy() for r in result[:len(self.outputs)]]

    def execute(self, requests):
        return execute_model(self, requests, self._forward, "PyTorch model")

    def finalize(self):
        self.model = None
