"""GECToR decoding (gotutiyan/gector's predict semantics): tag choice and thresholds, every tag
family, tokenization alignment, iterations."""

import numpy as np
import pytest

from tests.text.conftest import GECTOR_LABELS, gector_config
from trt_converters.serving_runtime.gector_decoding import (
    Decoding,
    GectorLabels,
    choose_label_ids,
    correct_sentences,
    edit_words,
    encode_words,
    first_token_positions,
    transform_word,
    word_mask,
)
from trt_converters.serving_runtime.verb_forms import load_verb_forms, parse_verb_forms

LABELS = GectorLabels.from_config(gector_config())
N = len(GECTOR_LABELS) - 1  # label logits have no <PAD> column
VERBS = parse_verb_forms("go_goes:VB_VBZ\ngo_went:VB_VBZ\nhave_has:VB_VBZ\n")


def logits_for(*tags_and_probs):
    """[tokens, N] logits whose softmax puts `p` on the tag and spreads the rest evenly."""
    rows = []
    for tag, p in tags_and_probs:
        row = np.full(N, (1.0 - p) / (N - 1))
        row[GECTOR_LABELS.index(tag)] = p
        rows.append(np.log(row))
    return np.array(rows, dtype=np.float32)


def detect(*p_incorrect):
    return np.log(np.array([[1 - p, p] for p in p_incorrect], dtype=np.float32))


def choose(logits, error, mask=None, **thresholds):
    mask = np.ones(len(logits), dtype=np.float32) if mask is None else np.asarray(mask, dtype=np.float32)
    return [GECTOR_LABELS[i] for i in choose_label_ids(logits, detect(*error), mask, LABELS, **thresholds)]


# -- label vocabulary ------------------------------------------------------------------------
def test_labels_from_config_use_label2id_order_and_fixed_detection_columns():
    config = gector_config()
    config["d_label2id"] = {"$INCORRECT": 0, "$CORRECT": 1, "<PAD>": 2}  # ignored, as by the reference
    labels = GectorLabels.from_config(config)
    assert labels.id2label[labels.keep_index] == "$KEEP"
    assert labels.incorrect_index == 1
    assert labels.id2label[5] == "$REPLACE_have"
    assert [GECTOR_LABELS[i] for i in labels.no_correction_ids()] == ["$KEEP", "<OOV>", "<PAD>"]


def test_label_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"\$KEEP"):
        GectorLabels.from_config(gector_config(labels=["$DELETE", "<PAD>"]))
    with pytest.raises(ValueError, match="label2id"):
        GectorLabels.from_config({"d_label2id": {}})


# -- thresholds ------------------------------------------------------------------------------
def test_argmax_picks_each_tokens_tag():
    logits = logits_for(("$KEEP", 0.9), ("$REPLACE_have", 0.6), ("$DELETE", 0.5))
    assert choose(logits, [0.1, 0.9, 0.8]) == ["$KEEP", "$REPLACE_have", "$DELETE"]


def test_keep_confidence_is_added_to_keep_probability():
    logits = logits_for(("$REPLACE_have", 0.5))
    keep = (1.0 - 0.5) / (N - 1)
    assert choose(logits, [0.9], keep_confidence=0.5 - keep - 0.01) == ["$REPLACE_have"]
    assert choose(logits, [0.9], keep_confidence=0.5 - keep + 0.01) == ["$KEEP"]


def test_sentence_left_unchanged_when_max_error_probability_over_words_is_below_threshold():
    logits = logits_for(("$KEEP", 0.9), ("$REPLACE_have", 0.9), ("$DELETE", 0.9))
    assert choose(logits, [0.1, 0.49, 0.3], min_error_prob=0.5) == ["$KEEP"] * 3
    assert choose(logits, [0.1, 0.5, 0.3], min_error_prob=0.5) == ["$KEEP", "$REPLACE_have", "$DELETE"]
    # Only first sub-tokens of words count: a high error probability elsewhere does not.
    assert choose(logits, [0.1, 0.4, 0.9], mask=[1, 1, 0], min_error_prob=0.5) == ["$KEEP"] * 3


def test_token_with_low_top_tag_probability_is_kept():
    logits = logits_for(("$REPLACE_have", 0.45), ("$DELETE", 0.7))
    assert choose(logits, [0.9, 0.9], min_error_prob=0.5) == ["$KEEP", "$DELETE"]


def test_word_mask_leaves_out_start_when_it_begins_the_row():
    # with special tokens: <s> $START w1 w1' w2 </s> ; without: $START w1 w1' w2
    assert word_mask([None, 0, 1, 1, 2, None]).tolist() == [0, 1, 1, 0, 1, 0]
    assert word_mask([0, 1, 1, 2]).tolist() == [0, 1, 0, 1]
    assert first_token_positions([0, 1, 1, 2]) == [0, 1, 3]
    assert first_token_positions([None, 0, 2, 2, None, None]) == [1, 2]  # word 1 has no token


# -- tags ------------------------------------------------------------------------------------
def edit(words, tags, verbs=None):
    return " ".join(edit_words(["$START"] + words.split(" "), ["$KEEP"] + tags, verbs))


@pytest.mark.parametrize("words, tags, expected", [
    ("I has apple", ["$KEEP", "$REPLACE_have", "$KEEP"], "I have apple"),
    ("I have apple", ["$KEEP", "$APPEND_an", "$KEEP"], "I have an apple"),
    ("I have the the apple", ["$KEEP", "$KEEP", "$KEEP", "$DELETE", "$KEEP"], "I have the apple"),
    ("some where", ["$MERGE_SPACE", "$KEEP"], "somewhere"),
    ("well known", ["$MERGE_HYPHEN", "$KEEP"], "well-known"),
    ("a well-known fact", ["$KEEP", "$TRANSFORM_SPLIT_HYPHEN", "$KEEP"], "a well known fact"),
    ("a--b", ["$TRANSFORM_SPLIT_HYPHEN"], "a  b"),  # an empty word between the hyphens
    ("two cat", ["$KEEP", "$TRANSFORM_AGREEMENT_PLURAL"], "two cats"),
    ("one cats", ["$KEEP", "$TRANSFORM_AGREEMENT_SINGULAR"], "one cat"),
    ("a b", ["$TRANSFORM_AGREEMENT_SINGULAR", "$KEEP"], " b"),  # one letter: an empty word
    ("he go", ["$KEEP", "$TRANSFORM_VERB_VB_VBZ"], "he goes"),
    ("some where the", ["$MERGE_SPACE", "$DELETE", "$KEEP"], "somethe"),  # merge skips a deleted word
    ("end here", ["$KEEP", "$MERGE_SPACE"], "end here $MERGE_SPACE"),  # nothing to merge with: kept as text
    ("end here", ["$MERGE_SPACE", "$DELETE"], "end$DELETE"),
    ("a b c", ["$KEEP", "$KEEP"], "a b c"),  # words past the tags (truncated) are kept
    ("x y", ["<OOV>", "<PAD>"], "x y"),
])
def test_tag_families(words, tags, expected):
    assert edit(words, tags, VERBS) == "$START " + expected


@pytest.mark.parametrize("tag, word, expected", [
    ("$TRANSFORM_CASE_LOWER", "HeLLo", "hello"),
    ("$TRANSFORM_CASE_UPPER", "nasa", "NASA"),
    ("$TRANSFORM_CASE_CAPITAL", "hELLO", "Hello"),
    ("$TRANSFORM_CASE_CAPITAL_1", "iphone", "iPhone"),
    ("$TRANSFORM_CASE_CAPITAL_1", "i", "i"),
    ("$TRANSFORM_CASE_UPPER_-1", "pdfs", "pdfs"),  # not a transform the reference knows: unchanged
])
def test_case_transforms(tag, word, expected):
    assert edit(word, [tag]) == "$START " + expected


def test_verb_transform_without_dictionary_or_unknown_word_leaves_word():
    assert transform_word("go", "$TRANSFORM_VERB_VB_VBZ") is None
    assert edit("he go", ["$KEEP", "$TRANSFORM_VERB_VB_VBZ"]) == "$START he go"
    assert edit("he run", ["$KEEP", "$TRANSFORM_VERB_VB_VBZ"], VERBS) == "$START he run"


def test_start_token_takes_only_append():
    assert edit_words(["$START", "cat"], ["$APPEND_The", "$KEEP"]) == ["$START", "The", "cat"]
    for tag in ("$DELETE", "$REPLACE_a", "$MERGE_SPACE", "$TRANSFORM_CASE_LOWER"):
        assert edit_words(["$START", "cat"], [tag, "$KEEP"]) == ["$START", "cat"]


def test_tags_pair_with_words_in_order():
    # The empty word (two spaces) has no token, so no tag of its own: the tags of $START, a, b, c pair
    # with $START, a, "", b, so the $DELETE meant for b removes the empty word, and c is past the tags.
    tags = ["$KEEP", "$KEEP", "$DELETE", "$KEEP"]
    assert edit_words(["$START", "a", "", "b", "c"], tags) == ["$START", "a", "b", "c"]


def test_verb_form_file_first_entry_wins_and_bad_lines_raise(tmp_path):
    assert VERBS["go_VB_VBZ"] == "goes"
    path = tmp_path / "verb-form-vocab.txt"
    path.write_text("go_goes:VB_VBZ\nbroken line\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 2"):
        load_verb_forms(path)
    with pytest.raises(ValueError, match="not found"):
        load_verb_forms(tmp_path / "nope.txt")


# -- tokenization ----------------------------------------------------------------------------
def test_encode_words_marks_first_sub_tokens(minilm_tokenizer):
    words = ["$START", "unbelievably", "good"]
    with_special = encode_words(minilm_tokenizer, [words, ["$START", "ok"]], max_length=32)
    tokens = minilm_tokenizer.convert_ids_to_tokens(with_special.input_ids[0].tolist())
    positions = first_token_positions(with_special.word_ids[0])
    assert tokens[0] == "[CLS]" and positions[0] == 1 and len(positions) == 3
    assert not tokens[positions[1]].startswith("##") and tokens[positions[2]] == "good"
    assert with_special.input_ids.shape == with_special.attention_mask.shape
    assert with_special.attention_mask[1].sum() < with_special.attention_mask[0].sum()  # dynamic padding

    plain = encode_words(minilm_tokenizer, [words], add_special_tokens=False, max_length=32, pad_to_length=16)
    assert plain.input_ids.shape == (1, 16)
    assert first_token_positions(plain.word_ids[0])[0] == 0
    assert minilm_tokenizer.cls_token_id not in plain.input_ids[0].tolist()

    truncated = encode_words(minilm_tokenizer, [words], max_length=4)
    assert truncated.input_ids.shape[1] == 4 and len(first_token_positions(truncated.word_ids[0])) < 3


# -- iterative correction --------------------------------------------------------------------
class RuleTagger:
    """A fake model: tags each word by a rule on its first sub-token; records the batch sizes."""

    def __init__(self, tokenizer, rules):
        self.tokenizer, self.rules, self.batches = tokenizer, rules, []

    def __call__(self, input_ids, attention_mask):
        self.batches.append(input_ids.shape[0])
        logits = np.zeros(input_ids.shape + (N,), dtype=np.float32)
        logits[..., LABELS.keep_index] = 5.0
        for (b, t), token_id in np.ndenumerate(input_ids):
            tag = self.rules.get(self.tokenizer.convert_ids_to_tokens(int(token_id)))
            if tag:
                logits[b, t, GECTOR_LABELS.index(tag)] = 10.0
        logits_d = np.zeros(input_ids.shape + (2,), dtype=np.float32)
        logits_d[..., 1] = 1.0
        return logits, logits_d


def test_iterations_rerun_only_sentences_with_corrections(minilm_tokenizer):
    tagger = RuleTagger(minilm_tokenizer, {"go": "$TRANSFORM_VERB_VB_VBZ", "has": "$REPLACE_have"})
    sentences = ["she go home", "i has it", "all fine here", ""]
    out = correct_sentences(sentences, tagger, minilm_tokenizer, LABELS, Decoding(batch_size=8), verb_forms=VERBS)
    assert out == ["she goes home", "i have it", "all fine here", ""]
    assert tagger.batches == [4, 2]  # round 2 re-checks only the two edited sentences


def test_iterations_run_while_a_correction_tag_is_predicted(minilm_tokenizer):
    grow = RuleTagger(minilm_tokenizer, {"good": "$APPEND_,"})
    assert correct_sentences(["good"], grow, minilm_tokenizer, LABELS, Decoding(iterations=3)) == ["good , , ,"]
    assert len(grow.batches) == 3

    # The reference has no cycle check: a -> an -> a -> ... for every round.
    cycle = RuleTagger(minilm_tokenizer, {"a": "$REPLACE_an", "an": "$REPLACE_a"})
    assert correct_sentences(["a"], cycle, minilm_tokenizer, LABELS, Decoding(iterations=3)) == ["an"]
    assert correct_sentences(["a"], cycle, minilm_tokenizer, LABELS, Decoding(iterations=4)) == ["a"]
    # A correction tag that changes nothing ($DELETE on $START) still costs a round each time.
    stuck = RuleTagger(minilm_tokenizer, {"[CLS]": "$KEEP", "$": "$DELETE"})
    stuck.batches.clear()
    assert correct_sentences(["fine"], stuck, minilm_tokenizer, LABELS, Decoding(iterations=2)) == ["fine"]
    assert len(stuck.batches) == 2


def test_thresholds_and_batching_reach_the_model(minilm_tokenizer):
    tagger = RuleTagger(minilm_tokenizer, {"has": "$REPLACE_have"})
    # Detection says P(incorrect) = sigmoid(1) ~ 0.73 everywhere: below 0.8 nothing changes.
    assert correct_sentences(["i has"], tagger, minilm_tokenizer, LABELS, Decoding(min_error_prob=0.8)) == ["i has"]
    assert correct_sentences(["i has"], tagger, minilm_tokenizer, LABELS, Decoding(keep_confidence=1.0)) == ["i has"]
    tagger.batches.clear()
    out = correct_sentences(["i has"] * 5, tagger, minilm_tokenizer, LABELS, Decoding(batch_size=2, pad_to_length=16))
    assert out == ["i have"] * 5
    assert tagger.batches[:3] == [2, 2, 1]
