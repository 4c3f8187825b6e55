"""What a deployment needs to know about a model repository: its models, whether any needs a GPU (TensorRT
engines, KIND_GPU instances) and whether its python models need pip packages (requirements.txt)."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.storage.location import S3Location, parse_repository


@dataclasses.dataclass(frozen=True)
class RepositoryFacts:
    location: S3Location
    models: tuple[str, ...]
    engines: tuple[str, ...]  # models served by TensorRT (tensorrt_plan)
    gpu_models: tuple[str, ...]  # models with a KIND_GPU instance group or an engine
    requirements: tuple[str, ...]  # the lines of requirements.txt (python models' packages)


def inspect_repository(uri: str) -> RepositoryFacts:
    """Reads the configs of an s3:// repository (a cluster cannot read a local folder)."""
    from trt_converters.storage import s3 as s3_ops
    from trt_converters.triton.config import read_config

    location = parse_repository(uri, what="--repo")
    if not isinstance(location, S3Location):
        raise UserError(f"--repo {uri}: a cluster cannot read a local folder; publish the repository with "
                        "trt-convert --triton-repo s3://BUCKET/PREFIX and pass that URI")
    s3 = s3_ops.client(location)
    s3_ops.check_access(s3, location)
    objects = s3_ops.list_objects(s3, location)
    models = sorted(s3_ops.models_in(objects))
    if not models:
        raise UserError(f"--repo {location} holds no model (no <model>/config.pbtxt under it)")
    with tempfile.TemporaryDirectory(prefix="trtc-deploy-") as folder:
        keys = [f"{m}/{s3_ops.CONFIG_FILE}" for m in models] + (["requirements.txt"] if "requirements.txt" in objects
                                                                 else [])
        s3_ops.download(s3, location, keys, Path(folder))
        configs = {m: read_config(Path(folder) / m / s3_ops.CONFIG_FILE) for m in models}
        requirements_file = Path(folder) / "requirements.txt"
        requirements = requirements_file.read_text().splitlines() if requirements_file.is_file() else []
    engines = tuple(m for m, c in configs.items() if c.platform == "tensorrt_plan" or c.backend == "tensorrt")
    gpu = tuple(m for m, c in configs.items()
                if m in engines or any(group.kind == group.KIND_GPU for group in c.instance_group))
    packages = tuple(line.strip() for line in requirements if line.strip() and not line.startswith("#"))
    return RepositoryFacts(location=location, models=tuple(models), engines=engines, gpu_models=gpu,
                           requirements=packages)
