"""GECToR decoding: from a tagger's logits to corrected sentences, independent of the runtime.

The model is reached only through `predict(input_ids, attention_mask) -> (logits_labels, logits_d)`
(numpy int64 [B, T] in; [B, T, n_labels] and [B, T, n_detect] out), so the same decoding runs on
PyTorch, ONNX Runtime, or a Triton BLS model calling the core model by name.

Conventions follow the public implementations (gotutiyan/gector, grammarly/gector):
- a sentence is split into words on whitespace and `$START` is prepended;
- the words go through the Hugging Face tokenizer with `is_split_into_words=True`, special tokens
  added except for Grammarly's official checkpoints (trained without them);
- a word's tag comes from its FIRST sub-token; probabilities are softmaxes of the logits;
- `keep_confidence` is added to the `$KEEP` probability before the argmax;
- `min_error_prob`: a sentence whose highest `$INCORRECT` probability over its words is below it
  is left unchanged, and a word whose top tag probability is below it gets `$KEEP`;
- the label vocabulary is config.json's label2id/id2label (column i of the label logits is label
  id i; `<PAD>`, last in label2id, has no column), detection classes are `d_label2id`;
- correction runs for up to `iterations` rounds; a sentence leaves the loop when it gets no edit
  tag, when the edits leave it unchanged, or when it returns to an earlier state (a cycle).

Deliberate differences from gotutiyan's code: the `$START` word always counts towards the
sentence's maximum error probability (there it counts only when special tokens are added), a
`$MERGE_*` tag on the last word is dropped instead of leaking into the output as text, and
`$TRANSFORM_SPLIT_HYPHEN`/`$APPEND_*` results are real words (later tags see them as such).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from trt_converters.errors import UserError
from trt_converters.text.verb_forms import VerbForms, transform_verb

START_TOKEN = "$START"
KEEP = "$KEEP"
DELETE = "$DELETE"
MERGE_JOINERS = {"$MERGE_SPACE": "", "$MERGE_HYPHEN": "-"}
# Tags that never edit: "no correction" in both public implementations.
NO_EDIT_TAGS = frozenset({KEEP, "<OOV>", "<PAD>", "@@UNKNOWN@@", "@@PADDING@@"})

Predict = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class GectorLabels:
    """Label names by id (= column of the label logits) and where `$KEEP`/`$INCORRECT` are."""

    id2label: tuple[str, ...]
    keep_index: int
    incorrect_index: int

    @classmethod
    def from_config(cls, config: Mapping) -> "GectorLabels":
        keep_label = config.get("keep_label", KEEP)
        incorrect_label = config.get("incorrect_label", "$INCORRECT")
        id2label = _labels_by_id(config)
        if keep_label not in id2label:
            raise UserError(f"GECToR label vocabulary has no {keep_label!r} label: "
                            "use the config.json saved with the checkpoint")
        d_label2id = config.get("d_label2id") or {}
        # The public format lists $CORRECT, $INCORRECT, <PAD>: without d_label2id, column 1.
        incorrect_index = int(d_label2id.get(incorrect_label, 1))
        return cls(tuple(id2label), id2label.index(keep_label), incorrect_index)

    @classmethod
    def from_config_file(cls, path: "str | Path") -> "GectorLabels":
        return cls.from_config(read_gector_config(path))


def read_gector_config(path: "str | Path") -> dict:
    path = Path(path)
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"GECToR config {path} not found: put the checkpoint's config.json "
                        "(with label2id) in the checkpoint folder") from None
    except json.JSONDecodeError as exc:
        raise UserError(f"GECToR config {path} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    if not isinstance(config, dict):
        raise UserError(f"GECToR config {path} must hold a JSON object with label2id")
    return config


def _labels_by_id(config: Mapping) -> list[str]:
    if config.get("label2id"):
        by_id = {int(i): str(name) for name, i in config["label2id"].items()}
    elif config.get("id2label"):
        by_id = {int(i): str(name) for i, name in config["id2label"].items()}
    else:
        raise UserError("GECToR config.json has neither label2id nor id2label: "
                        "use the config.json saved with the checkpoint")
    if sorted(by_id) != list(range(len(by_id))):
        raise UserError("GECToR label ids in config.json must be 0..N-1 without gaps")
    return [by_id[i] for i in range(len(by_id))]


# -- tags -> words ---------------------------------------------------------------------------
def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def choose_tags(
    label_probs: np.ndarray,
    error_probs: np.ndarray,
    labels: GectorLabels,
    *,
    keep_confidence: float = 0.0,
    min_error_prob: float = 0.0,
) -> list[str]:
    """One tag per word from its label probabilities [words, n] and `$INCORRECT` probabilities [words]."""
    probs = np.array(label_probs, dtype=np.float64, copy=True)
    if probs.ndim != 2 or probs.shape[1] > len(labels.id2label):
        raise ValueError(f"label probabilities must be [words, <= {len(labels.id2label)}], got {probs.shape}")
    if probs.shape[0] == 0:
        return []
    probs[:, labels.keep_index] += keep_confidence
    ids = probs.argmax(axis=-1)
    if float(np.max(error_probs)) < min_error_prob:
        ids[:] = labels.keep_index
    ids[probs.max(axis=-1) < min_error_prob] = labels.keep_index
    return [labels.id2label[i] for i in ids]


def transform_word(word: str, tag: str, verb_forms: Optional[VerbForms] = None) -> str:
    """The word a `$TRANSFORM_*` tag makes of `word` (words joined by a space for a split)."""
    if tag.startswith("$TRANSFORM_CASE_"):
        case = tag[len("$TRANSFORM_CASE_"):]
        if case == "LOWER":
            return word.lower()
        if case == "UPPER":
            return word.upper()
        if case == "CAPITAL":
            return word.capitalize()
        if case == "CAPITAL_1":
            return word[0] + word[1:].capitalize() if len(word) > 1 else word
        if case == "UPPER_-1":
            return word[:-1].upper() + word[-1:] if word else word
        return word
    if tag == "$TRANSFORM_AGREEMENT_SINGULAR":
        return word[:-1] if len(word) > 1 else word
    if tag == "$TRANSFORM_AGREEMENT_PLURAL":
        return word + "s"
    if tag == "$TRANSFORM_SPLIT_HYPHEN":
        return " ".join(part for part in word.split("-") if part) or word
    if tag.startswith("$TRANSFORM_VERB_"):
        target = transform_verb(word, tag[len("$TRANSFORM_VERB_"):], verb_forms)
        return word if target is None else target
    return word


def apply_tags(words: Sequence[str], tags: Sequence[str], verb_forms: Optional[VerbForms] = None) -> list[str]:
    """Edit `words` (starting with `$START`) by one tag per word; words past the tags stay.

    `$START` takes only `$APPEND_*`. `$MERGE_SPACE`/`$MERGE_HYPHEN` join the word with the next
    word that survives (a deleted word in between is skipped, as in the public code).
    """
    pieces: list[str] = []  # words, and merge markers between them
    for index, word in enumerate(words):
        tag = tags[index] if index < len(tags) else KEEP
        if tag.startswith("$APPEND_"):
            pieces += [word, tag[len("$APPEND_"):]]
        elif word == START_TOKEN and index == 0:
            pieces.append(word)
        elif tag == DELETE:
            continue
        elif tag.startswith("$REPLACE_"):
            pieces.append(tag[len("$REPLACE_"):])
        elif tag.startswith("$TRANSFORM_"):
            pieces += transform_word(word, tag, verb_forms).split(" ")
        elif tag in MERGE_JOINERS:
            pieces += [word, tag]
        else:
            pieces.append(word)

    edited: list[str] = []
    pending_joiner: Optional[str] = None
    for piece in pieces:
        if piece in MERGE_JOINERS:
            if edited and edited[-1] != START_TOKEN:
                pending_joiner = MERGE_JOINERS[piece]
            continue
        if not piece:
            continue
        if pending_joiner is not None:
            edited[-1] = edited[-1] + pending_joiner + piece
            pending_joiner = None
        else:
            edited.append(piece)
    return edited


# -- tokenization ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray  # int64 [B, T]
    attention_mask: np.ndarray  # int64 [B, T]
    first_positions: list[list[int]]  # per sentence, per word: its first sub-token, -1 if none


def encode_words(
    tokenizer,
    batch_words: Sequence[Sequence[str]],
    *,
    add_special_tokens: bool = True,
    max_length: int = 128,
    pad_to_length: Optional[int] = None,
) -> EncodedBatch:
    """Tokenize pre-split words; pad to the longest row, or to `pad_to_length` when given."""
    length = pad_to_length or max_length
    encoding = tokenizer(
        [list(words) for words in batch_words],
        is_split_into_words=True,
        add_special_tokens=add_special_tokens,
        truncation=True,
        max_length=length,
        padding="max_length" if pad_to_length else "longest",
        return_attention_mask=True,
    )
    first_positions = []
    for row, words in enumerate(batch_words):
        positions = [-1] * len(words)
        for position, word_id in enumerate(encoding.word_ids(row)):
            if word_id is not None and positions[word_id] < 0:
                positions[word_id] = position
        first_positions.append(positions)
    return EncodedBatch(
        np.asarray(encoding["input_ids"], dtype=np.int64),
        np.asarray(encoding["attention_mask"], dtype=np.int64),
        first_positions,
    )


def word_probabilities(
    logits_labels: np.ndarray, logits_d: np.ndarray, first_positions: Sequence[int], labels: GectorLabels
) -> tuple[np.ndarray, np.ndarray]:
    """One sentence: label probabilities [words, n] and `$INCORRECT` probabilities [words].

    Words without a sub-token (truncated) get certain `$KEEP` and no error probability.
    """
    n_labels = logits_labels.shape[-1]
    label_probs = np.zeros((len(first_positions), n_labels), dtype=np.float64)
    error_probs = np.zeros(len(first_positions), dtype=np.float64)
    present = [i for i, p in enumerate(first_positions) if p >= 0]
    missing = [i for i, p in enumerate(first_positions) if p < 0]
    if present:
        rows = [first_positions[i] for i in present]
        label_probs[present] = _softmax(np.asarray(logits_labels[rows], dtype=np.float64))
        error_probs[present] = _softmax(np.asarray(logits_d[rows], dtype=np.float64))[:, labels.incorrect_index]
    if missing:
        label_probs[missing, labels.keep_index] = 1.0
    return label_probs, error_probs


def predict_tags(
    batch_words: Sequence[Sequence[str]],
    predict: Predict,
    tokenizer,
    labels: GectorLabels,
    *,
    keep_confidence: float = 0.0,
    min_error_prob: float = 0.0,
    add_special_tokens: bool = True,
    max_length: int = 128,
    pad_to_length: Optional[int] = None,
    batch_size: int = 32,
) -> list[list[str]]:
    """Tags for each sentence's words, running `predict` on chunks of `batch_size` sentences."""
    tags: list[list[str]] = []
    for start in range(0, len(batch_words), max(1, batch_size)):
        chunk = batch_words[start:start + max(1, batch_size)]
        encoded = encode_words(tokenizer, chunk, add_special_tokens=add_special_tokens,
                               max_length=max_length, pad_to_length=pad_to_length)
        logits_labels, logits_d = predict(encoded.input_ids, encoded.attention_mask)
        logits_labels, logits_d = np.asarray(logits_labels), np.asarray(logits_d)
        expected = (len(chunk), encoded.input_ids.shape[1])
        if logits_labels.shape[:2] != expected or logits_d.shape[:2] != expected:
            raise ValueError(f"predict returned logits {logits_labels.shape} and {logits_d.shape}, "
                             f"expected [{expected[0]}, {expected[1]}, ...]")
        for row, positions in enumerate(encoded.first_positions):
            label_probs, error_probs = word_probabilities(logits_labels[row], logits_d[row], positions, labels)
            tags.append(choose_tags(label_probs, error_probs, labels,
                                    keep_confidence=keep_confidence, min_error_prob=min_error_prob))
    return tags


def correct_sentences(
    sentences: Sequence[str],
    predict: Predict,
    tokenizer,
    labels: GectorLabels,
    *,
    iterations: int = 5,
    keep_confidence: float = 0.0,
    min_error_prob: float = 0.0,
    verb_forms: Optional[VerbForms] = None,
    add_special_tokens: bool = True,
    max_length: int = 128,
    pad_to_length: Optional[int] = None,
    batch_size: int = 32,
) -> list[str]:
    """Corrected sentences (words re-joined by single spaces); empty sentences come back as given."""
    states = [[START_TOKEN] + text.split() for text in sentences]
    seen = [{tuple(words)} for words in states]
    active = [i for i, words in enumerate(states) if len(words) > 1]
    for _ in range(max(0, iterations)):
        if not active:
            break
        all_tags = predict_tags(
            [states[i] for i in active], predict, tokenizer, labels,
            keep_confidence=keep_confidence, min_error_prob=min_error_prob,
            add_special_tokens=add_special_tokens, max_length=max_length,
            pad_to_length=pad_to_length, batch_size=batch_size,
        )
        still_changing = []
        for i, tags in zip(active, all_tags):
            if all(tag in NO_EDIT_TAGS for tag in tags):
                continue
            edited = apply_tags(states[i], tags, verb_forms)
            if edited == states[i]:
                continue
            states[i] = edited
            if tuple(edited) not in seen[i]:
                seen[i].add(tuple(edited))
                still_changing.append(i)
        active = still_changing
    return [
        " ".join(words[1:]) if len(words) > 1 or text.split() else text
        for text, words in zip(sentences, states)
    ]
