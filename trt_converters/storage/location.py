"""Where a model repository lives: a local folder or an `s3://` location in Triton's own syntax.

Triton reads `s3://BUCKET/PREFIX` (the endpoint from the AWS environment) and `s3://HOST:PORT/BUCKET/PREFIX`
(an S3-compatible server, reached over HTTP). Other schemes are refused, so a URL is never taken for a local
path (`Path("gs://b/p")` would be the relative folder `gs:/b/p`).
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path
from urllib.parse import urlparse

from trt_converters.errors import UserError

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")
_ENDPOINT = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclasses.dataclass(frozen=True)
class S3Location:
    """`s3://[HOST:PORT/]BUCKET[/PREFIX]`: `endpoint` is "HOST:PORT" or None (the AWS environment's)."""

    bucket: str
    prefix: str = ""
    endpoint: str | None = None

    def __str__(self) -> str:
        parts = [self.endpoint, self.bucket, self.prefix]
        return "s3://" + "/".join(p for p in parts if p)

    def key(self, *parts: str) -> str:
        """The object key of `parts` (joined with '/') under the prefix."""
        return "/".join(p.strip("/") for p in (self.prefix, *parts) if p and p.strip("/"))

    def folder_key(self, *parts: str) -> str:
        """The key prefix of a folder under the location, ending in '/' (the bucket's root: '')."""
        key = self.key(*parts)
        return f"{key}/" if key else ""

    def endpoint_url(self) -> str | None:
        """The endpoint for an S3 client: the location's own (HTTP, as Triton reaches it), else None so the
        client reads AWS_ENDPOINT_URL / AWS_ENDPOINT_URL_S3 and the AWS config."""
        return f"http://{self.endpoint}" if self.endpoint else None

    def for_triton(self) -> str:
        """The location as tritonserver reads it: an endpoint from AWS_ENDPOINT_URL(_S3) is written into the
        URL, since the server's S3 client takes a custom endpoint only from the URL."""
        if self.endpoint:
            return str(self)
        url = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if not url:
            return str(self)
        parsed = urlparse(url)
        if not parsed.hostname:
            raise UserError(f"AWS_ENDPOINT_URL {url!r} is not a URL such as http://HOST:PORT")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        return str(dataclasses.replace(self, endpoint=f"{parsed.hostname}:{port}"))


def is_url(text) -> bool:
    """Whether `text` is written as a URL (`scheme://...`), whatever the scheme."""
    return isinstance(text, (str, S3Location)) and bool(_SCHEME.match(str(text)))


def parse_repository(text, *, what: str = "--triton-repo") -> Path | S3Location:
    """A local folder, or the S3Location of an `s3://` URL; any other scheme is a usage error."""
    if isinstance(text, (Path, S3Location)):
        return text
    text = str(text)
    match = _SCHEME.match(text)
    if not match:
        return Path(text)
    scheme = match.group(1).lower()
    if scheme != "s3":
        raise UserError(f"{what} {text}: the {scheme}:// scheme is not supported; give a local folder or "
                        "s3://[HOST:PORT/]BUCKET/PREFIX")
    if not text.startswith(("s3://", "S3://")):
        raise UserError(f"{what} {text}: write an S3 location as s3://[HOST:PORT/]BUCKET/PREFIX")
    parts = [p for p in text[len("s3://"):].split("/") if p]
    endpoint = parts.pop(0) if parts and _ENDPOINT.match(parts[0]) else None
    if not parts:
        raise UserError(f"{what} {text}: no bucket; write s3://[HOST:PORT/]BUCKET/PREFIX")
    bucket, prefix = parts[0], "/".join(parts[1:])
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UserError(f"{what} {text}: {bucket!r} is not an S3 bucket name (3-63 lowercase letters, digits, "
                        "dots and hyphens)")
    if any(p in (".", "..") for p in parts[1:]):
        raise UserError(f"{what} {text}: '.' and '..' are not allowed in an S3 prefix")
    return S3Location(bucket=bucket, prefix=prefix, endpoint=endpoint)


def remote_repository_options(data):
    """Conversion options with an s3:// `triton_repo` moved to `triton_repo_uri` (a URL is never a local path)."""
    if isinstance(data, dict) and is_url(data.get("triton_repo")):
        data = {**data, "triton_repo": None, "triton_repo_uri": str(parse_repository(data["triton_repo"]))}
    return data


def server_repository(repo) -> str:
    """`--model-repository` for tritonserver: a folder's absolute path, or an s3:// URL as the server reads it."""
    location = parse_repository(repo, what="model repository")
    return location.for_triton() if isinstance(location, S3Location) else str(Path(location).resolve())
