"""Shared fixtures for the text pipeline tests: offline tokenizers and tiny GECToR label sets."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

CORPUS = [
    "I has a apple and she go to school yesterday .",
    "This is a test sentence with some words about grammar .",
    "The well-known cats is sleeping on the mat , are they ?",
    "We were happy because the weather was good today .",
    "Triton serves models over HTTP and gRPC quickly .",
]

# A small GECToR label vocabulary in gotutiyan's config.json format (<PAD> last, no logit column).
GECTOR_LABELS = [
    "$KEEP", "$DELETE", "<OOV>", "$APPEND_the", "$APPEND_,", "$REPLACE_have", "$REPLACE_a",
    "$REPLACE_an", "$MERGE_SPACE", "$MERGE_HYPHEN", "$TRANSFORM_CASE_CAPITAL",
    "$TRANSFORM_CASE_LOWER", "$TRANSFORM_AGREEMENT_PLURAL", "$TRANSFORM_AGREEMENT_SINGULAR",
    "$TRANSFORM_VERB_VB_VBZ", "$TRANSFORM_SPLIT_HYPHEN", "<PAD>",
]


def gector_config(labels=GECTOR_LABELS, **extra):
    label2id = {name: i for i, name in enumerate(labels)}
    return {
        "label2id": label2id,
        "id2label": {str(i): name for name, i in label2id.items()},
        "d_label2id": {"$CORRECT": 0, "$INCORRECT": 1, "<PAD>": 2},
        "keep_label": "$KEEP",
        "incorrect_label": "$INCORRECT",
        **extra,
    }


@pytest.fixture(scope="session")
def minilm_tokenizer():
    from transformers import AutoTokenizer

    from trt_converters.text.minilm import minilm_checkpoint_dir

    return AutoTokenizer.from_pretrained(str(minilm_checkpoint_dir()))


@pytest.fixture(scope="session")
def roberta_tokenizer_dir(tmp_path_factory) -> Path:
    """A tiny byte-level BPE tokenizer in RoBERTa's format, trained offline and saved."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import RobertaTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(CORPUS * 5, trainer)
    backend.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
        unk_token="<unk>", mask_token="<mask>", add_prefix_space=True, model_max_length=512,
    )
    folder = tmp_path_factory.mktemp("roberta_tokenizer")
    tokenizer.save_pretrained(str(folder))
    return folder


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return path
