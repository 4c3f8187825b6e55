"""Triton python-backend (BLS) GECToR corrector: `text` (TYPE_STRING [batch, 1]) -> `corrected`.

Tokenizes, calls the core tagger model by name for each correction round, and decodes its tags
with `serving_runtime.gector_decoding` (copied beside this file; the same code runs on PyTorch and
ONNX Runtime logits in the converter and tests). Files in the version folder: `serving_runtime/`,
`tokenizer/`, `config.json` (label2id), and optionally `verb-form-vocab.txt`. Config parameters
(string values): core_model, input_ids_input, attention_mask_input, ids_dtype, mask_dtype,
labels_output, detect_output, iterations, min_error_prob, keep_confidence, add_special_tokens,
max_length, pad_to_length (0: dynamic), batch_size (rows per core-model call, at most the core
model's max_batch_size).
"""

import json
import os
import sys

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from serving_runtime import triton_io  # noqa: E402
from serving_runtime.gector_decoding import Decoding, GectorLabels, correct_sentences  # noqa: E402
from serving_runtime.hf_tokenizer import initialize_text_model  # noqa: E402
from serving_runtime.triton_io import call_model, exception_response, parameter  # noqa: E402
from serving_runtime.verb_forms import load_verb_forms  # noqa: E402

# pip packages this model needs besides the python backend (the repository's requirements.txt)
REQUIRES = ("numpy", "tokenizers", "transformers")


class TritonPythonModel:
    def initialize(self, args):
        # the tokenizer was saved with add_prefix_space, so pre-split words tokenize as inside a sentence
        config, self.model_name, folder, self.tokenizer = initialize_text_model(args)
        with open(os.path.join(folder, "config.json"), encoding="utf-8") as handle:
            self.labels = GectorLabels.from_config(json.load(handle))
        verb_path = os.path.join(folder, "verb-form-vocab.txt")
        self.verb_forms = load_verb_forms(verb_path) if os.path.isfile(verb_path) else None

        p = lambda key, default=None: parameter(config, key, default)  # noqa: E731
        self.core_model = p("core_model")
        self.ids_input = p("input_ids_input", "input_ids")
        self.mask_input = p("attention_mask_input", "attention_mask")
        self.ids_dtype = np.dtype(p("ids_dtype", "int64"))
        self.mask_dtype = np.dtype(p("mask_dtype", "int64"))
        self.text_input = p("text_input", "text")
        self.corrected_output = p("corrected_output", "corrected")
        self.labels_output = p("labels_output", "logits_labels")
        self.detect_output = p("detect_output", "logits_d")
        self.decoding = Decoding(
            iterations=int(p("iterations", "5")),
            min_error_prob=float(p("min_error_prob", "0")),
            keep_confidence=float(p("keep_confidence", "0")),
            add_special_tokens=p("add_special_tokens", "true") == "true",
            max_length=int(p("max_length", "128")),
            pad_to_length=int(p("pad_to_length", "0")) or None,
            batch_size=int(p("batch_size", "32")),
        )
        if not self.core_model:
            raise pb_utils.TritonModelException(f"{self.model_name}: parameter core_model is not set")

    def _predict(self, input_ids, attention_mask):
        inputs = {self.ids_input: input_ids.astype(self.ids_dtype),
                  self.mask_input: attention_mask.astype(self.mask_dtype)}
        return call_model(self.core_model, inputs, [self.labels_output, self.detect_output])

    def execute(self, requests):
        responses, sentences, owners = triton_io.gather_texts(requests, self.text_input, self.model_name)
        if not sentences:
            return responses
        try:
            corrected = self._correct(sentences)
        except Exception:
            # One bad request must not fail the others: correct each request on its own.
            corrected = None
        for index, start, shape in owners:
            count = int(np.prod(shape))
            try:
                texts = corrected[start:start + count] if corrected is not None \
                    else self._correct(sentences[start:start + count])
            except Exception as exc:  # answer this request with its error, keep serving
                responses[index] = exception_response(exc, f"{self.model_name}: ")
                continue
            values = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.corrected_output, values.reshape(shape))])
        return responses

    def _correct(self, sentences):
        return correct_sentences(sentences, self._predict, self.tokenizer, self.labels, self.decoding,
                                 verb_forms=self.verb_forms)
