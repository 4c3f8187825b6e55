"""Sentence-embedding pipeline (E5, MiniLM): ensemble `text` -> tokenizer -> core -> `embeddings`.

E5 models expect every text to start with "query: " or "passage: "; the tokenizer model adds
option `prefix` (alias `query_prefix`; default "query: ", "" for models without prefixes).
Deploy a second pipeline with prefix "passage: " for documents. Other options: tokenizer_path,
max_length, embeddings_output (default: the first core output), input_roles, text_input and
output_names (the entry model's tensor names).
"""

from __future__ import annotations

from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.pipelines import _text_common as common
from trt_converters.pipelines._options import Option, renamed_outputs, text_input_name
from trt_converters.pipelines.base import PipelineRequest

DEFAULT_PREFIX = "query: "
OPTIONS = {
    **common.text_options("embeddings"),
    "prefix": Option("str", 'prepended to every text (default "query: "; "" for models without prefixes)'),
    "query_prefix": Option("str", "alias of prefix"),
    "embeddings_output": Option("str", "core output holding the embeddings (default: the first)"),
}
# the models this pipeline writes: <pipeline_name><suffix>
MODEL_SUFFIXES = ("", "_tokenizer")


def write_pipeline(request: PipelineRequest) -> list[Path]:
    common.require_batching(request)
    prefix = str(common.option(request, "prefix", DEFAULT_PREFIX, "query_prefix"))
    name = common.option(request, "embeddings_output", request.io.outputs[0].name)
    embeddings = next((s for s in request.io.outputs if s.name == name), None)
    if embeddings is None:
        raise UserError(f"pipeline option embeddings_output={name!r} is not a core output "
                        f"({', '.join(s.name for s in request.io.outputs)})")
    text, output = text_input_name(request), renamed_outputs(request, [embeddings.name])[embeddings.name]

    tokenizer_name = f"{request.pipeline_name}_tokenizer"
    tokenizer_dir = common.write_tokenizer_model(request, tokenizer_name, prefix=prefix)
    inputs = {s.name: s.name for s in request.io.inputs}
    ensemble = common.ensemble_config(request, [
        (tokenizer_name, {"text": text}, inputs),
        (request.core_model_name, inputs, {embeddings.name: output}),
    ])
    common.add_tensor(ensemble.input, text, "TYPE_STRING", [1])
    common.add_tensor(ensemble.output, output, embeddings.triton_dtype, embeddings.shape)
    ensemble_dir = request.repo / request.pipeline_name
    common.version_folder(ensemble_dir)  # ensembles need a version folder, even empty
    common.write_config(ensemble_dir, ensemble)
    return common.written_files(tokenizer_dir, ensemble_dir)
