"""The S3 side of a remote model repository, through boto3: access checks, listing, downloads, and the upload
of model folders in an order a polling server can follow (every model's `config.pbtxt` last).

Credentials and region come from the standard AWS environment variables and config files; the endpoint from
the location (`s3://HOST:PORT/...`) or else from AWS_ENDPOINT_URL(_S3), which botocore reads itself.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Iterable

from trt_converters.errors import StageError, UserError
from trt_converters.storage.location import S3Location

CONFIG_FILE = "config.pbtxt"
_INSTALL_HINT = "install it with `pip install boto3` (scripts/setup.sh installs the pinned version)"


class S3Error(StageError):
    """The object store refused or failed an operation (exit status 1)."""


def client(location: S3Location):
    """A boto3 S3 client for `location` (path-style addressing, which S3-compatible servers need)."""
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise UserError(f"{location} needs boto3, which is not installed: {_INSTALL_HINT}") from None
    config = Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5, "mode": "standard"},
                    connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("s3", endpoint_url=location.endpoint_url(), config=config)


def _reason(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    code, message = error.get("Code", ""), error.get("Message", "")
    return f"{code}: {message}".strip(": ") or f"{type(exc).__name__}: {exc}"


def check_access(s3, location: S3Location) -> None:
    """Fails with one line when the bucket cannot be reached, does not exist, or refuses these credentials."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        s3.head_bucket(Bucket=location.bucket)
    except NoCredentialsError:
        raise UserError(f"{location}: no AWS credentials; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                        "(or AWS_PROFILE)") from None
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            raise UserError(f"{location}: bucket {location.bucket!r} does not exist; create it first") from None
        if status in (401, 403):
            raise UserError(f"{location}: access to bucket {location.bucket!r} denied ({_reason(exc)}); check the "
                            "credentials") from None
        raise S3Error(f"{location}: {_reason(exc)}") from None
    except BotoCoreError as exc:
        raise S3Error(f"{location}: the object store cannot be reached ({exc})") from None


def list_objects(s3, location: S3Location, folder: str = "") -> dict[str, dict]:
    """Key (relative to the location) -> {"size", "etag"} for every object under `folder`."""
    base = location.folder_key()
    prefix = location.folder_key(folder) if folder else base
    found = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=location.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            found[item["Key"][len(base):]] = {"size": item["Size"], "etag": item.get("ETag", "").strip('"')}
    return found


def model_folders(s3, location: S3Location) -> dict[str, set[str]]:
    """Each model of the remote repository (a folder holding config.pbtxt) -> its version folders."""
    return models_in(list_objects(s3, location))


def models_in(objects: dict[str, dict]) -> dict[str, set[str]]:
    """`model_folders` of a listing already made (list_objects)."""
    models = {key.split("/")[0] for key in objects if key.count("/") == 1 and key.endswith(f"/{CONFIG_FILE}")}
    versions: dict[str, set[str]] = {name: set() for name in models}
    for key in objects:
        parts = key.split("/")
        if len(parts) > 2 and parts[0] in versions and parts[1].isdigit():
            versions[parts[0]].add(parts[1])
    return versions


def download(s3, location: S3Location, keys: Iterable[str], target: Path) -> list[Path]:
    """Downloads each key (relative to the location) to the same relative path under `target`."""
    written = []
    for key in keys:
        path = Path(target) / key
        path.parent.mkdir(parents=True, exist_ok=True)
        s3.download_file(location.bucket, location.key(key), str(path))
        written.append(path)
    return written


def upload_model(s3, location: S3Location, model_dir: Path, *, replace_under: str | None) -> list[str]:
    """Uploads one model folder as `<location>/<model>/...`, its config.pbtxt last, then removes the remote
    objects under `<model>/<replace_under>` (the whole model folder when "") that the new folder lacks.
    `replace_under=None` removes nothing. Returns the uploaded keys (relative to the location)."""
    model_dir = Path(model_dir)
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    files.sort(key=lambda p: p.relative_to(model_dir).as_posix() == CONFIG_FILE)  # stable: config.pbtxt last
    keys = [f"{model_dir.name}/{p.relative_to(model_dir).as_posix()}" for p in files]
    for path, key in zip(files, keys):
        upload_file(s3, location, path, key)
    if replace_under is not None:
        stale = set(list_objects(s3, location, f"{model_dir.name}/{replace_under}".rstrip("/"))) - set(keys)
        delete(s3, location, sorted(stale))
    return keys


def upload_file(s3, location: S3Location, path: Path, key: str) -> None:
    from boto3.s3.transfer import TransferConfig

    try:
        s3.upload_file(str(path), location.bucket, location.key(key),
                       Config=TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20))
    except Exception as exc:
        raise S3Error(f"uploading {path} to {location}/{key} failed: {_reason(exc)}") from None


def delete(s3, location: S3Location, keys: list[str]) -> None:
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        s3.delete_objects(Bucket=location.bucket,
                          Delete={"Objects": [{"Key": location.key(k)} for k in chunk], "Quiet": True})


def verify_upload(s3, location: S3Location, local_root: Path, keys: list[str]) -> None:
    """Every uploaded key exists with the local file's size and, for single-part uploads, its MD5 (the ETag)."""
    remote = list_objects(s3, location)
    for key in keys:
        path = Path(local_root) / key
        found = remote.get(key)
        if found is None:
            raise S3Error(f"{location}/{key} is missing after the upload")
        if found["size"] != path.stat().st_size:
            raise S3Error(f"{location}/{key} has {found['size']} bytes after the upload, {path.stat().st_size} "
                          "locally")
        etag = found["etag"]
        if etag and "-" not in etag and etag != _md5(path):
            raise S3Error(f"{location}/{key} differs from {path} after the upload (MD5)")


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
