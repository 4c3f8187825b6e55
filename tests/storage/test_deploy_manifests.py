"""trt-deploy kserve|kubernetes on s3:// repositories (SeaweedFS), manifests validated against the Kubernetes API
schemas (tests/storage/manifest_schemas.py)."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.helpers.models import model_flags
from tests.storage.manifest_schemas import manifest_errors

CONVERT = ["--generate-onnx", "--generate-triton-config", "--triton-backend", "python_onnxruntime"]
PLAN_CONFIG = b'name: "engine"\nplatform: "tensorrt_plan"\nmax_batch_size: 8\n' \
              b'input { name: "x" data_type: TYPE_FP32 dims: [4] }\noutput { name: "y" data_type: TYPE_FP32 dims: [4] }\n'

pytestmark = pytest.mark.s3


def deploy(args):
    from click.testing import CliRunner

    from trt_converters.deploy_cli import main

    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def python_repo(run_cli, tiny_checkpoints, tmp_path, s3_env, bucket):
    uri = f"s3://{s3_env.endpoint}/{bucket}/prod"
    result = run_cli([*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", uri,
                      "--output-dir", tmp_path / "out"])
    assert result.exit_code == 0, result.stderr
    return uri


@pytest.fixture
def engine_repo(s3_env, bucket):
    s3_env.client().put_object(Bucket=bucket, Key="gpu/engine/config.pbtxt", Body=PLAN_CONFIG)
    s3_env.client().put_object(Bucket=bucket, Key="gpu/engine/1/model.plan", Body=b"plan bytes")
    return f"s3://{s3_env.endpoint}/{bucket}/gpu"


def _documents(text: str) -> dict:
    documents = [d for d in yaml.safe_load_all(text) if d]
    for document in documents:
        assert manifest_errors(document) == [], document["kind"]
    return {d["kind"]: d for d in documents}


def test_kubernetes_manifests_for_a_cpu_repository(python_repo, bucket):
    code, out, err = deploy(["kubernetes", "--repo", python_repo, "--name", "mlp", "--min-replicas", 2,
                             "--max-replicas", 6, "--namespace", "serving"])
    assert code == 0, err
    assert "warning: the repository's python models import" in err and "--image" in err
    kinds = _documents(out)
    assert sorted(kinds) == ["Deployment", "HorizontalPodAutoscaler", "Service"]
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "nvcr.io/nvidia/tritonserver:24.10-py3"
    assert f"--model-repository={python_repo}" in container["args"]
    assert "--model-control-mode=poll" in container["args"]
    assert [p["containerPort"] for p in container["ports"]] == [8000, 8001, 8002]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    secrets = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"]}
    assert secrets["AWS_ACCESS_KEY_ID"] == secrets["AWS_SECRET_ACCESS_KEY"] == "mlp-s3"
    assert "nvidia.com/gpu" not in container["resources"]["limits"] and "tolerations" not in pod
    assert [p["port"] for p in kinds["Service"]["spec"]["ports"]] == [8000, 8001, 8002]
    scaler = kinds["HorizontalPodAutoscaler"]["spec"]
    assert (scaler["minReplicas"], scaler["maxReplicas"], scaler["scaleTargetRef"]["name"]) == (2, 6, "mlp")
    assert all(d["metadata"]["namespace"] == "serving" for d in kinds.values())


def test_kserve_manifests_for_a_cpu_repository(python_repo, bucket, tmp_path):
    target = tmp_path / "isvc.yaml"
    code, _, err = deploy(["kserve", "--repo", python_repo, "--name", "mlp", "--output", target,
                           "--scale-target", 4, "--image", "registry.example/triton-mlp:24.10"])
    assert code == 0, err
    kinds = _documents(target.read_text())
    predictor = kinds["InferenceService"]["spec"]["predictor"]
    assert predictor["triton"]["storageUri"] == f"s3://{bucket}/prod"  # the endpoint comes from the Secret
    assert predictor["triton"]["runtimeVersion"] == "24.10-py3"
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 4)
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert "nvidia.com/gpu" not in predictor["triton"]["resources"]["limits"]
    assert kinds["ServiceAccount"]["secrets"] == [{"name": "mlp-s3"}]
    assert predictor["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
    again = deploy(["kserve", "--repo", python_repo, "--name", "mlp", "--output", target])
    assert again[0] == 2 and again[2].strip() == f"error: {target} already exists; pass --overwrite to replace it"


def test_engines_ask_for_the_triton_release_and_get_a_gpu(engine_repo):
    code, _, err = deploy(["kubernetes", "--repo", engine_repo, "--name", "engine"])
    assert code == 2 and "holds TensorRT engines (engine)" in err and "--triton-version" in err
    for kind in ("kubernetes", "kserve"):
        code, out, err = deploy([kind, "--repo", engine_repo, "--name", "engine", "--triton-version", "25.01"])
        assert code == 0, err
        kinds = _documents(out)
        if kind == "kubernetes":
            pod = kinds["Deployment"]["spec"]["template"]["spec"]
            resources, image = pod["containers"][0]["resources"], pod["containers"][0]["image"]
            assert image == "nvcr.io/nvidia/tritonserver:25.01-py3"
        else:
            pod = kinds["InferenceService"]["spec"]["predictor"]
            resources = pod["triton"]["resources"]
            assert pod["triton"]["runtimeVersion"] == "25.01-py3"
        assert resources["limits"]["nvidia.com/gpu"] == "1"
        assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_the_validation_catches_what_a_cluster_would_refuse(python_repo):
    kinds = _documents(deploy(["kubernetes", "--repo", python_repo, "--name", "mlp"])[1])
    isvc = _documents(deploy(["kserve", "--repo", python_repo, "--name", "mlp"])[1])["InferenceService"]
    broken = copy.deepcopy(kinds["Deployment"])
    broken["spec"]["replicaz"] = 2
    assert manifest_errors(broken) == [".spec.replicaz: unknown field of V1DeploymentSpec"]
    broken = copy.deepcopy(kinds["Deployment"])
    del broken["spec"]["template"]["spec"]["containers"][0]["name"]
    assert any("V1Container" in e and "name" in e for e in manifest_errors(broken))
    broken = copy.deepcopy(kinds["HorizontalPodAutoscaler"])
    broken["spec"]["minReplicas"] = "two"
    assert manifest_errors(broken)[0] == ".spec.minReplicas: 'two' is not int"
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["scaleMetric"] = "latency"
    assert any("'latency' is not one of" in e for e in manifest_errors(broken))
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["triton"]["storageURI"] = "s3://x"
    assert any("storageURI" in e for e in manifest_errors(broken))


def test_local_folders_and_bad_names_are_refused(tmp_path):
    code, _, err = deploy(["kubernetes", "--repo", tmp_path, "--name", "mlp"])
    assert code == 2 and "a cluster cannot read a local folder" in err
    code, _, err = deploy(["kserve", "--repo", "gs://bucket/models", "--name", "mlp"])
    assert code == 2 and "the gs:// scheme is not supported" in err
    code, _, err = deploy(["kserve", "--repo", "s3://bucket/models", "--name", "My_Model"])
    assert code == 2 and "a DNS label" in err
