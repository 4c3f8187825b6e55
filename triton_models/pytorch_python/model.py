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
from serving_runtime.triton_io import RequestError, exception_response, parameter  # noqa: E402

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

        self.config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        self.batched = int(self.config.get("max_batch_size", 0)) > 0
        folder = os.path.join(args["model_repository"], args["model_version"])

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

    def _read_inputs(self, request):
        arrays = []
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise RequestError(f"missing input {name!r}")
            array = tensor.as_numpy()
            if array.dtype != dtype:
                array = array.astype(dtype)
            if self.batched and array.ndim == 0:
                raise RequestError(f"input {name!r} has no batch dimension")
            arrays.append(array)
        if self.batched and len({a.shape[0] for a in arrays}) > 1:
            raise RequestError(f"inputs disagree on batch size: {sorted({a.shape[0] for a in arrays})}")
        return arrays

    def _forward(self, arrays):
        with self.torch.inference_mode():
            result = self.model(*[self.torch.from_numpy(np.ascontiguousarray(a)) for a in arrays])
        if isinstance(result, dict):
            result = [result[name] for name, _ in self.outputs]
        elif not isinstance(result, (tuple, list)):
            result = [result]
        if len(result) < len(self.outputs):
            raise RuntimeError(f"the model returned {len(result)} outputs, the config lists {len(self.outputs)}")
        return [r.detach().cpu().numpy() for r in result[:len(self.outputs)]]

    def _response(self, results):
        tensors = [pb_utils.Tensor(name, np.asarray(value).astype(dtype, copy=False))
                   for (name, dtype), value in zip(self.outputs, results)]
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def _run_group(self, members):
        if len(members) == 1:
            index, arrays = members[0]
            return {index: self._response(self._forward(arrays))}
        sizes = [arrays[0].shape[0] for _, arrays in members]
        stacked = [np.concatenate([arrays[k] for _, arrays in members], axis=0) for k in range(len(self.inputs))]
        results = self._forward(stacked)
        if any(np.ndim(r) == 0 or np.shape(r)[0] != sum(sizes) for r in results):
            raise RuntimeError("outputs are not batched along dimension 0")
        bounds = np.cumsum(sizes)[:-1]
        parts = [np.split(r, bounds, axis=0) for r in results]
        return {index: self._response([p[k] for p in parts]) for k, (index, _) in enumerate(members)}

    def execute(self, requests):
        responses = [None] * len(requests)
        groups = {}
        for index, request in enumerate(requests):
            try:
                arrays = self._read_inputs(request)
            except RequestError as exc:
                responses[index] = exception_response(exc, f"{self.model_name}: ")
                continue
            key = tuple((a.shape[1:], a.dtype.str) for a in arrays) if self.batched else ("request", index)
            groups.setdefault(key, []).append((index, arrays))
        for members in groups.values():
            try:
                answered = self._run_group(members)
            except Exception:
                answered = {}
                for index, arrays in members:  # one bad request must not fail the others
                    try:
                        answered.update(self._run_group([(index, arrays)]))
                    except Exception as exc:
                        answered[index] = exception_response(exc, f"{self.model_name}: ")
            for index, response in answered.items():
                responses[index] = response
        return responses

    def finalize(self):
        self.model = None
