"""`trt-convert --triton-repo s3://...`: the run writes a local staging repository exactly as it writes a local
one (staged, verified, moved into place), then uploads the models it wrote.

Checks that can fail come first: the bucket is reachable with these credentials, and no model (or, with
--model-version, no such version) exists there unless --overwrite is given. Per model, every file goes up before
its config.pbtxt, so a polling server never loads half a model; with --overwrite the remote objects the new
folder lacks are removed afterwards (only those of the published version with --model-version). The upload is
then checked object by object (size, and MD5 where the store gives one).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Callable

from trt_converters.errors import UserError
from trt_converters.storage import s3 as s3_ops
from trt_converters.storage.location import S3Location, parse_repository

# what the local requirements.txt of the run needs from models already in the remote repository
_REQUIREMENT_SOURCES = ("model.py", "model_script.py")


def written_models(options) -> list[str]:
    """The model folders a run writes: the core model first, then the pipeline's models."""
    names = [options.model_name]
    if options.pipeline:
        from trt_converters.pipelines import pipeline_model_names

        names += [n for n in pipeline_model_names(options.pipeline, options.resolved_pipeline_name()) if n not in names]
    return names


def check_remote_targets(location: S3Location, remote: dict[str, set[str]], options) -> None:
    """Existing remote models (or the published version) need --overwrite, as local ones do."""
    if options.overwrite:
        return
    version = options.model_version
    for name in written_models(options):
        if name not in remote:
            continue
        if version is not None and name == options.model_name:
            if str(version) in remote[name]:
                raise UserError(f"{location}/{name}/{version} already exists; pass --overwrite to replace it, or "
                                "publish another --model-version")
            continue
        raise UserError(f"{location}/{name} already exists; pass --overwrite to replace it")


def convert_to_remote(options, run_local: Callable) -> dict:
    """Runs the conversion into a local staging repository with `run_local` and uploads what it wrote."""
    location = parse_repository(options.triton_repo_uri)
    s3 = s3_ops.client(location)
    s3_ops.check_access(s3, location)
    remote = s3_ops.model_folders(s3, location)
    check_remote_targets(location, remote, options)
    names = written_models(options)
    mirror_root = Path(tempfile.mkdtemp(prefix="trtc-remote-"))
    try:
        mirror = mirror_root / "repository"
        mirror.mkdir()
        others = [key for key in s3_ops.list_objects(s3, location)
                  if key.count("/") == 2 and key.split("/")[0] not in names
                  and key.rsplit("/", 1)[1] in _REQUIREMENT_SOURCES]
        s3_ops.download(s3, location, others, mirror)
        report = run_local(options.model_copy(update={"triton_repo": mirror, "triton_repo_uri": None}))
        uploaded = _upload(s3, location, mirror, names, options.model_version)
        s3_ops.verify_upload(s3, location, mirror, uploaded)
        print(f"[publish] {len(uploaded)} object(s) uploaded to {location} and checked", flush=True)
        return _report_for_remote(report, mirror, location, options)
    finally:
        shutil.rmtree(mirror_root, ignore_errors=True)


def _upload(s3, location: S3Location, mirror: Path, names: list[str], version: int | None) -> list[str]:
    uploaded = []
    requirements = mirror / "requirements.txt"
    if requirements.is_file():
        s3_ops.upload_file(s3, location, requirements, requirements.name)
        uploaded.append(requirements.name)
    for name in names:  # the core model before the pipeline models that call it
        if (mirror / name).is_dir():
            replace_under = str(version) if version is not None and name == names[0] else ""
            uploaded += s3_ops.upload_model(s3, location, mirror / name, replace_under=replace_under)
    return uploaded


def _report_for_remote(report: dict, mirror: Path, location: S3Location, options) -> dict:
    """The report with the staging repository's paths replaced by the remote location, rewritten on disk."""
    from trt_converters.atomic import atomic_write_text
    from trt_converters.report import render_json

    text = json.dumps(report).replace(json.dumps(str(mirror))[1:-1], str(location))
    report = json.loads(text)
    report["written"] = [p for p in report.get("written", []) if not p.startswith(str(location))]
    report["written"] += sorted({f"{location}/{name}" for name in written_models(options)})
    report.setdefault("stages", {}).setdefault("triton", {})["repository"] = str(location)
    atomic_write_text(options.resolved_report_path(), render_json(report))
    return report
