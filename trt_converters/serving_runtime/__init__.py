"""The code Triton python-backend models written by trt-convert share at serve time.

Pipeline writers copy this whole folder beside each `model.py` they write (as `serving_runtime/`,
see `copy_runtime`), so a served repository needs no trt_converters: every module here imports only
the standard library, numpy and, inside functions, the library its served model declares (Pillow,
tokenizers/transformers, torch), and other modules of this folder by relative import. The
converter and the tests import the same modules from here, so each piece of logic exists once.

    triton_io        initialize() arguments, config parameters, optional inputs, BLS calls, per-request error answers
    batching         one execute() call's requests run in groups of equal shapes, split back per request;
                     the execute() of graph-runtime models (ONNX Runtime, OpenVINO, PyTorch)
    hf_tokenizer     the start of a model that tokenizes with the saved Hugging Face tokenizer
    gector_decoding  GECToR tags -> edits, iterations (gotutiyan/gector's predict semantics)
    verb_forms       the $TRANSFORM_VERB_* dictionary
    ctc, ocr_decoding, ocr_preprocess   CTC and greedy encoder-decoder decoding, line-image input
    images, letterbox, nms              image decoding, YOLOX letterbox and post-processing
    checkpoint_keys, torch_loading      state_dict key fixes and strict loading (PyTorch baseline)
"""

from __future__ import annotations

import shutil
from pathlib import Path

FOLDER_NAME = "serving_runtime"


def copy_runtime(version_dir: Path) -> list[Path]:
    """Copy this package's modules into `<version_dir>/serving_runtime/`; returns the files written."""
    target = Path(version_dir) / FOLDER_NAME
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for source in sorted(Path(__file__).parent.glob("*.py")):
        written.append(Path(shutil.copyfile(source, target / source.name)))
    return written
