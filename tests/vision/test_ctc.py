import numpy as np
import pytest

from trt_converters.serving_runtime.ctc import ctc_collapse, ctc_greedy_decode, ctc_labels


def one_hot_logits(path, num_classes):
    """Logits whose argmax at step t is path[t] (other classes get distinct lower scores)."""
    logits = np.tile(-np.arange(num_classes, dtype=np.float32) * 0.01, (len(path), 1))
    logits[np.arange(len(path)), path] = 5.0
    return logits


def test_labels_insert_blank_where_configured():
    assert ctc_labels("abc", 0) == ["", "a", "b", "c"]
    assert ctc_labels("abc", 3) == ["a", "b", "c", ""]
    assert ctc_labels(["th", "e"], 1) == ["th", "", "e"]


@pytest.mark.parametrize("charset,blank", [("aab", 0), ("", 0), ("abc", 5)])
def test_labels_reject_bad_charset(charset, blank):
    with pytest.raises(ValueError):
        ctc_labels(charset, blank)


def test_collapse_merges_repeats_and_drops_blank():
    assert ctc_collapse([0, 3, 3, 0, 3, 5, 5, 0], blank_index=0) == [3, 3, 5]
    assert ctc_collapse([1, 1, 1], blank_index=1) == []
    assert ctc_collapse([], blank_index=0) == []


def test_greedy_decode_hand_made_logits():
    labels = ctc_labels("helo", 0)  # 1=h 2=e 3=l 4=o
    path = [0, 1, 1, 2, 0, 3, 3, 0, 3, 4, 4, 0]
    assert ctc_greedy_decode(one_hot_logits(path, 5), labels) == ["hello"]


def test_greedy_decode_blank_last_and_batch_lengths():
    labels = ctc_labels("ab", 2)  # 0=a 1=b 2=blank
    rows = np.stack([one_hot_logits([0, 2, 0, 1, 1, 2], 3), one_hot_logits([1, 1, 2, 0, 0, 0], 3)])
    assert ctc_greedy_decode(rows, labels, blank_index=2) == ["aab", "ba"]
    # Padding steps beyond a row's length must not leak characters into its text.
    assert ctc_greedy_decode(rows, labels, blank_index=2, lengths=[3, 2]) == ["aa", "b"]


def test_greedy_decode_checks_class_count():
    with pytest.raises(ValueError, match="classes"):
        ctc_greedy_decode(np.zeros((4, 6)), ctc_labels("abc", 0))
