"""`trt-serve s3://...`: tritonserver reads the repository itself; trt-serve reads the models' config.pbtxt files
(into a temporary folder) for its own checks, the response-cache decision and the printed examples."""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.storage.location import S3Location, parse_repository


def repository_view(repo: str) -> Path:
    """A local folder with `<model>/config.pbtxt` of every model in `repo`: the folder itself when local, else a
    temporary copy of the remote configs (removed at exit); one line when the remote repository cannot be read."""
    from trt_converters.storage import s3 as s3_ops

    location = parse_repository(repo, what="REPO")
    if not isinstance(location, S3Location):
        return location
    s3 = s3_ops.client(location)
    s3_ops.check_access(s3, location)
    view = Path(tempfile.mkdtemp(prefix="trtc-serve-configs-"))
    atexit.register(shutil.rmtree, view, True)
    found = s3_ops.model_folders(s3, location)
    s3_ops.download(s3, location, [f"{name}/{s3_ops.CONFIG_FILE}" for name in sorted(found)], view)
    return view


def model_control_args(mode: str, poll_secs: int | None, models: tuple[str, ...]) -> list[str]:
    """tritonserver flags for --model-control-mode (none, poll, explicit; --model implies explicit)."""
    if models and mode == "poll":
        raise UserError("--model loads models explicitly; it cannot be combined with --model-control-mode poll")
    if poll_secs is not None and mode != "poll":
        raise UserError("--repository-poll-secs needs --model-control-mode poll")
    if mode == "poll":
        return ["--model-control-mode=poll", f"--repository-poll-secs={poll_secs if poll_secs is not None else 15}"]
    if models or mode == "explicit":
        return ["--model-control-mode=explicit", *(f"--load-model={m}" for m in models)]
    return []
