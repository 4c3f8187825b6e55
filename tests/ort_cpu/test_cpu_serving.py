"""The CPU serving path end to end in the real Triton server (python backend, gRPC): ONNX Runtime FP32
and INT8 graphs served by the generic ONNX Runtime model, and the PyTorch baseline model."""

import concurrent.futures

import numpy as np
import pytest

from tests.ort_cpu.conftest import ROBERTA_SCRIPT, TINY_KWARGS, padded_inputs, pytorch_outputs
from trt_converters.onnx_runner import run_onnx_model
from trt_converters.onnxruntime_cpu.accuracy import accuracy_report
from trt_converters.verify import DEFAULT_TOLERANCES

pytestmark = pytest.mark.triton


@pytest.fixture(scope="module")
def served(tiny_roberta, fused_roberta, tmp_path_factory):
    from trt_converters.errors import UserError
    from trt_converters.onnxruntime_cpu import OrtInt8Options, quantize_for_onnxruntime
    from trt_converters.onnxruntime_cpu.serving import CpuServing, write_onnxruntime_python_model
    from trt_converters.onnxruntime_cpu.pytorch_baseline import TorchModule, write_pytorch_baseline_model
    from trt_converters.triton.server import LocalTritonServer, find_triton_distribution

    try:
        find_triton_distribution()
    except UserError as exc:
        pytest.skip(str(exc))
    work = tmp_path_factory.mktemp("cpu_serving")
    int8 = quantize_for_onnxruntime(tiny_roberta.fp32_onnx, work / "int8.onnx", OrtInt8Options(mode="dynamic"),
                                    io=tiny_roberta.io)
    repo = work / "repo"
    graphs = {"ort_fp32": tiny_roberta.fp32_onnx, "ort_int8": int8, "ort_fused_fp32": fused_roberta.path}
    for target in ("avx512_vnni", "avx2"):  # 8-bit and 7-bit weights of the fused graph
        graphs[f"ort_fused_int8_{target}"] = quantize_for_onnxruntime(fused_roberta.path,
                                                                      work / f"fused-int8-{target}.onnx",
                                                                      OrtInt8Options(mode="dynamic", cpu_target=target),
                                                                      io=tiny_roberta.io)
    for name, path in graphs.items():
        write_onnxruntime_python_model(repo, name, path, tiny_roberta.io,
                                       CpuServing(max_batch_size=8, intra_op_threads=1, inter_op_threads=1))
    write_pytorch_baseline_model(repo, "pytorch", TorchModule(ROBERTA_SCRIPT, "RobertaClassifier",
                                                              tiny_roberta.checkpoint, TINY_KWARGS),
                                 tiny_roberta.io, CpuServing(max_batch_size=8, intra_op_threads=1))
    with LocalTritonServer(repo, log_path=work / "server.log", startup_timeout=120) as server:
        yield server, graphs


def grpc_infer(url: str, model: str, inputs: dict) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    tensors = []
    for name, array in inputs.items():
        tensor = grpcclient.InferInput(name, list(array.shape), "INT64")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    result = client.infer(model, tensors, outputs=[grpcclient.InferRequestedOutput("logits")], client_timeout=60)
    return result.as_numpy("logits")


def test_served_onnxruntime_models_equal_onnxruntime_run_directly(served):
    server, graphs = served
    requests = [padded_inputs(1, 16, 11), padded_inputs(3, 9, 12)]
    for name, path in graphs.items():
        direct = run_onnx_model(path, requests)
        for request, expected in zip(requests, direct):
            # One request at a time: the same batch ONNX Runtime saw directly (dynamic INT8 scales
            # depend on the whole batch), so the answers agree to FP32 rounding.
            got = grpc_infer(server.grpc_url, name, request)
            np.testing.assert_allclose(got, expected["logits"], rtol=1e-5, atol=1e-5, err_msg=name)


def test_repository_requirements_list_what_its_python_models_import(served):
    from tests.helpers.served_models import constraint_pins

    server, _ = served
    lines = (server.repo / "requirements.txt").read_text().splitlines()
    pins = dict(line.split("==") for line in lines if not line.startswith("#"))
    # ONNX Runtime models: numpy, onnxruntime; the PyTorch baseline: torch and what its script imports
    assert sorted(pins) == ["numpy", "onnxruntime", "safetensors", "torch", "transformers"]
    assert pins == {name: constraint_pins()[name] for name in pins}


def test_served_pytorch_baseline_equals_pytorch(served, tiny_roberta):
    server, _ = served
    requests = [padded_inputs(2, 12, 21)]
    expected = pytorch_outputs(tiny_roberta.model, requests)
    got = [{"logits": grpc_infer(server.grpc_url, "pytorch", r)} for r in requests]
    report = accuracy_report(expected, got, DEFAULT_TOLERANCES["fp32"])
    assert report.passed, report.worst()


def test_served_fused_graphs_match_pytorch(served, tiny_roberta):
    server, graphs = served
    requests = [padded_inputs(1, 16, 31), padded_inputs(4, 30, 32)]
    expected = pytorch_outputs(tiny_roberta.model, requests)
    for name in (n for n in graphs if n.startswith("ort_fused")):
        got = [{"logits": grpc_infer(server.grpc_url, name, r)} for r in requests]
        tolerance = DEFAULT_TOLERANCES["fp32" if name.endswith("fp32") else "int8"]
        report = accuracy_report(expected, got, tolerance)
        assert report.passed, (name, report.worst())


def test_concurrent_batch1_requests_to_int8_model_match_pytorch(served, tiny_roberta):
    server, _ = served
    requests = [padded_inputs(1, 16, 100 + i) for i in range(8)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda r: grpc_infer(server.grpc_url, "ort_int8", r), requests))
    report = accuracy_report(pytorch_outputs(tiny_roberta.model, requests), [{"logits": a} for a in answers])
    assert report.passed, report.worst()


def test_model_folder_writers_write_cpu_python_configs_and_refuse_to_overwrite(tiny_roberta, tmp_path):
    from trt_converters.errors import UserError
    from trt_converters.onnxruntime_cpu.serving import CpuServing, write_onnxruntime_python_model
    from trt_converters.onnxruntime_cpu.pytorch_baseline import TorchModule, write_pytorch_baseline_model
    from trt_converters.triton.config import DEFAULT_MAX_QUEUE_DELAY_US, read_config

    ort_folder = write_onnxruntime_python_model(tmp_path, "ort", tiny_roberta.fp32_onnx, tiny_roberta.io,
                                                CpuServing(max_batch_size=4, intra_op_threads=2, inter_op_threads=1))
    torch_folder = write_pytorch_baseline_model(
        tmp_path, "pt", TorchModule(ROBERTA_SCRIPT, "RobertaClassifier", tiny_roberta.checkpoint, TINY_KWARGS),
        tiny_roberta.io, CpuServing(intra_op_threads=2))
    assert sorted(p.name for p in (ort_folder / "1").iterdir()) == ["model.onnx", "model.py", "serving_runtime"]
    assert sorted(p.name for p in (torch_folder / "1").iterdir()) == [
        "checkpoint.pt", "model.py", "model_kwargs.json", "model_script.py", "serving_runtime"]
    ort_config, torch_config = read_config(ort_folder / "config.pbtxt"), read_config(torch_folder / "config.pbtxt")
    assert ort_config.backend == torch_config.backend == "python"
    assert ort_config.parameters["intra_op_thread_count"].string_value == "2"
    assert torch_config.parameters["model_class"].string_value == "RobertaClassifier"
    assert torch_config.parameters["torch_intra_op_threads"].string_value == "2"
    for config in (ort_config, torch_config):
        assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU
        assert config.HasField("dynamic_batching")
        assert config.dynamic_batching.max_queue_delay_microseconds == DEFAULT_MAX_QUEUE_DELAY_US
    before = (ort_folder / "config.pbtxt").read_text()
    with pytest.raises(UserError, match="already exists"):
        write_onnxruntime_python_model(tmp_path, "ort", tiny_roberta.fp32_onnx, tiny_roberta.io,
                                       CpuServing(max_batch_size=2))
    assert (ort_folder / "config.pbtxt").read_text() == before
    with pytest.raises(UserError, match="does not exist"):
        write_pytorch_baseline_model(tmp_path, "missing", TorchModule(tmp_path / "nope.py", "X"), tiny_roberta.io)
    assert not (tmp_path / "missing").exists()
