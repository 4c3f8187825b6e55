"""GECToR checkpoint formats: the Hugging Face format (gotutiyan/gector) and Grammarly's original
AllenNLP checkpoints (e.g. `roberta_1_gectorv2.th` with `data/output_vocabulary/`).

Target layout (what `model_scripts/gector.py:GectorModel` holds, same as gotutiyan's `GECToR`):
    bert.*               transformer encoder without pooler; word embeddings have one extra row
                         for the `$START` token
    label_proj_layer.*   Linear(hidden, n_labels)   n_labels = len(label2id) - 1 (no <PAD> row)
    d_proj_layer.*       Linear(hidden, 2)          rows: $CORRECT, $INCORRECT

Grammarly's AllenNLP layout and what converting it does:
    text_field_embedder.token_embedder_bert.bert_model.*  -> bert.*   (pooler, position_ids dropped)
    tag_labels_projection_layer._module.*  -> label_proj_layer.*  the @@PADDING@@ row is removed;
        the other rows keep the order of `labels.txt` (one label per line, line i = row i), with
        @@UNKNOWN@@ named <OOV>, as gotutiyan's `from_official_pretrained` orders them
    tag_detect_projection_layer._module.*  -> d_proj_layer.*  only the CORRECT, INCORRECT rows kept
    Checkpoints trained with special_tokens_fix=0 (e.g. `bert_0_gectorv2.th`) have no `$START`
    embedding row: a zero row is appended, as gotutiyan does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch

from trt_converters.errors import UserError
from trt_converters.serving_runtime.checkpoint_keys import is_allennlp_state_dict, rename_allennlp_keys

PAD_LABEL, OOV_LABEL = "<PAD>", "<OOV>"
ALLENNLP_PADDING, ALLENNLP_UNKNOWN = "@@PADDING@@", "@@UNKNOWN@@"
DETECT_LABELS = ("$CORRECT", "$INCORRECT")

# Architectures of the encoders public GECToR checkpoints name in config.json's `model_id`
# (facts from those models' config.json files), so the network can be built offline.
_ROBERTA = dict(model_type="roberta", vocab_size=50265, max_position_embeddings=514,
                type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2)
_BERT_CASED = dict(model_type="bert", vocab_size=28996, max_position_embeddings=512,
                   type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0)
_DEBERTA_V3 = dict(model_type="deberta-v2", vocab_size=128100, max_position_embeddings=512,
                   type_vocab_size=0, layer_norm_eps=1e-7, pad_token_id=0, relative_attention=True,
                   max_relative_positions=-1, position_buckets=256, norm_rel_ebd="layer_norm",
                   share_att_key=True, pos_att_type=["p2c", "c2p"], position_biased_input=False)
_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
_LARGE = dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
KNOWN_ENCODERS: dict[str, dict] = {
    "roberta-base": {**_ROBERTA, **_BASE},
    "FacebookAI/roberta-base": {**_ROBERTA, **_BASE},
    "roberta-large": {**_ROBERTA, **_LARGE},
    "FacebookAI/roberta-large": {**_ROBERTA, **_LARGE},
    "bert-base-cased": {**_BERT_CASED, **_BASE},
    "google-bert/bert-base-cased": {**_BERT_CASED, **_BASE},
    "bert-large-cased": {**_BERT_CASED, **_LARGE},
    "google-bert/bert-large-cased": {**_BERT_CASED, **_LARGE},
    "microsoft/deberta-v3-base": {**_DEBERTA_V3, **_BASE},
    "microsoft/deberta-v3-large": {**_DEBERTA_V3, **_LARGE},
}


def read_allennlp_vocabulary(vocab_dir: Path) -> tuple[list[str], list[str]]:
    """`labels.txt` and `d_tags.txt` (if present) of an AllenNLP `output_vocabulary` folder."""
    vocab_dir = Path(vocab_dir)
    labels_file = vocab_dir / "labels.txt"
    if not labels_file.is_file():
        raise UserError(f"GECToR vocabulary {labels_file} not found: pass the folder holding labels.txt "
                        "(Grammarly's data/output_vocabulary)")
    labels = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    d_tags_file = vocab_dir / "d_tags.txt"
    d_tags = ["CORRECT", "INCORRECT", ALLENNLP_UNKNOWN, ALLENNLP_PADDING]
    if d_tags_file.is_file():
        d_tags = [line.strip() for line in d_tags_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    return labels, d_tags


def label_rows(labels: list[str]) -> tuple[list[int], list[str]]:
    """Rows of the official label head to keep and their names in the converted model."""
    rows = [i for i, name in enumerate(labels) if name != ALLENNLP_PADDING]
    names = [OOV_LABEL if labels[i] == ALLENNLP_UNKNOWN else labels[i] for i in rows]
    return rows, names


def detect_rows(d_tags: list[str]) -> list[int]:
    """Rows of the official detection head for CORRECT and INCORRECT, in that order."""
    bare = [tag.lstrip("$") for tag in d_tags]
    missing = [t for t in ("CORRECT", "INCORRECT") if t not in bare]
    if missing:
        raise UserError(f"d_tags.txt lacks {missing}: it must list CORRECT and INCORRECT")
    return [bare.index("CORRECT"), bare.index("INCORRECT")]


def gector_hf_config(label_names: list[str], model_id: Optional[str], encoder_config: Optional[dict]) -> dict:
    """A config.json in gotutiyan's GECToRConfig format (+ `encoder_config` when given)."""
    label2id = {name: i for i, name in enumerate(label_names)}
    label2id[PAD_LABEL] = len(label2id)
    config = {
        "model_id": model_id,
        "label2id": label2id,
        "id2label": {str(i): name for name, i in label2id.items()},
        "d_label2id": {DETECT_LABELS[0]: 0, DETECT_LABELS[1]: 1, PAD_LABEL: 2},
        "label_pad_token": PAD_LABEL,
        "label_oov_token": OOV_LABEL,
        "d_pad_token": PAD_LABEL,
        "keep_label": "$KEEP",
        "correct_label": DETECT_LABELS[0],
        "incorrect_label": DETECT_LABELS[1],
        "is_official_model": True,
    }
    if encoder_config:
        config["encoder_config"] = dict(encoder_config)
    return config


def convert_allennlp_checkpoint(
    checkpoint: Path,
    vocab_dir: Path,
    out_dir: Path,
    model_id: Optional[str] = None,
    encoder_config: Optional[dict] = None,
) -> Path:
    """Write `out_dir/model.pt` (Hugging Face GECToR keys) and `out_dir/config.json`.

    Head rows are chosen by name from the vocabulary files, so any line order works. Give
    `model_id` (e.g. "roberta-base") or `encoder_config` (transformers config fields incl.
    `model_type`) so the encoder can be built offline. Returns `out_dir`.
    """
    if not Path(checkpoint).is_file():
        raise UserError(f"GECToR checkpoint {checkpoint} not found: pass the .th file (e.g. roberta_1_gectorv2.th)")
    if model_id is None and encoder_config is None:
        raise UserError("GECToR conversion needs the encoder: pass model_id (e.g. roberta-base) or encoder_config")
    if model_id is not None and encoder_config is None and model_id not in KNOWN_ENCODERS:
        raise UserError(f"unknown GECToR encoder {model_id!r}: pass encoder_config "
                        f"or one of {sorted(KNOWN_ENCODERS)}")
    labels, d_tags = read_allennlp_vocabulary(vocab_dir)
    state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if not is_allennlp_state_dict(state_dict):
        raise UserError(f"{checkpoint} has no AllenNLP GECToR keys (text_field_embedder.*): "
                        "is it already in the Hugging Face format?")
    state_dict = rename_allennlp_keys(state_dict)
    keep_labels, label_names = label_rows(labels)
    keep_detect = detect_rows(d_tags)
    if state_dict["label_proj_layer.weight"].shape[0] != len(labels):
        raise UserError(f"label head has {state_dict['label_proj_layer.weight'].shape[0]} rows but "
                        f"labels.txt lists {len(labels)} labels: use the vocabulary the checkpoint was trained with")
    for part in ("weight", "bias"):
        state_dict[f"label_proj_layer.{part}"] = state_dict[f"label_proj_layer.{part}"][keep_labels].clone()
        state_dict[f"d_proj_layer.{part}"] = state_dict[f"d_proj_layer.{part}"][keep_detect].clone()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state_dict, out_dir / "model.pt")
    config = gector_hf_config(label_names, model_id, encoder_config)
    (out_dir / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    return out_dir


def encoder_kwargs_from_hf_config(hf_config: dict, config_dir: Optional[Path] = None) -> dict:
    """Encoder architecture named by a GECToR config.json: `encoder_config`, else the config.json of a local
    `model_id` folder (gotutiyan's training writes the path it was given; relative paths are tried against
    `config_dir`, the checkpoint's folder, then the working directory), else a known `model_id`."""
    model_id = hf_config.get("model_id")
    local = _local_encoder_config(model_id, config_dir) if isinstance(model_id, str) else None
    if isinstance(hf_config.get("encoder_config"), dict):
        kwargs = dict(hf_config["encoder_config"])
    elif local is not None:
        kwargs = local
    elif model_id in KNOWN_ENCODERS:
        kwargs = dict(KNOWN_ENCODERS[model_id])
    else:
        return {}
    if "model_type" in kwargs:
        kwargs["encoder_type"] = kwargs.pop("model_type")
    return kwargs


# config.json fields that describe the file, not the network
_ENCODER_FILE_FIELDS = ("architectures", "transformers_version", "_name_or_path", "torch_dtype", "auto_map")


def _local_encoder_config(model_id: str, config_dir: Optional[Path]) -> Optional[dict]:
    candidates = [Path(model_id)]
    if config_dir is not None and not Path(model_id).is_absolute():
        candidates.insert(0, Path(config_dir) / model_id)
    for folder in candidates:
        path = folder / "config.json"
        if path.is_file():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except json.JSONDecodeError as exc:
                raise UserError(f"{path} (the GECToR encoder named by model_id) is not valid JSON "
                                f"({exc.msg})") from None
            return {k: v for k, v in data.items() if k not in _ENCODER_FILE_FIELDS}
    return None


def head_sizes_from_hf_config(hf_config: dict) -> dict:
    """`num_labels`/`num_detect_labels` (head rows) from label2id/d_label2id, minus their <PAD>."""
    sizes = {}
    label2id = hf_config.get("label2id") or {}
    if label2id:
        pad = hf_config.get("label_pad_token", PAD_LABEL)
        sizes["num_labels"] = len(label2id) - (1 if pad in label2id else 0)
    d_label2id = hf_config.get("d_label2id") or {}
    if d_label2id:
        pad = hf_config.get("d_pad_token", PAD_LABEL)
        sizes["num_detect_labels"] = len(d_label2id) - (1 if pad in d_label2id else 0)
    return sizes


def main(argv: Optional[list[str]] = None) -> None:
    """python -m trt_converters.text.gector_checkpoint CHECKPOINT VOCAB_DIR OUT_DIR --model-id roberta-base"""
    import argparse

    parser = argparse.ArgumentParser(description="Convert a Grammarly AllenNLP GECToR checkpoint to the "
                                     "Hugging Face GECToR layout (model.pt + config.json).")
    parser.add_argument("checkpoint", type=Path, help="e.g. roberta_1_gectorv2.th")
    parser.add_argument("vocab_dir", type=Path, help="folder with labels.txt (and d_tags.txt)")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model-id", help=f"encoder, one of {sorted(KNOWN_ENCODERS)}")
    parser.add_argument("--encoder-config", type=Path, help="the encoder's config.json (other encoders)")
    args = parser.parse_args(argv)
    encoder_config = None
    if args.encoder_config is not None:
        encoder_config = json.loads(args.encoder_config.read_text(encoding="utf-8"))
    try:
        out = convert_allennlp_checkpoint(args.checkpoint, args.vocab_dir, args.out_dir,
                                          model_id=args.model_id, encoder_config=encoder_config)
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {out / 'model.pt'} and {out / 'config.json'}")


if __name__ == "__main__":
    main()
