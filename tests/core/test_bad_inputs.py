"""Bad input ends with one clear line, a non-zero exit status, and no file written or changed."""

from __future__ import annotations

import json

import pytest

from tests.conftest import MLP_IO, TEXT_IO, TINY_MODELS, model_flags, snapshot


def assert_one_error_line(result, expected: str, status: int = 2) -> None:
    """Exactly one `error:` line, last, naming the cause; no traceback."""
    assert result.exit_code == status, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == errors[0]
    assert "Traceback" not in result.stderr


def _io(**changes) -> str:
    spec = json.loads(json.dumps(TEXT_IO))
    for path, value in changes.items():
        target = spec
        *parents, last = path.split(".")
        for part in parents:
            target = target[int(part)] if part.isdigit() else target[part]
        target[int(last) if last.isdigit() else last] = value
    return json.dumps(spec)


def _text_args(tmp_path, checkpoints, **replace) -> list[str]:
    args = model_flags("text", checkpoints) + ["--triton-repo", str(tmp_path / "repo"),
                                                "--output-dir", str(tmp_path / "out"),
                                                "--generate-onnx", "--generate-triton-config",
                                                "--triton-backend", "python_onnxruntime"]
    for flag, value in replace.items():
        index = args.index(flag)
        args[index + 1] = value
    return args


BAD_IO_CASES = [
    ("unknown dtype", {"inputs.0.dtype": "int65"}, "inputs.0.dtype"),
    ("duplicate names", {"inputs.1.name": "input_ids"}, "repeated: input_ids"),
    ("min above opt", {"inputs.0.min_shape": [64], "inputs.0.opt_shape": [32], "inputs.0.max_shape": [128]},
     "min_shape <= opt_shape <= max_shape"),
    ("rank mismatch", {"inputs.0.max_shape": [8, 8]}, "has rank 2"),
    ("fixed dim contradicted", {"inputs.0.shape": [128], "inputs.0.max_shape": [64]}, "fixed to 128"),
    ("zero dim", {"inputs.0.shape": [0]}, "must be >= 1 or -1"),
    ("no outputs", {"outputs": []}, "needs at least one output"),
]


@pytest.mark.parametrize("case, changes, expected", BAD_IO_CASES, ids=[c[0] for c in BAD_IO_CASES])
def test_bad_io_config(tmp_path, run_cli, tiny_checkpoints, case, changes, expected):
    result = run_cli(_text_args(tmp_path, tiny_checkpoints, **{"--model-io-config": _io(**changes)}))
    assert_one_error_line(result, expected)
    assert result.stderr.count("\n") == 1, "the IO spec is validated before any work"
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()


@pytest.mark.parametrize("flags, expected", [
    (["--model-io-config", "{not json"], "is not valid JSON"),
    (["--model-io-config", "missing.yaml"], "neither a JSON object nor an existing file"),
    (["--preferred-batch-sizes", "1,4,16", "--max-batch-size", "8", "--dynamic-batching"],
     "--preferred-batch-sizes 16 is above --max-batch-size 8"),
    (["--ckpt-path", "nope.pt"], "--ckpt-path nope.pt does not exist"),
    (["--model-script-path", "nope.py"], "--model-script-path nope.py does not exist"),
    (["--model-class-name", "Missing"], "'Missing' is not a class in tiny_models.py; classes defined there:"),
    (["--model-class-name", "TinyMLP"], "checkpoint does not match the model"),
    (["--model-kwargs", '{"hidden": 8}'], "shape-mismatched"),
    (["--model-kwargs", "[1, 2]"], "--model-kwargs must be a JSON object"),
    (["--model-kwargs", '{"no_such_arg": 1}'], "unexpected keyword argument 'no_such_arg'"),
    (["--triton-inputs", "input_ids"], "--triton-inputs leaves out 'input_mask', which the exported graph needs"),
    (["--triton-inputs", "input_ids,input_mask,extra"], "'extra', which is not an input"),
    (["--memory-pool-limit", "lots"], "memory size 'lots' is not understood"),
    (["--input-size", "4", "0"], "--input-size sequence length must be >= 1"),
    (["--max-batch-size", "0"], "--max-batch-size: must be >= 1"),
    (["--pipeline", "no_such_pipeline"], "unknown pipeline 'no_such_pipeline'"),
    (["--pipeline-option", "novalue"], "must be KEY=VALUE"),
])
def test_bad_flag_values(tmp_path, run_cli, tiny_checkpoints, flags, expected):
    args = _text_args(tmp_path, tiny_checkpoints)
    for flag, value in zip(flags[::2], flags[1::2]) if len(flags) % 2 == 0 else []:
        if flag in args and not flag.startswith("--dynamic"):
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    if len(flags) % 2:
        args += flags
    assert_one_error_line(run_cli(args), expected)
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()


def test_checkpoint_that_is_not_weights_only_is_refused(tmp_path, run_cli, tiny_checkpoints):
    import argparse

    import torch

    bad = tmp_path / "pickled.pt"
    torch.save({"model": argparse.Namespace(lr=0.1)}, bad)  # an arbitrary object: unpickling it runs code
    result = run_cli(_text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(bad)}))
    assert result.exit_code == 2
    assert "cannot be loaded safely (weights_only=True)" in result.stderr


def test_missing_keys_report_names_them_and_no_strict_loads(tmp_path, run_cli, tiny_checkpoints):
    import torch

    state = torch.load(tiny_checkpoints["text"], weights_only=True)
    state.pop("module.classifier.bias")
    partial = tmp_path / "partial.pt"
    torch.save(state, partial)
    result = run_cli(_text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(partial)}))
    assert result.exit_code == 2
    assert "1 missing: classifier.bias" in result.stderr and "--no-strict" in result.stderr
    result = run_cli(_text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(partial)}) + ["--no-strict"])
    assert result.exit_code == 0, result.stderr


def test_existing_artifacts_are_not_overwritten(tmp_path, run_cli, tiny_checkpoints):
    args = _text_args(tmp_path, tiny_checkpoints)
    assert run_cli(args).exit_code == 0
    before = snapshot(tmp_path)
    result = run_cli(args)
    assert result.exit_code == 2
    assert "already exists; pass --overwrite to replace it" in result.stderr
    assert snapshot(tmp_path) == before
    result = run_cli(args + ["--overwrite", "--max-batch-size", "4"])
    assert result.exit_code == 0, result.stderr
    assert "max_batch_size: 4" in (tmp_path / "repo" / "text" / "config.pbtxt").read_text()


def test_failed_stage_leaves_files_as_they_were(tmp_path, run_cli, tiny_checkpoints):
    """A stage that fails after others succeeded (here: verification with an impossible budget) writes nothing."""
    args = _text_args(tmp_path, tiny_checkpoints)
    assert run_cli(args).exit_code == 0
    before = snapshot(tmp_path)
    # A budget nothing meets (exact equality); a budget outside its range (--min-cosine 1.5) is a usage error now.
    result = run_cli(args + ["--overwrite", "--atol", "0", "--rtol", "0", "--min-cosine", "1", "--exporter", "legacy"])
    assert result.exit_code == 1
    assert "does not match the reference: worst output 'output'" in result.stderr
    assert snapshot(tmp_path) == before


def test_missing_tensorrt_says_how_to_install(tmp_path, run_cli, tiny_checkpoints):
    pytest.importorskip("tensorrt_rtx")
    try:
        import tensorrt  # noqa: F401
        pytest.skip("the full tensorrt package is installed here")
    except ImportError:
        pass
    result = run_cli(_text_args(tmp_path, tiny_checkpoints) + ["--generate-trt", "--trt-backend", "tensorrt"])
    assert result.exit_code == 2
    assert "--generate-trt needs tensorrt, which is not installed: pip install tensorrt-rtx" in result.stderr
    assert not (tmp_path / "out").exists()


def test_nothing_to_do_and_missing_required(tmp_path, run_cli, tiny_checkpoints):
    result = run_cli(["--model-name", "x"])
    assert result.exit_code == 2 and "nothing to do" in result.stderr
    result = run_cli(["--generate-onnx", "--model-name", "x", "--model-io-config", json.dumps(MLP_IO)])
    assert result.exit_code == 2
    assert "missing --ckpt-path, --model-script-path, --model-class-name" in result.stderr


def test_config_file_with_unknown_key(tmp_path, run_cli):
    config = tmp_path / "model.yaml"
    config.write_text("model_name: x\nmax_batch_sise: 8\n")
    result = run_cli(["--config", config, "--generate-onnx"])
    assert result.exit_code == 2 and "unknown option 'max_batch_sise'" in result.stderr


def test_config_file_values_and_flag_overrides(tmp_path, run_cli, tiny_checkpoints):
    config = tmp_path / "configs" / "text.yaml"
    config.parent.mkdir()
    config.write_text("\n".join([
        "model_name: from_config",
        f"model_script_path: {TINY_MODELS}",
        "model_class_name: TinyTextModel",
        f"ckpt_path: {tiny_checkpoints['text']}",
        "model_io_config: io.json",
        "max_batch_size: 16",
        "dynamic_batching: true",
        "generate_onnx: true",
        "generate_triton_config: true",
        "triton_backend: onnxruntime_onnx",
        "instance_kind: cpu",
        "triton_repo: ../repo",
        "output_dir: ../out",
    ]))
    (config.parent / "io.json").write_text(json.dumps(TEXT_IO))
    result = run_cli(["--config", config, "--max-batch-size", "4"])
    assert result.exit_code == 0, result.stderr
    text = (tmp_path / "repo" / "from_config" / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in text and "max_batch_size: 4" in text and "KIND_CPU" in text
    assert (tmp_path / "repo" / "from_config" / "1" / "model.onnx").is_file()
