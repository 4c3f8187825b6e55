"""Triton python-backend (BLS) GECToR corrector: `text` (TYPE_STRING [batch, 1]) -> `corrected`.

Tokenizes, calls the core tagger model by name for each correction round, and decodes its tags
with `trt_converters.text.gector_decoding` (the same code that runs on PyTorch and ONNX Runtime).
Files in the version folder: `tokenizer/`, `config.json` (label2id, d_label2id), and optionally
`verb-form-vocab.txt`. Config parameters (string values): core_model, input_ids_input,
attention_mask_input, ids_dtype, mask_dtype, labels_output, detect_output, iterations,
min_error_prob, keep_confidence, add_special_tokens, max_length, pad_to_length (0: dynamic),
batch_size (rows per core-model call, at most the core model's max_batch_size).
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _parameter(config, key, default=None):
    value = config.get("parameters", {}).get(key, {}).get("string_value", "")
    return value if value != "" else default


class TritonPythonModel:
    def initialize(self, args):
        from trt_converters.pipelines._text_common import load_tokenizer
        from trt_converters.text.gector_decoding import GectorLabels
        from trt_converters.text.verb_forms import load_verb_forms

        config = json.loads(args["model_config"])
        self.model_name = args["model_name"]
        folder = os.path.join(args["model_repository"], args["model_version"])
        self.tokenizer = load_tokenizer(os.path.join(folder, "tokenizer"), split_words=True)
        self.labels = GectorLabels.from_config_file(os.path.join(folder, "config.json"))
        verb_path = os.path.join(folder, "verb-form-vocab.txt")
        self.verb_forms = load_verb_forms(verb_path) if os.path.isfile(verb_path) else None

        p = lambda key, default=None: _parameter(config, key, default)  # noqa: E731
        self.core_model = p("core_model")
        self.ids_input = p("input_ids_input", "input_ids")
        self.mask_input = p("attention_mask_input", "attention_mask")
        self.ids_dtype = np.dtype(p("ids_dtype", "int64"))
        self.mask_dtype = np.dtype(p("mask_dtype", "int64"))
        self.text_input = p("text_input", "text")
        self.corrected_output = p("corrected_output", "corrected")
        self.labels_output = p("labels_output", "logits_labels")
        self.detect_output = p("detect_output", "logits_d")
        self.decoding = dict(
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
        request = pb_utils.InferenceRequest(
            model_name=self.core_model,
            requested_output_names=[self.labels_output, self.detect_output],
            inputs=[pb_utils.Tensor(self.ids_input, input_ids.astype(self.ids_dtype)),
                    pb_utils.Tensor(self.mask_input, attention_mask.astype(self.mask_dtype))],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"core model {self.core_model!r} failed: {response.error().message()}")
        labels = pb_utils.get_output_tensor_by_name(response, self.labels_output).as_numpy()
        detect = pb_utils.get_output_tensor_by_name(response, self.detect_output).as_numpy()
        return labels, detect

    def execute(self, requests):
        responses = [None] * len(requests)
        sentences, owners = [], []
        for index, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, self.text_input)
            if tensor is None:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"{self.model_name}: missing input "
                                                                  f"{self.text_input!r}"))
                continue
            array = tensor.as_numpy()
            texts = [v.decode("utf-8", errors="replace") if isinstance(v, bytes) else str(v)
                     for v in array.reshape(-1)]
            owners.append((index, len(sentences), array.shape))
            sentences += texts
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
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"{self.model_name}: {exc}"))
                continue
            values = np.array([t.encode("utf-8") for t in texts], dtype=np.object_)
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[pb_utils.Tensor(self.corrected_output, values.reshape(shape))])
        return responses

    def _correct(self, sentences):
        from trt_converters.text.gector_decoding import correct_sentences

        return correct_sentences(sentences, self._predict, self.tokenizer, self.labels,
                                 verb_forms=self.verb_forms, **self.decoding)
