"""Bad input ends with one clear line, a non-zero exit status, and no file written or changed."""

from __future__ import annotations

import json

import pytest

from tests.helpers.cli import snapshot
from tests.helpers.models import MLP_IO, TEXT_IO, TINY_MODELS, model_flags


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
    (["--model-class-name", "TinyMLP"], "declares 2 inputs (input_ids, input_mask) but TinyMLP.forward(features) takes 1"),
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


def assert_refused(run_cli, args, folder, expected: str, status: int = 2, *, before_load: bool = True):
    """One error line naming the cause, the exit status, and `folder` unchanged (contents and modes)."""
    before = snapshot(folder)
    result = run_cli(args)
    assert_one_error_line(result, expected, status)
    if before_load:
        assert "[load]" not in result.stderr, "refused only after loading the model"
    assert snapshot(folder) == before
    return result


def _script(folder, name: str, text: str):
    path = folder / name
    path.write_text(text)
    return path


def test_nan_checkpoint_fails_naming_the_output_and_the_weight(tmp_path, run_cli, tiny_checkpoints):
    import torch

    state = torch.load(tiny_checkpoints["text"], weights_only=True)
    state["module.encoder.0.weight"][3, 5] = float("nan")  # one diverged weight
    bad = tmp_path / "diverged.bin"
    torch.save(state, bad)
    result = assert_refused(run_cli, _text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(bad)}), tmp_path,
                            "the PyTorch reference itself is non-finite: output 'output' holds 3 NaN/inf value(s) "
                            "on the synthetic inputs", before_load=False)
    assert "the checkpoint or the model is broken (--ckpt-path holds NaN/inf in encoder.0.weight)" in result.stderr
    assert "[export]" not in result.stderr, "the reference is checked before exporting"


def test_model_returning_nan_fails(tmp_path, run_cli, tiny_checkpoints):
    """A forward() that computes NaN on the IO config's inputs (the log of negative values)."""
    script = _script(tmp_path, "nan_model.py", "import torch\nfrom torch import nn\n\n"
                     "class LogModel(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                     "        self.scale = nn.Parameter(torch.ones(16))\n\n"
                     "    def forward(self, features):\n        return torch.log(features * self.scale)[:, :4]\n")
    import torch

    io = {"inputs": [{"name": "features", "dtype": "float32", "shape": [16], "value_range": [-2, -1]}],
          "outputs": [{"name": "scores", "dtype": "float32", "shape": [4]}]}
    checkpoint = tmp_path / "log.pt"
    torch.save({"scale": torch.ones(16)}, checkpoint)
    args = ["--ckpt-path", checkpoint, "--model-script-path", script, "--model-class-name", "LogModel", "--model-io-config", json.dumps(io),
            "--model-name", "log", "--output-dir", tmp_path / "out", "--generate-onnx"]
    assert_refused(run_cli, args, tmp_path, "itself is non-finite: output 'scores'", before_load=False)


def test_export_that_computes_nan_is_a_conversion_defect(tmp_path, run_cli):
    """PyTorch is finite; the exported graph computes NaN (an export defect, simulated during export only)."""
    import torch

    script = _script(tmp_path, "export_defect.py", "import torch\nfrom torch import nn\n\n"
                     "class Net(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
                     "        self.linear = nn.Linear(16, 4)\n\n"
                     "    def forward(self, features):\n        scores = self.linear(features)\n"
                     "        if torch.onnx.is_in_onnx_export():\n            scores = scores * float('nan')\n"
                     "        return scores\n")
    checkpoint = tmp_path / "net.pt"
    torch.save({"linear.weight": torch.ones(4, 16), "linear.bias": torch.zeros(4)}, checkpoint)
    args = ["--ckpt-path", checkpoint, "--model-script-path", script, "--model-class-name", "Net",
            "--model-io-config", json.dumps(MLP_IO), "--model-name", "net", "--output-dir", tmp_path / "out",
            "--generate-onnx", "--exporter", "legacy"]
    result = assert_refused(run_cli, args, tmp_path, "NaN/inf value(s) in output 'scores' where the reference is "
                            "finite: a defect of the export or lowering", status=1, before_load=False)
    assert "legacy: legacy ONNX export computes " in result.stderr


def test_candidate_only_non_finite_is_a_conversion_defect():
    import numpy as np

    from trt_converters.verify import DEFAULT_TOLERANCES, compare_output_sets, failure_message

    tolerance = DEFAULT_TOLERANCES["fp16"]
    reference = [{"logits": np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)}]
    candidate = [{"logits": np.array([[1.0, np.inf], [3.0, 4.0]], np.float32)}]
    comparisons = compare_output_sets(reference, candidate, tolerance)
    assert not comparisons[0].passed and comparisons[0].candidate_non_finite == 1
    message = failure_message("fp16 graph", comparisons, tolerance)
    assert message.startswith("fp16 graph computes 1 NaN/inf value(s) in output 'logits' where the reference is "
                              "finite: a defect of the export or lowering")
    # NaN on both sides used to count as a match (error 0, cosine 1): a NaN reference is a broken model
    both = compare_output_sets([{"logits": np.array([np.nan, 1.0])}], [{"logits": np.array([np.nan, 1.0])}], tolerance)
    assert not both[0].passed and both[0].reference_non_finite == 1
    assert "the reference itself is non-finite: output 'logits'" in failure_message("graph", both, tolerance)


def test_onnxruntime_accuracy_report_fails_on_non_finite():
    import numpy as np

    from trt_converters.onnxruntime_cpu.accuracy import accuracy_report

    report = accuracy_report([{"logits": np.array([[np.nan, 1.0]])}], [{"logits": np.array([[np.nan, 1.0]])}])
    assert not report.passed


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_artifacts_get_the_modes_of_a_plain_open(tmp_path, run_cli, tiny_checkpoints, umask):
    import os
    import stat

    previous = os.umask(umask)
    try:
        result = run_cli(_text_args(tmp_path, tiny_checkpoints))
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.stderr
    written = [p for p in (tmp_path / "out").rglob("*")] + [p for p in (tmp_path / "repo").rglob("*")]
    assert any(p.name == "config.pbtxt" for p in written) and any(p.name == "report.json" for p in written)
    for path in written:
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(path.stat().st_mode) == expected, (path, oct(path.stat().st_mode))


@pytest.mark.parametrize("flag, name", [
    ("--model-name", "../pair"), ("--model-name", "org/bert"), ("--model-name", ""), ("--model-name", ".hidden"),
    ("--model-name", "my model"), ("--pipeline-name", "../escape"),
])
def test_names_triton_cannot_serve_are_refused(tmp_path, run_cli, tiny_checkpoints, flag, name):
    args = _text_args(tmp_path, tiny_checkpoints) + [flag, name]
    if flag == "--pipeline-name":
        args += ["--pipeline", "classifier"]
    result = assert_refused(run_cli, args, tmp_path, f"{flag}: {name!r} cannot be a Triton model name")
    assert "use letters, digits, '_', '-' and '.' (not first)" in result.stderr


@pytest.mark.parametrize("body, printed", [
    ("import sys\nsys.exit(0)\n", None),
    ("import argparse\nparser = argparse.ArgumentParser()\nparser.add_argument('--lr', required=True)\n"
     "args = parser.parse_args()\n", "the following arguments are required: --lr"),
])
def test_script_that_exits_at_import_is_one_clear_error(tmp_path, run_cli, tiny_checkpoints, body, printed):
    script = _script(tmp_path, "train.py", "from torch import nn\n" + body + "\nclass Net(nn.Module):\n    pass\n")
    args = _text_args(tmp_path, tiny_checkpoints, **{"--model-script-path": str(script),
                                                      "--model-class-name": "Net"})
    result = assert_refused(run_cli, args, tmp_path, f"--model-script-path {script} exited while being imported",
                            before_load=False)
    assert "put that code under `if __name__ == \"__main__\":`" in result.stderr
    assert "usage:" not in result.stderr and "usage:" not in result.stdout
    if printed:
        assert printed in result.stderr


@pytest.mark.parametrize("case", ["onnx is engine", "report on onnx", "inside the model folder", "onnx on checkpoint",
                                  "pipeline name is model name"])
def test_two_artifacts_on_one_path_are_refused_even_with_overwrite(tmp_path, run_cli, tiny_checkpoints, case):
    import shutil

    checkpoint = tmp_path / "text.bin"
    shutil.copy(tiny_checkpoints["text"], checkpoint)
    args = _text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(checkpoint)}) + ["--overwrite"]
    onnx = tmp_path / "out" / "same.file"
    extra, expected = {
        "onnx is engine": (["--onnx-path", onnx, "--engine-path", onnx, "--generate-trt",
                            "--triton-backend", "tensorrt_plan"],
                           f"--engine-path and --onnx-path are both {onnx}: two artifacts cannot share one path"),
        "report on onnx": (["--onnx-path", onnx, "--report-path", onnx], f"--report-path and --onnx-path are both {onnx}"),
        "inside the model folder": (["--output-dir", tmp_path / "repo"],
                                    f"--onnx-path {tmp_path / 'repo' / 'text' / 'model.onnx'} lies inside the Triton "
                                    "model folder"),
        "onnx on checkpoint": (["--onnx-path", checkpoint], f"--onnx-path {checkpoint} would replace --ckpt-path"),
        "pipeline name is model name": (["--pipeline", "classifier", "--pipeline-name", "text"],
                                        "pipeline model 'text' and the Triton model folder are both"),
    }[case]
    assert_refused(run_cli, args + extra, tmp_path, expected)


def _custom_model(tmp_path, source: str):
    return _script(tmp_path, "custom.py", "import torch\nfrom torch import nn\n\n" + source)


USER_MISTAKES = [
    ("IO config lacks an input", "text", {"inputs": TEXT_IO["inputs"][:1], "outputs": TEXT_IO["outputs"]}, None,
     "--model-io-config declares 1 input (input_ids) but TinyTextModel.forward(input_ids, input_mask) also needs "
     "'input_mask': add it to the IO config's inputs"),
    ("IO config has an extra input", "mlp", {"inputs": MLP_IO["inputs"] + [{"name": "extra", "dtype": "float32",
                                                                             "shape": [2]}], "outputs": MLP_IO["outputs"]},
     None, "TinyMLP.forward(features) takes 1"),
    ("forward raises on the sample", "mlp", {"inputs": [{"name": "features", "dtype": "float32", "shape": [15]}],
                                             "outputs": MLP_IO["outputs"]}, None,
     "TinyMLP.forward() failed on inputs made from --model-io-config (features float32[1, 15]): RuntimeError: "
     "mat1 and mat2 shapes cannot be multiplied"),
    ("fewer outputs declared than returned", "cnn", None, {"outputs": [{"name": "logits", "dtype": "float32",
                                                                         "shape": [5]}]},
     "TinyCNN.forward() returned 2 value(s) (Tensor[1, 5], Tensor[1, 8, 8, 8]) but --model-io-config declares 1 "
     "output tensor(s) (logits)"),
    ("output shape differs", "mlp", {"inputs": MLP_IO["inputs"], "outputs": [{"name": "scores", "dtype": "float32",
                                                                             "shape": [5]}]}, None,
     "TinyMLP.forward() returned output 'scores' of shape [1, 4] but --model-io-config declares [5]"),
]


@pytest.mark.parametrize("case, kind, io, io_changes, expected", USER_MISTAKES, ids=[c[0] for c in USER_MISTAKES])
def test_model_and_io_mistakes_point_at_the_cause(tmp_path, run_cli, tiny_checkpoints, case, kind, io, io_changes,
                                                  expected):
    from tests.helpers.models import CNN_IO

    if io is None:
        io = {**CNN_IO, **io_changes}
    args = model_flags(kind, tiny_checkpoints) + ["--output-dir", tmp_path / "out", "--generate-onnx"]
    args[args.index("--model-io-config") + 1] = json.dumps(io)
    result = assert_refused(run_cli, args, tmp_path, expected, before_load=False)
    assert "unexpected" not in result.stderr


def test_class_that_is_not_a_module_is_refused(tmp_path, run_cli, tiny_checkpoints):
    script = _custom_model(tmp_path, "class Settings:\n    hidden = 16\n\n\nclass Real(nn.Module):\n    pass\n")
    args = _text_args(tmp_path, tiny_checkpoints, **{"--model-script-path": str(script),
                                                      "--model-class-name": "Settings"})
    assert_refused(run_cli, args, tmp_path, "--model-class-name 'Settings' is not a torch.nn.Module subclass; name "
                   "the model class (nn.Module classes in custom.py: Real)", before_load=False)


def test_constructor_that_raises_names_the_class_and_kwargs(tmp_path, run_cli, tiny_checkpoints):
    script = _custom_model(tmp_path, "class Net(nn.Module):\n    def __init__(self, hidden=16):\n"
                                     "        super().__init__()\n        if hidden % 8:\n"
                                     "            raise ValueError('hidden must be a multiple of 8')\n")
    args = _text_args(tmp_path, tiny_checkpoints, **{"--model-script-path": str(script), "--model-class-name": "Net"})
    assert_refused(run_cli, args + ["--model-kwargs", '{"hidden": 12}'], tmp_path,
                   "Net(hidden=12) raised ValueError: hidden must be a multiple of 8; check model_kwargs",
                   before_load=False)


def test_corrupt_checkpoint_is_not_a_checkpoint(tmp_path, run_cli, tiny_checkpoints):
    import numpy as np

    for name, data in (("random.pt", np.random.default_rng(0).bytes(4096)), ("empty.pt", b"")):
        bad = tmp_path / name
        bad.write_bytes(data)
        result = assert_refused(run_cli, _text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(bad)}),
                                tmp_path, f"--ckpt-path {bad} is not a PyTorch checkpoint", before_load=False)
        assert "weights_only=False" not in result.stderr and "trusted source" not in result.stderr
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(tiny_checkpoints["mlp"].read_bytes()[:300])
    result = run_cli(_text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(truncated)}))
    assert result.exit_code == 2 and "weights_only=False" not in result.stderr


def test_calibration_data_is_checked_before_loading(tmp_path, run_cli, tiny_checkpoints):
    import numpy as np

    args = _text_args(tmp_path, tiny_checkpoints) + ["--use-fp16", "--use-int8"]
    missing = tmp_path / "calib.npz"
    assert_refused(run_cli, args + ["--calib-data", missing], tmp_path, f"--calib-data {missing} does not exist")
    np.savez(missing, input_ids=np.zeros((4, 16), np.int64))
    assert_refused(run_cli, args + ["--calib-data", missing], tmp_path,
                   f"calibration data {missing} has no array for input(s) 'input_mask' (it holds input_ids)")


def test_existing_pipeline_models_are_refused_before_any_work(tmp_path, run_cli, tiny_checkpoints):
    (tmp_path / "repo" / "text_classifier_postprocess").mkdir(parents=True)
    args = _text_args(tmp_path, tiny_checkpoints) + ["--pipeline", "classifier"]
    assert_refused(run_cli, args, tmp_path,
                   f"{tmp_path / 'repo' / 'text_classifier_postprocess'} already exists; pass --overwrite")


def test_key_mismatch_with_few_matching_tensors_names_the_prefix_and_gives_no_no_strict_hint(tmp_path, run_cli,
                                                                                            tiny_checkpoints):
    import json as json_module

    import torch

    state = torch.load(tiny_checkpoints["text"], weights_only=True)
    wrapped = {"model.encoder_wrapper." + k.removeprefix("module."): v for k, v in state.items()}
    folder = tmp_path / "ckpt"
    folder.mkdir()
    torch.save(wrapped, folder / "model.pt")
    (folder / "config.json").write_text(json_module.dumps({"architectures": ["BertForSequenceClassification"]}))
    result = run_cli(_text_args(tmp_path, tiny_checkpoints, **{"--ckpt-path": str(folder / "model.pt")}))
    assert_one_error_line(result, "Only 0 of the class's")
    assert "--no-strict" not in result.stderr
    assert "'model.encoder_wrapper.'" in result.stderr and "as the class's '(no prefix)'" in result.stderr
    assert "configs/hf_sequence_classification.yaml" in result.stderr
