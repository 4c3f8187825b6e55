"""GECToR decoding: from a tagger's logits to corrected sentences, independent of the runtime.

The model is reached only through `predict(input_ids, attention_mask) -> (logits_labels, logits_d)`
(numpy int64 [B, T] in; [B, T, n_labels] and [B, T, n_detect] out), so the same decoding runs on
PyTorch, ONNX Runtime, or a Triton BLS model calling the core model by name.

The semantics are those of gotutiyan's `gector` package (PyPI `gector` 1.2.0, `gector/predict.py`
and `GECToR.predict`), the reference implementation of the Hugging Face GECToR checkpoints:
- a sentence is split on single spaces (`text.split(" ")`, so repeated spaces give empty words)
  and `$START` is prepended;
- the words go through the tokenizer with `is_split_into_words=True`, truncated to `max_length`
  tokens, special tokens added except for Grammarly's official checkpoints (`is_official_model`);
- probabilities are softmaxes of the logits at every token; `keep_confidence` is added to the
  `$KEEP` probability before the argmax;
- `min_error_prob`: if the highest `$INCORRECT` probability over the first sub-tokens of the
  words is below it, every tag becomes `$KEEP`; so does a token whose top tag probability is
  below it. The reference's word mask leaves out `$START` when it is the row's first token (no
  special tokens before it), so it then does not count towards that maximum;
- each word that kept at least one token takes the tag of its first sub-token; tags pair with
  the words in order, so a word without tokens (empty) shifts the pairing, and words past the
  tags (truncated) are copied unchanged;
- a sentence whose tags are all `$KEEP`/`<OOV>`/`<PAD>` is finished; the others are edited and
  tagged again, for at most `iterations` rounds;
- edits are applied on the space-joined words, as the reference does: `$MERGE_*` joins with the
  next word over a deleted one, and a `$MERGE_*` or `$DELETE` with nothing after it stays in the
  text; the answer is the words joined by spaces with every "$START " removed.
The label vocabulary is config.json's label2id/id2label (column i of the label logits is label
id i; `<PAD>`, last in label2id, has no column); the detection columns are fixed ($CORRECT 0,
$INCORRECT 1) as in the reference's GECToRConfig, whatever config.json's d_label2id says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Sequence

import numpy as np

from .verb_forms import VerbForms

START_TOKEN = "$START"
KEEP = "$KEEP"
DELETE = "$DELETE"
NO_CORRECTION = ("$KEEP", "<OOV>", "<PAD>")  # tags that leave a sentence finished
DETECT_COLUMNS = {"$CORRECT": 0, "$INCORRECT": 1}

Predict = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]


@dataclass(frozen=True)
class GectorLabels:
    """Label names by id (= column of the label logits) and where `$KEEP`/`$INCORRECT` are."""

    id2label: tuple[str, ...]
    keep_index: int
    incorrect_index: int

    @classmethod
    def from_config(cls, config: Mapping) -> "GectorLabels":
        """From a GECToR config.json; ValueError names what is missing."""
        keep_label = config.get("keep_label", KEEP)
        incorrect_label = config.get("incorrect_label", "$INCORRECT")
        id2label = _labels_by_id(config)
        if keep_label not in id2label:
            raise ValueError(f"GECToR label vocabulary has no {keep_label!r} label: "
                             "use the config.json saved with the checkpoint")
        if incorrect_label not in DETECT_COLUMNS:
            raise ValueError(f"GECToR incorrect_label {incorrect_label!r} is not one of {sorted(DETECT_COLUMNS)}")
        return cls(tuple(id2label), id2label.index(keep_label), DETECT_COLUMNS[incorrect_label])

    def no_correction_ids(self) -> list[int]:
        return [i for i, name in enumerate(self.id2label) if name in NO_CORRECTION]


def _labels_by_id(config: Mapping) -> list[str]:
    if config.get("label2id"):
        by_id = {int(i): str(name) for name, i in config["label2id"].items()}
    elif config.get("id2label"):
        by_id = {int(i): str(name) for i, name in config["id2label"].items()}
    else:
        raise ValueError("GECToR config.json has neither label2id nor id2label: "
                         "use the config.json saved with the checkpoint")
    if sorted(by_id) != list(range(len(by_id))):
        raise ValueError("GECToR label ids in config.json must be 0..N-1 without gaps")
    return [by_id[i] for i in range(len(by_id))]


# -- tokenization ----------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodedBatch:
    input_ids: np.ndarray  # int64 [B, T]
    attention_mask: np.ndarray  # int64 [B, T]
    word_ids: list[list[Optional[int]]]  # per row, per token: its word, None for special/padding tokens


def encode_words(
    tokenizer,
    batch_words: Sequence[Sequence[str]],
    *,
    add_special_tokens: bool = True,
    max_length: int = 128,
    pad_to_length: Optional[int] = None,
) -> EncodedBatch:
    """Tokenize pre-split words, truncated to `max_length`; pad to the longest row, or to `pad_to_length`
    (then also the truncation length: a fixed-length core model).

    The reference pads every row to max_length; padding is masked out, so the tags are the same.
    """
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
    return EncodedBatch(np.asarray(encoding["input_ids"], dtype=np.int64),
                        np.asarray(encoding["attention_mask"], dtype=np.int64),
                        [list(encoding.word_ids(row)) for row in range(len(batch_words))])


def word_mask(word_ids: Sequence[Optional[int]]) -> np.ndarray:
    """1 at the first sub-token of each word, as the reference computes it (its previous word id starts at 0,
    so word 0 is left out when it begins the row)."""
    mask = np.zeros(len(word_ids), dtype=np.float32)
    previous: Optional[int] = 0
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            mask[position] = 1.0
        previous = word
    return mask


def first_token_positions(word_ids: Sequence[Optional[int]]) -> list[int]:
    """Token positions whose tag a word takes: the first sub-token of each word that has one, in order."""
    positions, previous = [], None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous:
            positions.append(position)
        previous = word
    return positions


# -- logits -> tags --------------------------------------------------------------------------
def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def choose_label_ids(
    logits_labels: np.ndarray,
    logits_d: np.ndarray,
    mask: np.ndarray,
    labels: GectorLabels,
    *,
    keep_confidence: float = 0.0,
    min_error_prob: float = 0.0,
) -> np.ndarray:
    """One row: a label id per token from logits [T, n_labels], [T, n_detect] and the word mask [T]."""
    probs = _softmax(np.asarray(logits_labels, dtype=np.float32))
    probs[:, labels.keep_index] += np.float32(keep_confidence)
    ids = probs.argmax(axis=-1)
    error = _softmax(np.asarray(logits_d, dtype=np.float32))[:, labels.incorrect_index]
    if float(np.max(error * mask, initial=0.0)) < min_error_prob:
        ids[:] = labels.keep_index
    ids[probs.max(axis=-1) < min_error_prob] = labels.keep_index
    return ids


@dataclass(frozen=True)
class Decoding:
    """How sentences are tagged and corrected (gotutiyan/gector's predict settings and batching)."""

    iterations: int = 5  # correction rounds at most
    keep_confidence: float = 0.0  # added to the $KEEP probability
    min_error_prob: float = 0.0  # a sentence whose error probability, or a token whose best tag, is below it: kept
    add_special_tokens: bool = True
    max_length: int = 128
    pad_to_length: Optional[int] = None  # None: pad each chunk to its longest sentence
    batch_size: int = 32  # sentences per `predict` call


@dataclass(frozen=True)
class Tagged:
    tags: list[str]  # one per word that kept a token, in order
    finished: bool  # every tag is a no-correction tag


def predict_tags(batch_words: Sequence[Sequence[str]], predict: Predict, tokenizer, labels: GectorLabels,
                 decoding: Decoding = Decoding()) -> list[Tagged]:
    """Tags of each sentence's words, running `predict` on chunks of `decoding.batch_size` sentences."""
    no_correction = set(labels.no_correction_ids())
    tagged: list[Tagged] = []
    step = max(1, decoding.batch_size)
    for start in range(0, len(batch_words), step):
        chunk = batch_words[start:start + step]
        encoded = encode_words(tokenizer, chunk, add_special_tokens=decoding.add_special_tokens,
                               max_length=decoding.max_length, pad_to_length=decoding.pad_to_length)
        logits_labels, logits_d = predict(encoded.input_ids, encoded.attention_mask)
        logits_labels, logits_d = np.asarray(logits_labels), np.asarray(logits_d)
        expected = (len(chunk), encoded.input_ids.shape[1])
        if logits_labels.shape[:2] != expected or logits_d.shape[:2] != expected:
            raise ValueError(f"predict returned logits {logits_labels.shape} and {logits_d.shape}, "
                             f"expected [{expected[0]}, {expected[1]}, ...]")
        if logits_labels.shape[-1] > len(labels.id2label):
            raise ValueError(f"the model gives {logits_labels.shape[-1]} label logits for "
                             f"{len(labels.id2label)} labels in config.json")
        for row, word_ids in enumerate(encoded.word_ids):
            ids = choose_label_ids(logits_labels[row], logits_d[row], word_mask(word_ids), labels,
                                   keep_confidence=decoding.keep_confidence, min_error_prob=decoding.min_error_prob)
            chosen = [int(ids[p]) for p in first_token_positions(word_ids)]
            tagged.append(Tagged([labels.id2label[i] for i in chosen], all(i in no_correction for i in chosen)))
    return tagged


# -- tags -> words ---------------------------------------------------------------------------
def transform_word(word: str, tag: str, verb_forms: Optional[VerbForms] = None) -> Optional[str]:
    """What a `$TRANSFORM_*` tag makes of `word` (words joined by a space for a split); None: unchanged."""
    if tag == "$TRANSFORM_CASE_LOWER":
        return word.lower()
    if tag == "$TRANSFORM_CASE_UPPER":
        return word.upper()
    if tag == "$TRANSFORM_CASE_CAPITAL":
        return word.capitalize()
    if tag == "$TRANSFORM_CASE_CAPITAL_1":
        return word if len(word) <= 1 else word[0] + word[1:].capitalize()
    if tag == "$TRANSFORM_AGREEMENT_PLURAL":
        return word + "s"
    if tag == "$TRANSFORM_AGREEMENT_SINGULAR":
        return word[:-1]
    if tag == "$TRANSFORM_SPLIT_HYPHEN":
        return " ".join(word.split("-"))
    # Any other transform is a verb-form lookup: "$TRANSFORM_VERB_VB_VBZ" looks up "word_VB_VBZ".
    return (verb_forms or {}).get(f"{word}_{tag[len('$TRANSFORM_VERB_'):]}")


def edit_word(word: str, tag: str, verb_forms: Optional[VerbForms] = None) -> str:
    """One word and its tag -> text (edit markers `$DELETE`, `$MERGE_*` are kept for `edit_words`)."""
    if "$APPEND_" in tag:
        return word + " " + tag.replace("$APPEND_", "")
    if word == START_TOKEN or tag in NO_CORRECTION:
        return word
    if "$TRANSFORM_" in tag:
        transformed = transform_word(word, tag, verb_forms)
        return word if transformed is None else transformed
    if "$REPLACE_" in tag:
        return tag.replace("$REPLACE_", "")
    if tag == DELETE:
        return DELETE
    if "$MERGE_" in tag:
        return word + " " + tag
    return word


def edit_words(words: Sequence[str], tags: Sequence[str], verb_forms: Optional[VerbForms] = None) -> list[str]:
    """Edit `words` (starting with `$START`) by the tags paired with them in order; words past the tags stay."""
    pieces: list[str] = []
    for word, tag in zip(words, tags):
        pieces += edit_word(word, tag, verb_forms).split(" ")
    pieces += list(words[len(tags):])
    text = (" ".join(pieces).replace(" $MERGE_HYPHEN ", "-").replace(" $MERGE_SPACE ", "")
            .replace(" $DELETE", "").replace("$DELETE ", ""))
    return text.split(" ")


def sentence_text(words: Sequence[str]) -> str:
    return " ".join(words).replace(START_TOKEN + " ", "")


# -- iterations ------------------------------------------------------------------------------
def correct_sentences(sentences: Sequence[str], predict: Predict, tokenizer, labels: GectorLabels,
                      decoding: Decoding = Decoding(), verb_forms: Optional[VerbForms] = None) -> list[str]:
    """Corrected sentences: tag, edit the sentences that have a correction tag, repeat up to `decoding.iterations`."""
    states = [[START_TOKEN] + text.split(" ") for text in sentences]
    active = list(range(len(states)))
    for _ in range(max(0, decoding.iterations)):
        if not active:
            break
        tagged = predict_tags([states[i] for i in active], predict, tokenizer, labels, decoding)
        still_active = []
        for i, result in zip(active, tagged):
            if not result.finished:
                states[i] = edit_words(states[i], result.tags, verb_forms)
                still_active.append(i)
        active = still_active
    return [sentence_text(words) for words in states]
