"""Real tritonserver (from nvidia-pytriton) serving the generic python-backend ONNX Runtime model."""

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.triton

ROOT = Path(__file__).resolve().parents[2]
ORT_PYTHON_MODEL = ROOT / "triton_models" / "onnxruntime_python" / "model.py"
MODEL = "mlp_ort"
RAGGED = "ragged_ort"
BATCHED = "mlp_ort_batched"
# Models whose batching a test checks wait this long for their preferred batch size, which the test's requests
# add up to exactly: they run as one execute() call however slow the machine is.
BATCH_WAIT_US = 120_000_000
CONCURRENT_BATCHES = [1, 2, 3, 1]
RAGGED_BATCHES = [1, 2, 2, 1]
PROBE = "import_probe"
# A served model that reports what importing trt_converters does inside the python-backend stub.
PROBE_MODEL = b"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        try:
            import trt_converters
            outcome = "imported " + str(trt_converters.__file__)
        except ImportError as exc:
            outcome = type(exc).__name__ + ": " + str(exc)
        out = pb_utils.Tensor("outcome", np.array([outcome.encode()], dtype=np.object_))
        return [pb_utils.InferenceResponse(output_tensors=[out]) for _ in requests]
"""


def _tiny_onnx(path: Path) -> None:
    """x[N,4], scale[N,1] -> y = relu(x W1 + b1) W2 * scale  [N,3],  s = sum(y, 1)  [N,1]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((4, 8)).astype(np.float32), "W1"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b1"),
        numpy_helper.from_array(rng.standard_normal((8, 3)).astype(np.float32), "W2"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
    ]
    nodes = [
        helper.make_node("MatMul", ["x", "W1"], ["h0"]),
        helper.make_node("Add", ["h0", "b1"], ["h1"]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("MatMul", ["h2", "W2"], ["y0"]),
        helper.make_node("Mul", ["y0", "scale"], ["y"]),
        helper.make_node("ReduceSum", ["y", "axis1"], ["s"], keepdims=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4]),
         helper.make_tensor_value_info("scale", TensorProto.FLOAT, ["N", 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3]),
         helper.make_tensor_value_info("s", TensorProto.FLOAT, ["N", 1])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _ragged_onnx(path: Path) -> None:
    """x[N,L] -> y = 2x + bias [N,L]; `bias` is a graph input with a default, left out of the config."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["x2"]), helper.make_node("Add", ["x2", "bias"], ["y"])],
        "ragged",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", "L"]),
         helper.make_tensor_value_info("bias", TensorProto.FLOAT, [])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", "L"])],
        initializer=[numpy_helper.from_array(np.array(2, np.float32), "two"),
                     numpy_helper.from_array(np.array(0.5, np.float32), "bias")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))


def _ragged_config():
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=RAGGED, backend="python", max_batch_size=8)
    # ragged: the batcher hands requests of different lengths to one execute() call
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[-1], allow_ragged_batch=True)
    config.output.add(name="y", data_type=mc.TYPE_FP32, dims=[-1])
    config.dynamic_batching.max_queue_delay_microseconds = BATCH_WAIT_US
    config.dynamic_batching.preferred_batch_size.append(sum(RAGGED_BATCHES))
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    return config


def _ort_python_config(name=MODEL, preferred_batch_size=None):
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=name, backend="python", max_batch_size=8)
    config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[4])
    # optional so that a request without it reaches the model, which must answer with an error
    config.input.add(name="scale", data_type=mc.TYPE_FP32, dims=[1], optional=True)
    config.output.add(name="y", data_type=mc.TYPE_FP32, dims=[3])
    config.output.add(name="s", data_type=mc.TYPE_FP32, dims=[1])
    config.dynamic_batching.max_queue_delay_microseconds = 100_000
    if preferred_batch_size is not None:
        config.dynamic_batching.max_queue_delay_microseconds = BATCH_WAIT_US
        config.dynamic_batching.preferred_batch_size.append(preferred_batch_size)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters["intra_op_thread_count"].string_value = "1"
    config.parameters["inter_op_thread_count"].string_value = "1"
    return config


def _write_model(repo: Path, config, files: dict) -> Path:
    from google.protobuf import text_format

    from trt_converters.serving_runtime import copy_runtime

    model_dir = repo / config.name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    copy_runtime(model_dir / "1")
    (model_dir / "config.pbtxt").write_text(text_format.MessageToString(config))
    for name, content in files.items():
        target = model_dir / "1" / name
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            shutil.copy(content, target)
    return model_dir


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    _tiny_onnx(path)
    return path


@pytest.fixture(scope="module")
def ort_repo(tmp_path_factory, onnx_path):
    repo = tmp_path_factory.mktemp("repo")
    _write_model(repo, _ort_python_config(), {"model.py": ORT_PYTHON_MODEL, "model.onnx": onnx_path})
    _write_model(repo, _ort_python_config(BATCHED, sum(CONCURRENT_BATCHES)),
                 {"model.py": ORT_PYTHON_MODEL, "model.onnx": onnx_path})
    ragged = tmp_path_factory.mktemp("ragged") / "model.onnx"
    _ragged_onnx(ragged)
    _write_model(repo, _ragged_config(), {"model.py": ORT_PYTHON_MODEL, "model.onnx": ragged})
    _write_model(repo, _probe_config(), {"model.py": PROBE_MODEL})
    return repo


def _probe_config():
    from tritonclient.grpc import model_config_pb2 as mc

    config = mc.ModelConfig(name=PROBE, backend="python", max_batch_size=0)
    config.input.add(name="x", data_type=mc.TYPE_STRING, dims=[1])
    config.output.add(name="outcome", data_type=mc.TYPE_STRING, dims=[1])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    return config


@pytest.fixture(scope="module")
def server(require_tritonserver, ort_repo, tmp_path_factory):
    from trt_converters.triton.server import LocalTritonServer

    log = tmp_path_factory.mktemp("log") / "server.log"
    with LocalTritonServer(ort_repo, log_path=log, startup_timeout=120) as srv:
        yield srv


def _reference(onnx_path, x, scale):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(["y", "s"], {"x": x, "scale": scale})


def _inputs(batch, seed):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 4)).astype(np.float32), rng.uniform(0.5, 2, (batch, 1)).astype(np.float32)


def _http_inputs(x, scale=None):
    import tritonclient.http as httpclient

    inputs = [httpclient.InferInput("x", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    if scale is not None:
        inputs.append(httpclient.InferInput("scale", list(scale.shape), "FP32"))
        inputs[1].set_data_from_numpy(scale)
    return inputs


def test_find_tritonserver(require_tritonserver):
    from trt_converters.triton.distribution import find_tritonserver

    binary = find_tritonserver()
    assert binary.name == "tritonserver" and os.access(binary, os.X_OK)


def test_served_models_cannot_import_trt_converters(server):
    """The local server serves like a stock Triton: this package is not importable by python models."""
    from tests.helpers.triton import triton_infer

    import trt_converters

    assert trt_converters.__file__  # importable here, in the test process
    outcome = triton_infer("http", server.http_url, PROBE, {"x": np.array([b"?"], dtype=np.object_)}, "outcome")
    assert outcome[0].decode().startswith("ModuleNotFoundError: trt_converters is hidden from served models")


def test_http_infer_matches_onnxruntime(server, onnx_path):
    import tritonclient.http as httpclient

    assert server.model_ready(MODEL)
    assert not server.model_ready("no_such_model")
    x, scale = _inputs(3, seed=1)
    client = httpclient.InferenceServerClient(url=server.http_url)
    try:
        result = client.infer(MODEL, _http_inputs(x, scale))
    finally:
        client.close()
    y_ref, s_ref = _reference(onnx_path, x, scale)
    assert result.as_numpy("y").shape == (3, 3)
    np.testing.assert_allclose(result.as_numpy("y"), y_ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.as_numpy("s"), s_ref, rtol=1e-5, atol=1e-6)


def test_grpc_infer_matches_onnxruntime(server, onnx_path):
    import tritonclient.grpc as grpcclient

    x, scale = _inputs(2, seed=2)
    inputs = [grpcclient.InferInput("x", [2, 4], "FP32"), grpcclient.InferInput("scale", [2, 1], "FP32")]
    inputs[0].set_data_from_numpy(x)
    inputs[1].set_data_from_numpy(scale)
    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        assert client.is_model_ready(MODEL)
        result = client.infer(MODEL, inputs, outputs=[grpcclient.InferRequestedOutput("y")])
    finally:
        client.close()
    y_ref, _ = _reference(onnx_path, x, scale)
    np.testing.assert_allclose(result.as_numpy("y"), y_ref, rtol=1e-5, atol=1e-6)
    assert result.as_numpy("s") is None


def _statistics_after(client, model: str, requests: int) -> dict:
    """The model's statistics once they count `requests` finished requests and an execution.

    The server updates them after answering, so a read right after the last answer can still show the old
    counts; waiting for them is bounded generously (the machine may be loaded), and the test never times work.
    """
    deadline = time.monotonic() + 120
    while True:
        stats = client.get_inference_statistics(model)["model_stats"][0]
        done = sum(int(stats["inference_stats"][k].get("count", 0)) for k in ("success", "fail"))
        if (done >= requests and stats.get("execution_count", 0) >= 1) or time.monotonic() > deadline:
            return stats
        time.sleep(0.2)


def test_concurrent_requests_are_batched_and_split_back(server, onnx_path):
    """Requests of different batch sizes answered correctly from one execute() call; a bad request meanwhile
    (without the optional input, so the batcher keeps it apart) gets an error, nothing else."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url=server.http_url, concurrency=len(CONCURRENT_BATCHES) + 1)
    try:
        payloads = [_inputs(b, seed=10 + i) for i, b in enumerate(CONCURRENT_BATCHES)]
        pending = [client.async_infer(BATCHED, _http_inputs(x, s)) for x, s in payloads]
        bad = client.async_infer(MODEL, _http_inputs(_inputs(1, seed=99)[0]))  # no "scale"
        results = [p.get_result() for p in pending]
        with pytest.raises(Exception, match="required by the ONNX graph"):
            bad.get_result()
        stats = _statistics_after(client, BATCHED, len(payloads))
    finally:
        client.close()
    for (x, scale), result in zip(payloads, results):
        y_ref, s_ref = _reference(onnx_path, x, scale)
        np.testing.assert_allclose(result.as_numpy("y"), y_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(result.as_numpy("s"), s_ref, rtol=1e-5, atol=1e-6)
    # the batcher waited for the preferred size, which the four requests fill exactly: one call served them all
    assert stats["execution_count"] == 1 and stats["inference_count"] == sum(CONCURRENT_BATCHES), stats


def test_requests_of_different_lengths_run_in_separate_groups(server):
    import tritonclient.http as httpclient

    rng = np.random.default_rng(3)
    shapes = [(batch, length) for batch, length in zip(RAGGED_BATCHES, [3, 5, 3, 5])]
    payloads = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    client = httpclient.InferenceServerClient(url=server.http_url, concurrency=len(payloads))
    try:
        pending = [client.async_infer(RAGGED, _http_inputs(x)) for x in payloads]
        results = [p.get_result().as_numpy("y") for p in pending]
        stats = _statistics_after(client, RAGGED, len(payloads))
    finally:
        client.close()
    for x, y in zip(payloads, results):
        assert y.shape == x.shape
        np.testing.assert_allclose(y, 2 * x + 0.5, rtol=1e-6)
    # one execute() call held all four (the batcher waits for their summed batch size): the lengths 3 and 5
    # ran as separate groups inside it, and each request got its own answer
    assert stats["execution_count"] == 1 and stats["inference_count"] == sum(RAGGED_BATCHES), stats


def test_server_keeps_serving_after_bad_request(server, onnx_path):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url=server.grpc_url)
    try:
        x = _inputs(1, seed=5)[0]
        only_x = grpcclient.InferInput("x", [1, 4], "FP32")
        only_x.set_data_from_numpy(x)
        with pytest.raises(Exception, match="scale"):
            client.infer(MODEL, [only_x])
        assert client.is_server_live() and client.is_model_ready(MODEL)
    finally:
        client.close()


def test_stop_ends_server_and_stub_processes(require_tritonserver, ort_repo):
    from trt_converters.triton.server import LocalTritonServer

    with LocalTritonServer(ort_repo) as srv:
        pid = srv.pid
        assert srv.model_ready(MODEL)
        assert srv.startup_seconds is not None and srv.startup_seconds > 0
        children = _children(pid)
        assert children, "the python backend should run a stub process for the model"
    assert srv.pid == pid and not srv.is_running()
    for gone in [pid, *children]:
        with pytest.raises(ProcessLookupError):
            os.kill(gone, 0)


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def test_missing_repository_is_a_user_error(require_tritonserver, tmp_path):
    from trt_converters.errors import UserError
    from trt_converters.triton.server import LocalTritonServer

    with pytest.raises(UserError, match="not a directory"):
        LocalTritonServer(tmp_path / "nope", startup_timeout=20).start()


def test_failed_start_reports_server_log(require_tritonserver, tmp_path):
    from trt_converters.triton.server import LocalTritonServer, TritonServerError

    (tmp_path / "broken" / "1").mkdir(parents=True)
    (tmp_path / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\ninput [ {')
    server = LocalTritonServer(tmp_path, startup_timeout=60)
    with pytest.raises(TritonServerError, match="exited with status") as info:
        server.start()
    assert "failed to read text proto" in str(info.value)
    assert not server.is_running()


def test_check_repository_separates_missing_backends_from_config_errors(require_tritonserver, tmp_path, onnx_path):
    from tritonclient.grpc import model_config_pb2 as mc

    from trt_converters.triton.server import check_repository

    def plan_config(name, preferred):
        config = mc.ModelConfig(name=name, platform="tensorrt_plan", backend="tensorrt", max_batch_size=8)
        config.input.add(name="x", data_type=mc.TYPE_FP32, dims=[4])
        config.output.add(name="y", data_type=mc.TYPE_FP32, dims=[3])
        config.dynamic_batching.preferred_batch_size.extend(preferred)
        return config

    _write_model(tmp_path, plan_config("engine", [4, 8]), {"model.plan": b"not an engine"})
    _write_model(tmp_path, plan_config("too_big", [4, 16]), {"model.plan": b"not an engine"})
    _write_model(tmp_path, _ort_python_config(), {"model.py": ORT_PYTHON_MODEL, "model.onnx": onnx_path})
    (tmp_path / "syntax" / "1").mkdir(parents=True)
    (tmp_path / "syntax" / "config.pbtxt").write_text('name: "syntax"\nmax_batch_size: 8\ninput [ { name: "x" ')

    status = check_repository(tmp_path)

    assert set(status) == {"engine", "too_big", MODEL, "syntax"}
    assert status[MODEL] == "READY"
    assert status["engine"].startswith("UNAVAILABLE:")
    assert "unable to find backend library for backend 'tensorrt'" in status["engine"]
    assert status["too_big"].startswith("CONFIG_ERROR:")
    assert "preferred size must be <= max batch size" in status["too_big"]
    assert status["syntax"].startswith("CONFIG_ERROR:")
    assert "Error parsing text-format" in status["syntax"]
