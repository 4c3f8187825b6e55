"""The verb-form dictionary GECToR's `$TRANSFORM_VERB_<FROM>_<TO>` tags look words up in.

File format (Grammarly's public `verb-form-vocab.txt`): one pair a line, `word_form:TAG1_TAG2`,
e.g. `go_goes:VB_VBZ` meaning "go" tagged VB becomes "goes" as VBZ. As in the public
implementations, the first line for a (word, TAG1, TAG2) key wins. Malformed lines raise ValueError.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

VerbForms = Mapping[str, str]  # "word_TAG1_TAG2" -> target word


def parse_verb_forms(text: str, *, source: str = "verb forms") -> dict[str, str]:
    forms: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        words, sep, tags = line.partition(":")
        word_parts, tag_parts = words.split("_"), tags.split("_")
        if not sep or len(word_parts) != 2 or len(tag_parts) != 2 or not all(word_parts + tag_parts):
            raise ValueError(f"{source}: line {number} {raw!r} is not 'word_form:TAG1_TAG2' "
                            "(the format of GECToR's verb-form-vocab.txt); fix or remove that line")
        key = f"{word_parts[0]}_{tag_parts[0]}_{tag_parts[1]}"
        forms.setdefault(key, word_parts[1])
    return forms


def load_verb_forms(path: "str | Path") -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"verb-form dictionary {path} not found: pass GECToR's verb-form-vocab.txt "
                        "(lines 'word_form:TAG1_TAG2') or leave verb_forms_path unset")
    return parse_verb_forms(path.read_text(encoding="utf-8"), source=str(path))
