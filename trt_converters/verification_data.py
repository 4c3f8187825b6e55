"""Real samples for verification: `--verify-data`, else a held-back part of `--calib-data`.

`--verify-data` takes what `--calib-data` takes (.npz, a folder of .npy files, a text file with a tokenizer,
a folder of images; calibration.py reads both). Its samples verify every graph (next to the synthetic inputs
for FP32 and FP16; alone for INT8, whose scales are judged on data like their calibration data) and are the
reference runs the FP16/INT8 lowerings judge their candidates on. With only `--calib-data`, its last samples
(HELD_BACK, at most a quarter) are held back from calibration and verify instead, so INT8 is never judged on
the very samples it was calibrated on.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import UserError

HELD_BACK = 8
MAX_VERIFY_SAMPLES = 64  # verification runs PyTorch and each candidate on all of them


@dataclass(frozen=True)
class RealSamples:
    label: str  # for the report and the [verify] line
    input_sets: list  # batches of at most the max batch size
    references: list  # the PyTorch outputs of each batch
    calibration: dict | None  # the calibration data without the held-back samples (from --calib-data only)


def check_verify_source(source: Path, io) -> None:
    """The up-front check of --verify-data (exists, known kind, names every input)."""
    from trt_converters.calibration import check_calibration_source

    with _as_verify_data():
        check_calibration_source(Path(source), io)


@contextlib.contextmanager
def _as_verify_data():
    """Rewords calibration.py's errors for the flag the user gave."""
    try:
        yield
    except UserError as error:
        text = str(error).replace("--calib-data", "--verify-data").replace("calibration data", "verification data")
        raise UserError(text) from None


def _count(data: dict) -> int:
    return len(next(iter(data.values()))) if data else 0


def _batches(data: dict, batch: int) -> list[dict]:
    count = _count(data)
    return [{name: array[start:start + batch] for name, array in data.items()} for start in range(0, count, batch)]


def load_real_samples(io, profiles, *, options, run) -> RealSamples | None:
    """The real verification samples the options name, with their references (`run(inputs) -> outputs`); None
    without --verify-data or an existing --calib-data."""
    from trt_converters.calibration import load_calibration_data

    def read(source: Path) -> dict:
        return load_calibration_data(io, profiles, source=source, samples=None, tokenizer_path=options.tokenizer_path,
                                     image_options=options.image_options)

    calibration = None
    if options.verify_data is not None:
        with _as_verify_data():
            data = read(Path(options.verify_data))
        data = {name: array[:MAX_VERIFY_SAMPLES] for name, array in data.items()}
        label = f"{_count(data)} samples of --verify-data {options.verify_data}"
    elif options.calib_data is not None and Path(options.calib_data).exists():
        everything = read(Path(options.calib_data))
        total = _count(everything)
        held = min(HELD_BACK, total // 4)
        if held == 0:
            data, calibration = everything, everything
            label = f"the {total} calibration samples of {options.calib_data} (too few to hold any back)"
        else:
            data = {name: array[total - held:] for name, array in everything.items()}
            calibration = {name: array[:total - held] for name, array in everything.items()}
            label = f"{held} samples of {options.calib_data} held back from calibration"
    else:
        return None
    if not _count(data):
        raise UserError(f"{options.verify_data or options.calib_data} holds no samples to verify on")
    input_sets = _batches(data, options.max_batch_size)
    return RealSamples(label, input_sets, [run(inputs) for inputs in input_sets], calibration)
