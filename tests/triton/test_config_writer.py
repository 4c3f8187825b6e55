"""The one Triton config writer: production fields from options, checks against the profile, backend choice.

The generated configs are loaded by the real server in the tests that serve repositories
(tests/text/test_text_pipelines.py, tests/core/test_cli_end_to_end.py); these tests need no server.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import numpy as np
import pytest

from tests.helpers.models import TEXT_IO, model_flags
from trt_converters.errors import UserError

ROOT = Path(__file__).resolve().parents[2]


def options(**values):
    from trt_converters.options import build_options

    return build_options({}, {"model_io_config": json.dumps(TEXT_IO), "model_name": "text", **values})


def core_config(opts, backend="python_onnxruntime"):
    from trt_converters.shapes import profiles_for
    from trt_converters.triton.config import Scheduling, add_warmup, model_config

    scheduling = Scheduling.from_options(opts, serving_backend=backend)
    config = model_config("text", serving_backend=backend, io=opts.model_io_config,
                          max_batch_size=opts.max_batch_size, scheduling=scheduling,
                          instance_kind="gpu" if backend == "tensorrt_plan" else "cpu")
    profiles = profiles_for(opts.model_io_config, max_batch_size=opts.max_batch_size, input_size=opts.input_size)
    files = add_warmup(config, opts.model_io_config, profiles) if scheduling.warmup else {}
    return config, profiles, files


def test_only_the_config_module_builds_configs():
    writer = ROOT / "trt_converters" / "triton" / "config.py"
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "trt_converters").rglob("*.py") if p != writer
                 and re.search(r"model_config_pb2|text_format|config\.pbtxt\"\)\.write", p.read_text())]
    assert offenders == []


def test_only_the_python_model_module_writes_python_model_folders():
    """model.py files and the serving runtime are copied, and version folders named, in triton/python_model.py alone."""
    writer = ROOT / "trt_converters" / "triton" / "python_model.py"
    runtime = ROOT / "trt_converters" / "serving_runtime" / "__init__.py"  # defines copy_runtime
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "trt_converters").rglob("*.py") if p not in (writer, runtime)
                 and re.search(r"copy_runtime\(|triton_model_source\(|/ \"1\"|\"model\.py\":", p.read_text())]
    assert offenders == []


def test_python_model_folder_layout(tmp_path):
    from trt_converters.triton.config import python_model_config, read_config
    from trt_converters.triton.python_model import VERSION, triton_model_source, write_python_model

    config = python_model_config("post", max_batch_size=4, parameters={"labels": "[]"})
    (tmp_path / "source.txt").write_text("copied")
    written = write_python_model(tmp_path / "post", "classifier_postprocess", config,
                                 files={"labels.json": "[]", "data/copied.txt": tmp_path / "source.txt"})
    version = tmp_path / "post" / VERSION
    assert (version / "model.py").read_bytes() == triton_model_source("classifier_postprocess").read_bytes()
    assert (version / "labels.json").read_text() == "[]" and (version / "data" / "copied.txt").read_text() == "copied"
    assert (version / "serving_runtime" / "triton_io.py").is_file()
    assert read_config(tmp_path / "post" / "config.pbtxt").name == "post"
    assert set(written) == {p for p in (tmp_path / "post").rglob("*") if p.is_file()}


def test_production_fields_round_trip_through_the_protobuf():
    from trt_converters.triton.config import parse_config_text, to_text

    opts = options(dynamic_batching=True, max_queue_size=32, queue_timeout=2000, queue_timeout_action="delay",
                   priority_levels=3, default_priority_level=2, version_policy="specific:1,3", response_cache=True,
                   triton_parameters={"owner": "search", "shards": 2}, input_size=(None, 24))
    config, _, _ = core_config(opts)
    parsed = parse_config_text(to_text(config))
    policy = parsed.dynamic_batching.default_queue_policy
    assert (policy.max_queue_size, policy.default_timeout_microseconds) == (32, 2000)
    assert policy.timeout_action == 1  # DELAY
    assert (parsed.dynamic_batching.priority_levels, parsed.dynamic_batching.default_priority_level) == (3, 2)
    assert list(parsed.version_policy.specific.versions) == [1, 3]
    assert parsed.response_cache.enable
    assert parsed.parameters["owner"].string_value == "search" and parsed.parameters["shards"].string_value == "2"
    assert not parsed.model_warmup  # ONNX Runtime: warmup only when asked


def test_warmup_is_generated_from_the_io_spec_at_batch_1_and_the_max_batch():
    opts = options(input_size=(None, 24), max_batch_size=4)
    config, profiles, files = core_config(opts, backend="tensorrt_plan")  # on by default for engines
    assert [(w.batch_size, list(w.inputs["input_ids"].dims)) for w in config.model_warmup] == [(1, [24]), (4, [24])]
    ids = np.frombuffer(files[config.model_warmup[0].inputs["input_ids"].input_data_file], dtype=np.int64)
    mask = np.frombuffer(files[config.model_warmup[0].inputs["input_mask"].input_data_file], dtype=np.float32)
    assert ids.size == mask.size == 24 and ids.min() >= 0 and ids.max() < 50  # value_range [0, 50)
    assert set(np.unique(mask)) <= {0.0, 1.0} and mask[0] == 1 and (np.diff(mask) <= 0).all()  # a padded row


def test_text_warmup_is_a_length_prefixed_sentence():
    from trt_converters.triton.config import WARMUP_SENTENCE, add_text_warmup, python_model_config

    config = python_model_config("tok", max_batch_size=8)
    files = add_text_warmup(config, "text", [1, 8])
    data = files[config.model_warmup[1].inputs["text"].input_data_file]
    assert struct.unpack("<I", data[:4])[0] == len(data) - 4 and data[4:].decode() == WARMUP_SENTENCE
    assert [w.batch_size for w in config.model_warmup] == [1, 8]


@pytest.mark.parametrize("change, message", [
    (lambda c: c.dynamic_batching.preferred_batch_size.append(16), "preferred batch size 16 is outside"),
    (lambda c: setattr(c, "max_batch_size", 4), "max_batch_size 4 differs from the profile's max batch 8"),
    (lambda c: (c.input[0].ClearField("dims"), c.input[0].dims.append(64)), "dim 0 is 64 in the config but 1..128"),
    (lambda c: c.input[0].dims.append(3), "have rank 2 but the profile"),
    (lambda c: c.model_warmup[0].inputs["input_ids"].dims.__setitem__(0, 500), "warmup 'batch_1' shape [1, 500]"),
])
def test_configs_that_disagree_with_the_profile_are_refused(change, message):
    from trt_converters.triton.config import check_against_profiles

    config, profiles, _ = core_config(options(dynamic_batching=True, model_warmup=True,
                                              input_size=(None, 128)))
    check_against_profiles(config, profiles)
    change(config)
    with pytest.raises(UserError, match=re.escape(message)):
        check_against_profiles(config, profiles)


@pytest.mark.parametrize("values, message", [
    ({"triton_backend": "tensorrt_plan", "instance_kind": "cpu"}, "--instance-kind cpu cannot serve a TensorRT plan"),
    ({"max_queue_size": 8}, "--max-queue-size configures the dynamic batcher's queue: add --dynamic-batching"),
    ({"dynamic_batching": True, "priority_levels": 2, "default_priority_level": 3}, "must be within 1..2"),
    ({"dynamic_batching": True, "default_priority_level": 1}, "--default-priority-level needs --priority-levels"),
    ({"version_policy": "newest"}, "--version-policy 'newest' must be all, latest:N or specific:V[,V...]"),
    ({"pipeline_instance_count": "tokeniser=2"}, "names role 'tokeniser'; roles: tokenizer, preprocess"),
    ({"pipeline_instance_count": "two"}, "give a count (2) or ROLE=COUNT pairs"),
    ({"pipeline": "crnn", "pipeline_options": {"blank_index": "x"}},
     "pipeline crnn: option blank_index='x' must be an integer"),
    ({"pipeline": "e5", "pipeline_options": {"txt_input": "q"}},
     "pipeline e5: unknown option 'txt_input'; valid options: embeddings_output, input_roles, length_buckets, max_length"),
    ({"pipeline_options": {"top_k": 2}}, "pipeline option 'top_k' given without a pipeline"),
])
def test_option_mistakes_are_one_line(values, message):
    with pytest.raises(UserError, match=re.escape(message)):
        options(**values)


def test_bad_pipeline_option_stops_the_cli_before_the_model_is_loaded(tmp_path, run_cli, tiny_checkpoints):
    result = run_cli(model_flags("text", tiny_checkpoints) + [
        "--generate-onnx", "--generate-triton-config", "--triton-repo", tmp_path / "repo", "--output-dir",
        tmp_path / "out", "--pipeline", "crnn", "--pipeline-option", "width_downsample=four"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: pipeline crnn: option width_downsample='four' must be an integer"]
    assert not (tmp_path / "out").exists() and not (tmp_path / "repo").exists()


def test_readme_lists_every_pipeline_option():
    from trt_converters.pipelines import available_pipelines, pipeline_module

    readme = (ROOT / "README.md").read_text()
    for name in available_pipelines():
        match = re.search(rf"^#+ `{name}` pipeline options\n(.*?)(?=^#)", readme, re.M | re.S)
        assert match, f"README has no '`{name}` pipeline options' section"
        missing = [key for key in pipeline_module(name).OPTIONS if f"`{key}`" not in match.group(1)]
        assert missing == [], f"README's {name} section misses {missing}"


def test_auto_backend_and_instance_kind_on_this_machine():
    from trt_converters.triton.backends import choose_serving, cuda_gpu_count, tensorrt_installed

    choice = choose_serving(options(generate_triton_config=True, generate_trt=True))
    if cuda_gpu_count() and tensorrt_installed():
        assert (choice.backend, choice.instance_kind) == ("tensorrt_plan", "gpu")
    else:
        assert (choice.backend, choice.instance_kind) == ("python_onnxruntime", "cpu")
        assert choice.why.startswith("auto: ")
    assert choose_serving(options()).why.startswith("auto: this run builds no engine (--generate-trt) and none exists")
    int8 = choose_serving(options(onnx_int8="dynamic"))
    assert (int8.backend, int8.instance_kind) == ("python_onnxruntime", "cpu")  # never KIND_GPU unless asked
    asked = choose_serving(options(onnx_int8="dynamic", triton_backend="onnxruntime_onnx", instance_kind="gpu"))
    assert (asked.backend, asked.instance_kind) == ("onnxruntime_onnx", "gpu")


def test_backends_the_local_server_cannot_load_are_named_with_the_build_that_can(require_tritonserver):
    from trt_converters.triton.backends import choose_serving, local_server_backends

    assert "python" in local_server_backends()
    for backend, needed in (("onnxruntime_onnx", "onnxruntime"), ("tensorrt_plan", "tensorrt")):
        if needed in local_server_backends():
            continue
        warnings = choose_serving(options(generate_triton_config=True, triton_backend=backend)).warnings
        assert len(warnings) == 1 and f"Triton's {needed} backend" in warnings[0]
        assert "NVIDIA's Triton container" in warnings[0]
    assert choose_serving(options(generate_triton_config=True, triton_backend="python_onnxruntime")).warnings == []


def test_entry_tensor_names_are_renamed_but_never_onto_core_tensors(tmp_path):
    from trt_converters.pipelines import write_pipeline
    from trt_converters.pipelines.base import PipelineRequest
    from trt_converters.spec import IOSpec
    from trt_converters.text.minilm import minilm_checkpoint_dir
    from trt_converters.triton.config import read_config

    io = IOSpec.model_validate({"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1]},
                                           {"name": "attention_mask", "dtype": "int64", "shape": [-1]}],
                                "outputs": [{"name": "embeddings", "dtype": "float32", "shape": [32]}]})

    def request(folder, **options):
        (tmp_path / folder).mkdir()
        return PipelineRequest(repo=tmp_path / folder, core_model_name="core", pipeline_name="p", io=io,
                               max_batch_size=4, options={"tokenizer_path": str(minilm_checkpoint_dir()), **options})

    write_pipeline("e5", request("ok", text_input="query", output_names={"embeddings": "vector"}))
    ensemble = read_config(tmp_path / "ok" / "p" / "config.pbtxt")
    assert [i.name for i in ensemble.input] == ["query"] and [o.name for o in ensemble.output] == ["vector"]
    assert dict(ensemble.ensemble_scheduling.step[0].input_map) == {"text": "query"}
    for folder, options, message in (
            ("clash", {"text_input": "input_ids"}, "text_input names 'input_ids', which is a core model tensor"),
            ("unknown", {"output_names": {"label": "x"}}, "renames 'label', which is not an output")):
        with pytest.raises(UserError, match=re.escape(message)):
            write_pipeline("e5", request(folder, **options))
        assert list((tmp_path / folder).iterdir()) == []


def test_every_config_field_comes_from_the_yaml_too(tmp_path):
    from trt_converters.config_file import read_config_file
    from trt_converters.options import build_options

    yaml_file = tmp_path / "family.yaml"
    yaml_file.write_text("\n".join([
        "model_name: text", f"model_io_config: '{json.dumps(TEXT_IO)}'", "dynamic_batching: true",
        "model_warmup: true", "response_cache: true", "max_queue_size: 4", "queue_timeout: 500",
        "queue_timeout_action: delay", "priority_levels: 2", "default_priority_level: 1", "version_policy: all",
        "pipeline_instance_count: {tokenizer: 3, postprocess: 2}", "triton_parameters: {owner: search, shards: 2}"]))
    opts = build_options(read_config_file(yaml_file), {"max_queue_size": 6})  # the flag wins
    config, _, files = core_config(opts)
    assert config.dynamic_batching.default_queue_policy.max_queue_size == 6 and files
    assert config.version_policy.HasField("all") and config.response_cache.enable
    assert dict(config.parameters)["shards"].string_value == "2"
    assert opts.pipeline_instance_count == {"tokenizer": 3, "postprocess": 2}
