"""GECToR decoding: tag choice thresholds, every tag family, tokenization alignment, iterations."""

import numpy as np
import pytest

from tests.text.conftest import GECTOR_LABELS, gector_config, write_json
from trt_converters.errors import UserError
from trt_converters.text.gector_decoding import (
    GectorLabels,
    apply_tags,
    choose_tags,
    correct_sentences,
    encode_words,
    transform_word,
    word_probabilities,
)
from trt_converters.text.verb_forms import load_verb_forms, parse_verb_forms

LABELS = GectorLabels.from_config(gector_config())
N = len(GECTOR_LABELS) - 1  # label logits have no <PAD> column
VERBS = parse_verb_forms("go_goes:VB_VBZ\ngo_went:VB_VBZ\nhave_has:VB_VBZ\n")


def probs_for(*tags_and_probs):
    """[words, N] probabilities: each word puts `p` on its tag and spreads the rest evenly."""
    rows = []
    for tag, p in tags_and_probs:
        row = np.full(N, (1.0 - p) / (N - 1))
        row[GECTOR_LABELS.index(tag)] = p
        rows.append(row)
    return np.array(rows)


# -- label vocabulary ------------------------------------------------------------------------
def test_labels_from_config_use_label2id_order_and_d_label2id():
    config = gector_config()
    config["d_label2id"] = {"$INCORRECT": 0, "$CORRECT": 1, "<PAD>": 2}
    labels = GectorLabels.from_config(config)
    assert labels.id2label[labels.keep_index] == "$KEEP"
    assert labels.incorrect_index == 0
    assert labels.id2label[5] == "$REPLACE_have"


def test_labels_without_d_label2id_use_the_public_order():
    config = gector_config()
    del config["d_label2id"]
    assert GectorLabels.from_config(config).incorrect_index == 1


def test_labels_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match=r"\$KEEP"):
        GectorLabels.from_config(gector_config(labels=["$DELETE", "<PAD>"]))
    with pytest.raises(UserError, match="label2id"):
        GectorLabels.from_config({"d_label2id": {}})
    with pytest.raises(UserError, match="not found"):
        GectorLabels.from_config_file(tmp_path / "missing.json")
    path = write_json(tmp_path / "config.json", gector_config())
    assert GectorLabels.from_config_file(path) == LABELS


# -- thresholds ------------------------------------------------------------------------------
def test_argmax_picks_each_words_tag():
    probs = probs_for(("$KEEP", 0.9), ("$REPLACE_have", 0.6), ("$DELETE", 0.5))
    assert choose_tags(probs, np.array([0.1, 0.9, 0.8]), LABELS) == ["$KEEP", "$REPLACE_have", "$DELETE"]


def test_keep_confidence_is_added_to_keep_probability():
    probs = probs_for(("$REPLACE_have", 0.5))
    keep = probs[0, LABELS.keep_index]
    assert choose_tags(probs, np.array([0.9]), LABELS, keep_confidence=0.5 - keep - 0.01) == ["$REPLACE_have"]
    assert choose_tags(probs, np.array([0.9]), LABELS, keep_confidence=0.5 - keep + 0.01) == ["$KEEP"]


def test_sentence_left_unchanged_when_max_error_probability_below_threshold():
    probs = probs_for(("$KEEP", 0.9), ("$REPLACE_have", 0.9), ("$DELETE", 0.9))
    assert choose_tags(probs, np.array([0.1, 0.49, 0.3]), LABELS, min_error_prob=0.5) == ["$KEEP"] * 3
    # One word at or above the threshold lets the whole sentence be edited.
    assert choose_tags(probs, np.array([0.1, 0.5, 0.3]), LABELS, min_error_prob=0.5) == [
        "$KEEP", "$REPLACE_have", "$DELETE"]


def test_word_with_low_top_tag_probability_is_kept():
    probs = probs_for(("$REPLACE_have", 0.45), ("$DELETE", 0.7))
    assert choose_tags(probs, np.array([0.9, 0.9]), LABELS, min_error_prob=0.5) == ["$KEEP", "$DELETE"]


def test_word_probabilities_take_the_first_sub_token_and_softmax():
    logits = np.zeros((5, N), dtype=np.float32)
    logits[1, GECTOR_LABELS.index("$DELETE")] = 10.0  # first sub-token of word 1
    logits[2, GECTOR_LABELS.index("$REPLACE_a")] = 10.0  # second sub-token: ignored
    logits_d = np.zeros((5, 2), dtype=np.float32)
    logits_d[1] = [0.0, np.log(3.0)]  # P(incorrect) = 0.75
    label_probs, error_probs = word_probabilities(logits, logits_d, [0, 1, -1], LABELS)
    assert label_probs.shape == (3, N)
    np.testing.assert_allclose(label_probs.sum(axis=1), 1.0)
    assert label_probs[1].argmax() == GECTOR_LABELS.index("$DELETE")
    np.testing.assert_allclose(error_probs, [0.5, 0.75, 0.0])
    assert label_probs[2, LABELS.keep_index] == 1.0  # truncated word: certain $KEEP


# -- tags ------------------------------------------------------------------------------------
def edit(words, tags, verbs=None):
    return apply_tags(["$START"] + words.split(), ["$KEEP"] + tags, verbs)[1:]


@pytest.mark.parametrize("words, tags, expected", [
    ("I has apple", ["$KEEP", "$REPLACE_have", "$KEEP"], "I have apple"),
    ("I have apple", ["$KEEP", "$APPEND_an", "$KEEP"], "I have an apple"),
    ("I have the the apple", ["$KEEP", "$KEEP", "$KEEP", "$DELETE", "$KEEP"], "I have the apple"),
    ("some where", ["$MERGE_SPACE", "$KEEP"], "somewhere"),
    ("well known", ["$MERGE_HYPHEN", "$KEEP"], "well-known"),
    ("a well-known fact", ["$KEEP", "$TRANSFORM_SPLIT_HYPHEN", "$KEEP"], "a well known fact"),
    ("two cat", ["$KEEP", "$TRANSFORM_AGREEMENT_PLURAL"], "two cats"),
    ("one cats", ["$KEEP", "$TRANSFORM_AGREEMENT_SINGULAR"], "one cat"),
    ("he go", ["$KEEP", "$TRANSFORM_VERB_VB_VBZ"], "he goes"),
    ("some where the", ["$MERGE_SPACE", "$DELETE", "$KEEP"], "somethe"),  # merge skips a deleted word
    ("end here", ["$KEEP", "$MERGE_SPACE"], "end here"),  # nothing to merge with
    ("a b c", ["$KEEP", "$KEEP"], "a b c"),  # words past the tags (truncated) are kept
    ("x y", ["<OOV>", "<PAD>"], "x y"),
])
def test_tag_families(words, tags, expected):
    assert " ".join(edit(words, tags, VERBS)) == expected


@pytest.mark.parametrize("tag, word, expected", [
    ("$TRANSFORM_CASE_LOWER", "HeLLo", "hello"),
    ("$TRANSFORM_CASE_UPPER", "nasa", "NASA"),
    ("$TRANSFORM_CASE_CAPITAL", "hELLO", "Hello"),
    ("$TRANSFORM_CASE_CAPITAL_1", "iphone", "iPhone"),
    ("$TRANSFORM_CASE_CAPITAL_1", "i", "i"),
    ("$TRANSFORM_CASE_UPPER_-1", "pdfs", "PDFs"),
])
def test_case_transforms(tag, word, expected):
    assert transform_word(word, tag) == expected
    assert edit(word, [tag]) == [expected]


def test_verb_transform_without_dictionary_or_unknown_word_leaves_word():
    assert edit("he go", ["$KEEP", "$TRANSFORM_VERB_VB_VBZ"]) == ["he", "go"]
    assert edit("he run", ["$KEEP", "$TRANSFORM_VERB_VB_VBZ"], VERBS) == ["he", "run"]


def test_start_token_takes_only_append():
    assert apply_tags(["$START", "cat"], ["$APPEND_The", "$KEEP"]) == ["$START", "The", "cat"]
    for tag in ("$DELETE", "$REPLACE_a", "$MERGE_SPACE", "$TRANSFORM_CASE_LOWER"):
        assert apply_tags(["$START", "cat"], [tag, "$KEEP"]) == ["$START", "cat"]


def test_verb_form_file_first_entry_wins_and_bad_lines_are_user_errors(tmp_path):
    assert VERBS["go_VB_VBZ"] == "goes"
    path = tmp_path / "verb-form-vocab.txt"
    path.write_text("go_goes:VB_VBZ\nbroken line\n", encoding="utf-8")
    with pytest.raises(UserError, match="line 2"):
        load_verb_forms(path)
    with pytest.raises(UserError, match="not found"):
        load_verb_forms(tmp_path / "nope.txt")


# -- tokenization ----------------------------------------------------------------------------
def test_encode_words_marks_first_sub_tokens(minilm_tokenizer):
    words = ["$START", "unbelievably", "good"]
    with_special = encode_words(minilm_tokenizer, [words, ["$START", "ok"]], max_length=32)
    tokens = minilm_tokenizer.convert_ids_to_tokens(with_special.input_ids[0].tolist())
    positions = with_special.first_positions[0]
    assert tokens[0] == "[CLS]" and positions[0] == 1
    assert not tokens[positions[1]].startswith("##") and tokens[positions[2]] == "good"
    assert with_special.input_ids.shape == with_special.attention_mask.shape
    assert with_special.attention_mask[1].sum() < with_special.attention_mask[0].sum()  # dynamic padding

    plain = encode_words(minilm_tokenizer, [words], add_special_tokens=False, max_length=32, pad_to_length=16)
    assert plain.input_ids.shape == (1, 16)
    assert plain.first_positions[0][0] == 0
    assert minilm_tokenizer.cls_token_id not in plain.input_ids[0].tolist()

    truncated = encode_words(minilm_tokenizer, [words], max_length=4)
    assert truncated.first_positions[0][-1] == -1


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


def test_iterations_rerun_only_changed_sentences(minilm_tokenizer):
    tagger = RuleTagger(minilm_tokenizer, {"go": "$TRANSFORM_VERB_VB_VBZ", "has": "$REPLACE_have"})
    sentences = ["she go home", "i has it", "all fine here", ""]
    out = correct_sentences(sentences, tagger, minilm_tokenizer, LABELS, verb_forms=VERBS, batch_size=8)
    assert out == ["she goes home", "i have it", "all fine here", ""]
    assert tagger.batches == [3, 2]  # round 2 re-checks only the two edited sentences


def test_iterations_are_bounded_and_cycles_stop(minilm_tokenizer):
    grow = RuleTagger(minilm_tokenizer, {"good": "$APPEND_,"})
    assert correct_sentences(["good"], grow, minilm_tokenizer, LABELS, iterations=3) == ["good , , ,"]
    assert len(grow.batches) == 3

    cycle = RuleTagger(minilm_tokenizer, {"a": "$REPLACE_an", "an": "$REPLACE_a"})
    assert correct_sentences(["a"], cycle, minilm_tokenizer, LABELS, iterations=10) == ["a"]
    assert len(cycle.batches) == 2


def test_thresholds_and_batching_reach_the_model(minilm_tokenizer):
    tagger = RuleTagger(minilm_tokenizer, {"has": "$REPLACE_have"})
    # Detection says P(incorrect) = sigmoid(1) ~ 0.73 everywhere: below 0.8 nothing changes.
    assert correct_sentences(["i has"], tagger, minilm_tokenizer, LABELS, min_error_prob=0.8) == ["i has"]
    assert correct_sentences(["i has"], tagger, minilm_tokenizer, LABELS, keep_confidence=1.0) == ["i has"]
    tagger.batches.clear()
    out = correct_sentences(["i has"] * 5, tagger, minilm_tokenizer, LABELS, batch_size=2, pad_to_length=16)
    assert out == ["i have"] * 5
    assert tagger.batches[:3] == [2, 2, 1]
