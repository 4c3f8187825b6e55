"""The start of a python model that tokenizes text with the Hugging Face tokenizer its writer saved beside it."""

from __future__ import annotations

import os

from .triton_io import model_arguments

TOKENIZER_FOLDER = "tokenizer"  # <version folder>/tokenizer/, written with save_pretrained


def initialize_text_model(args: dict) -> tuple[dict, str, str, object]:
    """(model config, model name, version folder, tokenizer) from the `args` Triton passes to initialize()."""
    from transformers import AutoTokenizer

    config, model_name, folder = model_arguments(args)
    return config, model_name, folder, AutoTokenizer.from_pretrained(os.path.join(folder, TOKENIZER_FOLDER))
