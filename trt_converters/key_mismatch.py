"""What to say when a checkpoint's tensor names do not match the model class's.

`--no-strict` only helps when most tensors load: with a small fraction it would serve random weights.
Then the useful facts are which prefix maps the checkpoint's names onto the class's (`bert.` saved where
the class has `model.bert.`) and, for a Hugging Face folder, the config that loads its keys as saved.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

# --no-strict is suggested only when at least this fraction (most) of the class's tensors is in the checkpoint
MOST_LOAD = 0.5
HF_CLASSIFIER_CONFIG = "configs/hf_sequence_classification.yaml"


def _prefixes(keys: list[str], depth: int = 3) -> list[str]:
    counts: Counter = Counter()
    for key in keys:
        parts = key.split(".")
        for size in range(1, min(depth, len(parts) - 1) + 1):
            counts[".".join(parts[:size]) + "."] += 1
    return [""] + [prefix for prefix, _ in counts.most_common(12)]


def best_prefix_map(model_keys: list[str], checkpoint_keys: list[str]) -> tuple[str, str, int]:
    """(checkpoint prefix, class prefix, tensors that match once the one is replaced by the other)."""
    wanted = set(model_keys)
    best = ("", "", len(wanted & set(checkpoint_keys)))
    for saved in _prefixes(checkpoint_keys):
        for expected in _prefixes(model_keys):
            if saved == expected:
                continue
            mapped = {expected + key[len(saved):] for key in checkpoint_keys if key.startswith(saved)}
            count = len(mapped & wanted)
            if count > best[2]:
                best = (saved, expected, count)
    return best


def _hf_architecture(checkpoint_dir: Path | None) -> str | None:
    config = Path(checkpoint_dir) / "config.json" if checkpoint_dir else None
    if config is None or not config.is_file():
        return None
    try:
        architectures = json.loads(config.read_text(encoding="utf-8")).get("architectures") or []
    except (OSError, ValueError, AttributeError):
        return None
    return architectures[0] if architectures and isinstance(architectures[0], str) else None


def mismatch_advice(model_keys: list[str], checkpoint_keys: list[str], checkpoint_dir: Path | None) -> tuple[str, bool]:
    """(sentences to add to the mismatch error, whether most tensors would load as named)."""
    loading = len(set(model_keys) & set(checkpoint_keys))
    most_load = bool(model_keys) and loading >= MOST_LOAD * len(model_keys)
    if most_load:
        return "", True
    text = f"Only {loading} of the class's {len(model_keys)} tensors are in the checkpoint under the same names. "
    saved, expected, mapped = best_prefix_map(model_keys, checkpoint_keys)
    if mapped > loading:
        text += (f"With the checkpoint's {saved or '(no prefix)'!r} read as the class's {expected or '(no prefix)'!r} "
                 f"{mapped} would load: the checkpoint was saved from another wrapper of this network. ")
    architecture = _hf_architecture(checkpoint_dir)
    if architecture:
        text += f"Its config.json names {architecture}: "
        text += (f"--config {HF_CLASSIFIER_CONFIG} loads Hugging Face *ForSequenceClassification folders as saved. "
                 if architecture.endswith("ForSequenceClassification")
                 else "use a model script whose class has the same module names. ")
    return text, False
