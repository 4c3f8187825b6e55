"""trt-convert --triton-repo s3://... against a real S3 server (SeaweedFS), and s3:// locations."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.models import model_flags
from trt_converters.errors import UserError
from trt_converters.storage.location import S3Location, parse_repository

CONVERT = ["--generate-onnx", "--generate-triton-config", "--triton-backend", "python_onnxruntime"]


@pytest.mark.parametrize("text, expected", [
    ("s3://models/prod", S3Location("models", "prod")),
    ("s3://127.0.0.1:9000/models/prod/cpu/", S3Location("models", "prod/cpu", "127.0.0.1:9000")),
    ("s3://models", S3Location("models")),
])
def test_s3_locations_read_as_triton_writes_them(text, expected):
    assert parse_repository(text) == expected
    assert str(expected) == text.rstrip("/")


@pytest.mark.parametrize("text, message", [
    ("gs://bucket/models", "the gs:// scheme is not supported"),
    ("http://host/models", "the http:// scheme is not supported"),
    ("s3://Bad_Bucket/x", "is not an S3 bucket name"),
    ("s3://127.0.0.1:9000/", "no bucket"),
    ("s3://models/../x", "'..' are not allowed"),
])
def test_bad_locations_are_refused(text, message):
    with pytest.raises(UserError, match=message):
        parse_repository(text)


def test_triton_gets_the_endpoint_of_aws_endpoint_url(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://10.0.0.5:8333")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    assert parse_repository("s3://models/prod").for_triton() == "s3://10.0.0.5:8333/models/prod"
    assert parse_repository("s3://1.2.3.4:9000/models").for_triton() == "s3://1.2.3.4:9000/models"


@pytest.mark.parametrize("url", ["gs://bucket/models", "az://container/models", "http://host/models"])
def test_unsupported_scheme_fails_up_front_and_creates_no_folder(url, run_cli, tiny_checkpoints, tmp_path,
                                                                  monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_cli([*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", url,
                      "--output-dir", tmp_path / "out"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --triton-repo {url}: the {url.split(':')[0]}:// scheme is not supported; give a local folder or "
        "s3://[HOST:PORT/]BUCKET/PREFIX"]
    assert sorted(os.listdir(tmp_path)) == []


def _objects(server, bucket: str) -> dict[str, bytes]:
    s3 = server.client()
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
            for o in page.get("Contents", [])]
    return {key: s3.get_object(Bucket=bucket, Key=key)["Body"].read() for key in keys}


@pytest.mark.s3
def test_convert_into_s3_writes_what_a_local_repository_gets(run_cli, tiny_checkpoints, tmp_path, s3_env, bucket,
                                                              monkeypatch):
    import trt_converters.storage.s3 as s3_ops

    uploads = []
    original = s3_ops.upload_file
    monkeypatch.setattr(s3_ops, "upload_file", lambda s3, loc, path, key: (uploads.append(key),
                                                                             original(s3, loc, path, key)))
    monkeypatch.chdir(tmp_path)
    url = f"s3://{s3_env.endpoint}/{bucket}/prod"
    remote = run_cli([*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", url,
                      "--output-dir", tmp_path / "out"])
    assert remote.exit_code == 0, remote.stderr
    assert f"wrote {url}/mlp" in remote.stdout
    local = run_cli([*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", tmp_path / "repo",
                     "--output-dir", tmp_path / "out_local"])
    assert local.exit_code == 0, local.stderr
    expected = {p.relative_to(tmp_path / "repo").as_posix(): p.read_bytes()
                for p in (tmp_path / "repo").rglob("*") if p.is_file()}
    stored = {key.removeprefix("prod/"): data for key, data in _objects(s3_env, bucket).items()}
    assert stored == expected  # same files, same bytes (a tiny graph exports deterministically)
    model_keys = [k for k in uploads if k.startswith("mlp/")]
    assert model_keys[-1] == "mlp/config.pbtxt" and model_keys.count("mlp/config.pbtxt") == 1
    assert sorted(os.listdir(tmp_path)) == ["out", "out_local", "repo"]  # no folder named after the URL
    import json
    report = json.loads((tmp_path / "out" / "mlp" / "report.json").read_text())
    assert report["stages"]["triton"]["repository"] == url


@pytest.mark.s3
def test_overwrite_and_versions_in_s3(run_cli, tiny_checkpoints, tmp_path, s3_env, bucket):
    url = f"s3://{s3_env.endpoint}/{bucket}/models"
    flags = [*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", url, "--output-dir", tmp_path / "out",
             "--overwrite"]
    assert run_cli(flags).exit_code == 0
    s3_env.client().put_object(Bucket=bucket, Key="models/mlp/1/stale.bin", Body=b"old")
    before = _objects(s3_env, bucket)

    again = run_cli([f for f in flags if f != "--overwrite"])
    assert again.exit_code == 2
    assert again.stderr.strip() == f"error: {url}/mlp already exists; pass --overwrite to replace it"
    assert _objects(s3_env, bucket) == before

    assert run_cli(flags).exit_code == 0
    assert "models/mlp/1/stale.bin" not in _objects(s3_env, bucket)  # --overwrite replaces the model folder

    version_flags = [*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", url, "--output-dir",
                     tmp_path / "out_v2", "--model-version", "2", "--version-policy", "all"]
    assert run_cli(version_flags).exit_code == 0
    stored = _objects(s3_env, bucket)
    assert stored["models/mlp/1/model.onnx"] == stored["models/mlp/2/model.onnx"]
    assert b"version_policy" in stored["models/mlp/config.pbtxt"] and b"all" in stored["models/mlp/config.pbtxt"]
    repeated = run_cli(version_flags)
    assert repeated.exit_code == 2
    assert repeated.stderr.strip() == (f"error: {url}/mlp/2 already exists; pass --overwrite to replace it, or "
                                       "publish another --model-version")


@pytest.mark.s3
def test_aws_endpoint_url_is_honoured(run_cli, tiny_checkpoints, tmp_path, s3_env, bucket, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{s3_env.endpoint}")
    result = run_cli([*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", f"s3://{bucket}/env",
                      "--output-dir", tmp_path / "out"])
    assert result.exit_code == 0, result.stderr
    assert "env/mlp/config.pbtxt" in _objects(s3_env, bucket)


@pytest.mark.s3
def test_missing_bucket_fails_before_any_work(run_cli, tiny_checkpoints, tmp_path, s3_env):
    url = f"s3://{s3_env.endpoint}/no-such-bucket-here/prod"
    result = run_cli([*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", url,
                      "--output-dir", tmp_path / "out"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {url}: bucket 'no-such-bucket-here' does not exist; create it first"
    assert not (tmp_path / "out").exists()


def test_local_model_version_keeps_the_other_versions(run_cli, tiny_checkpoints, tmp_path):
    repo = tmp_path / "repo"
    flags = [*model_flags("mlp", tiny_checkpoints), *CONVERT, "--triton-repo", repo, "--output-dir", tmp_path / "o"]
    assert run_cli(flags).exit_code == 0
    first = (repo / "mlp" / "1" / "model.onnx").read_bytes()
    result = run_cli([*flags, "--model-version", "3", "--output-dir", tmp_path / "o3"])
    assert result.exit_code == 0, result.stderr
    assert sorted(p.name for p in (repo / "mlp").iterdir() if p.is_dir()) == ["1", "3"]
    assert (repo / "mlp" / "1" / "model.onnx").read_bytes() == first
    repeated = run_cli([*flags, "--model-version", "3", "--output-dir", tmp_path / "o4"])
    assert repeated.exit_code == 2
    assert repeated.stderr.strip() == f"error: {repo}/mlp/3 already exists; pass --overwrite to replace it"


@pytest.mark.parametrize("mode, secs, models, expected", [
    ("none", None, (), []),
    ("poll", None, (), ["--model-control-mode=poll", "--repository-poll-secs=15"]),
    ("poll", 2, (), ["--model-control-mode=poll", "--repository-poll-secs=2"]),
    ("none", None, ("a",), ["--model-control-mode=explicit", "--load-model=a"]),
])
def test_model_control_flags(mode, secs, models, expected):
    from trt_converters.storage.serving import model_control_args

    assert model_control_args(mode, secs, models) == expected


@pytest.mark.parametrize("mode, secs, models, message", [
    ("poll", None, ("a",), "cannot be combined with --model-control-mode poll"),
    ("none", 5, (), "--repository-poll-secs needs --model-control-mode poll"),
])
def test_model_control_flags_that_contradict(mode, secs, models, message):
    from trt_converters.storage.serving import model_control_args

    with pytest.raises(UserError, match=message):
        model_control_args(mode, secs, models)


def test_an_s3_repository_in_a_config_file_stays_a_url(tmp_path):
    from trt_converters.config_file import read_config_file
    from trt_converters.options import build_options

    config = tmp_path / "family.yaml"
    config.write_text("triton_repo: s3://models/prod\nmodel_name: mlp\n")
    values = read_config_file(config)
    assert values["triton_repo"] == "s3://models/prod"  # not resolved against the file's folder
    options = build_options(values, {}, read_checkpoint=False)
    assert (options.triton_repo, options.triton_repo_uri) == (None, "s3://models/prod")
    with pytest.raises(UserError, match="the gs:// scheme is not supported"):
        build_options(values, {"triton_repo": "gs://models/prod"}, read_checkpoint=False)
