"""Kubernetes objects (as plain dicts, written as YAML) that serve one model repository with Triton.

- `kserve_manifests`: a KServe InferenceService (serving.kserve.io/v1beta1) with a Triton predictor that reads
  the repository from `storageUri`, and the ServiceAccount that hands the storage initializer the S3 Secret.
- `kubernetes_manifests`: a Deployment of NVIDIA's tritonserver image reading the repository itself
  (`--model-repository=s3://...`, polled for new versions), a Service and a HorizontalPodAutoscaler.
"""

from __future__ import annotations

import dataclasses
import re

from trt_converters.deploy.repository import RepositoryFacts
from trt_converters.errors import UserError

IMAGE = "nvcr.io/nvidia/tritonserver"
# The release of the server every repository is loaded with in this project's tests (the nvidia-pytriton wheel's
# tritonserver 2.51 = NGC 24.10); used for repositories without TensorRT engines.
TESTED_RELEASE = "24.10"
PORTS = (("http", 8000), ("grpc", 8001), ("metrics", 8002))
_RELEASE = re.compile(r"^\d{2}\.\d{2}$")
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,40}[a-z0-9])?$")


@dataclasses.dataclass(frozen=True)
class DeploySettings:
    name: str
    namespace: str | None = None
    triton_release: str | None = None  # YY.MM of the tritonserver image; None: TESTED_RELEASE (no engines only)
    image: str | None = None  # a tritonserver image with the repository's requirements installed
    secret: str | None = None  # the Secret with AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; None: <name>-s3
    min_replicas: int = 1
    max_replicas: int = 4
    scale_target: int = 8  # KServe: concurrent requests per replica; Kubernetes: average CPU utilization (%)
    gpus: int | None = None  # GPUs per replica; None: 1 when the repository needs a GPU, else 0
    cpu: str = "2"
    memory: str = "8Gi"
    poll_seconds: int = 30  # Deployment: how often Triton polls the repository for new versions (0: never)

    def check(self) -> None:
        if not _NAME.match(self.name):
            raise UserError(f"--name {self.name!r}: use 1-42 lowercase letters, digits and '-' (a DNS label)")
        if self.triton_release is not None and not _RELEASE.match(self.triton_release):
            raise UserError(f"--triton-version {self.triton_release!r}: give the NGC release as YY.MM, e.g. 24.10")
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise UserError(f"--min-replicas {self.min_replicas} and --max-replicas {self.max_replicas}: need "
                            "1 <= min <= max")

    @property
    def secret_name(self) -> str:
        return self.secret or f"{self.name}-s3"


def release_for(facts: RepositoryFacts, settings: DeploySettings) -> str:
    """The tritonserver release: the one asked for, else the tested one; engines need it asked for, since a plan
    loads only in the release built with the TensorRT that made it."""
    if settings.triton_release:
        return settings.triton_release
    if facts.engines:
        raise UserError(f"{facts.location} holds TensorRT engines ({', '.join(facts.engines)}), which load only in "
                        "the Triton release built with the TensorRT that made them: pass --triton-version YY.MM "
                        "(the release whose TensorRT matches the report's 'built by')")
    return TESTED_RELEASE


def _gpus(facts: RepositoryFacts, settings: DeploySettings) -> int:
    return settings.gpus if settings.gpus is not None else (1 if facts.gpu_models else 0)


def _resources(facts: RepositoryFacts, settings: DeploySettings) -> dict:
    requests = {"cpu": settings.cpu, "memory": settings.memory}
    limits = {"memory": settings.memory}
    gpus = _gpus(facts, settings)
    if gpus:
        limits["nvidia.com/gpu"] = str(gpus)
    return {"requests": requests, "limits": limits}


def _gpu_scheduling(facts: RepositoryFacts, settings: DeploySettings) -> dict:
    if not _gpus(facts, settings):
        return {}
    return {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]}


def _metadata(settings: DeploySettings, name: str | None = None) -> dict:
    metadata = {"name": name or settings.name, "labels": {"app.kubernetes.io/name": settings.name,
                                                          "app.kubernetes.io/managed-by": "trt-deploy"}}
    if settings.namespace:
        metadata["namespace"] = settings.namespace
    return metadata


def kserve_manifests(facts: RepositoryFacts, settings: DeploySettings) -> list[dict]:
    """ServiceAccount + InferenceService. KServe's storage initializer takes the endpoint from the Secret's
    `serving.kserve.io/s3-endpoint` annotation, so storageUri is the plain s3://BUCKET/PREFIX."""
    settings.check()
    release = release_for(facts, settings)
    storage = f"s3://{facts.location.bucket}" + (f"/{facts.location.prefix}" if facts.location.prefix else "")
    triton = {"storageUri": storage, "runtimeVersion": f"{release}-py3", "protocolVersion": "v2",
              "resources": _resources(facts, settings)}
    if settings.image:
        triton["image"] = settings.image
    predictor = {"serviceAccountName": f"{settings.name}-storage", "minReplicas": settings.min_replicas,
                 "maxReplicas": settings.max_replicas, "scaleMetric": "concurrency",
                 "scaleTarget": settings.scale_target, **_gpu_scheduling(facts, settings), "triton": triton}
    account = {"apiVersion": "v1", "kind": "ServiceAccount",
               "metadata": _metadata(settings, f"{settings.name}-storage"),
               "secrets": [{"name": settings.secret_name}]}
    service = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": _metadata(settings),
               "spec": {"predictor": predictor}}
    return [account, service]


def _probe(path: str, period: int, failures: int) -> dict:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period, "failureThreshold": failures,
            "timeoutSeconds": 5}


def _container(facts: RepositoryFacts, settings: DeploySettings) -> dict:
    release = release_for(facts, settings)
    args = [f"--model-repository={facts.location}", "--exit-on-error=false", "--strict-readiness=true"]
    if settings.poll_seconds:
        args += ["--model-control-mode=poll", f"--repository-poll-secs={settings.poll_seconds}"]
    secret = settings.secret_name
    env = [{"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
           for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")]
    env.append({"name": "AWS_DEFAULT_REGION", "valueFrom": {"secretKeyRef": {"name": secret,
                                                                             "key": "AWS_DEFAULT_REGION",
                                                                             "optional": True}}})
    return {"name": "tritonserver", "image": settings.image or f"{IMAGE}:{release}-py3",
            "command": ["tritonserver"], "args": args, "env": env,
            "ports": [{"name": name, "containerPort": port} for name, port in PORTS],
            # a repository is read in full before the server is ready: the startup probe allows 10 minutes
            "startupProbe": _probe("/v2/health/live", 10, 60),
            "readinessProbe": _probe("/v2/health/ready", 5, 3),
            "livenessProbe": _probe("/v2/health/live", 10, 3),
            "resources": _resources(facts, settings)}


def kubernetes_manifests(facts: RepositoryFacts, settings: DeploySettings) -> list[dict]:
    """Deployment + Service + HorizontalPodAutoscaler (autoscaling/v2, average CPU utilization)."""
    settings.check()
    selector = {"app.kubernetes.io/name": settings.name}
    pod = {"metadata": {"labels": dict(selector)},
           "spec": {"containers": [_container(facts, settings)], **_gpu_scheduling(facts, settings)}}
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": _metadata(settings),
                  "spec": {"replicas": settings.min_replicas, "selector": {"matchLabels": selector},
                           "template": pod}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": _metadata(settings),
               "spec": {"selector": dict(selector), "ports": [{"name": name, "port": port, "targetPort": name}
                                                             for name, port in PORTS]}}
    autoscaler = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": _metadata(settings),
                  "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": settings.name},
                           "minReplicas": settings.min_replicas, "maxReplicas": settings.max_replicas,
                           "metrics": [{"type": "Resource", "resource": {
                               "name": "cpu", "target": {"type": "Utilization",
                                                         "averageUtilization": settings.scale_target}}}]}}
    return [deployment, service, autoscaler]


def render_yaml(documents: list[dict], header: str = "") -> str:
    import yaml

    body = "---\n".join(yaml.safe_dump(doc, sort_keys=False) for doc in documents)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    return comment + body
