"""The model and what every graph is verified against: PyTorch reference outputs on synthetic inputs at the
profile's shapes (checked to vary with the inputs: reference_check.py) and on the real samples of --verify-data
or held back from --calib-data (verification_data.py). Loaded once, up front, into frozen values."""

from __future__ import annotations

from dataclasses import dataclass

from trt_converters.errors import UserError
from trt_converters.shapes import export_sample_shapes, synthetic_inputs, verification_shapes
from trt_converters.spec import IOSpec
from trt_converters.stages.context import RunContext, file_facts, log, to_device

INT8_GRAPHS = ("int8", "int8_fp16", "ort_int8")  # graphs judged on the real samples alone where there are some


@dataclass(frozen=True)
class ReferenceSet:
    """Input sets, the PyTorch outputs on them, and what they are (for the report). `drawn_as`: how the
    synthetic inputs among them were drawn, per input (None: real samples only)."""

    input_sets: list
    references: list
    label: str
    drawn_as: dict | None = None


@dataclass(frozen=True)
class VerificationData:
    """What graphs are verified against: synthetic inputs at the profile's min/middle/max shapes, and the real
    samples of --verify-data or held back from --calib-data, which join every verification. INT8 is judged on the
    real samples alone where there are some: its scales are made for data like them (random token ids gave cosine
    0.87 on the real all-MiniLM-L6-v2 where real sentences gave 0.97). `calibration`: the calibration arrays
    without the held-back samples, which the INT8 lowerings calibrate on (None: they read --calib-data)."""

    synthetic: ReferenceSet
    real: ReferenceSet | None = None
    calibration: dict | None = None

    def for_precision(self, precision: str) -> ReferenceSet:
        if self.real is None:
            return self.synthetic
        if precision in INT8_GRAPHS:
            return self.real
        return ReferenceSet(self.synthetic.input_sets + self.real.input_sets,
                            self.synthetic.references + self.real.references,
                            f"{self.synthetic.label} and {self.real.label}", self.synthetic.drawn_as)


@dataclass(frozen=True)
class LoadedModel:
    """The PyTorch model, its report entry, the data verification runs on, the checkpoint's vocabulary (special
    ids, pad id, size: synthetic token ids) and the report's `reference_check` entry (None: not verified)."""

    model: object
    entry: dict
    data: VerificationData
    export_shapes: dict
    vocabulary: dict
    reference_check: dict | None = None


def load_model_and_references(run: RunContext) -> LoadedModel:
    from trt_converters.loading import load_model
    from trt_converters.synthetic_inputs import drawn_as, vocabulary_of

    options = run.options
    log(f"[load] {options.model_class_name} from {options.model_script_path}, weights {options.ckpt_path}")
    model, load_info = load_model(options.model_script_path, options.model_class_name, options.ckpt_path,
                                  model_kwargs=options.model_kwargs, strict=options.strict, device=options.device,
                                  input_names=[t.name for t in run.io.inputs])
    sources = options.option_sources()
    entry = {**load_info, "kwargs_sources": {k: sources.get(f"model_kwargs.{k}", "default")
                                             for k in load_info["kwargs"]},
             "checkpoint": file_facts(options.ckpt_path)}
    export_shapes = export_sample_shapes(run.profiles, options.input_size)
    vocabulary = vocabulary_of(options.tokenizer_path, options.ckpt_path)
    input_sets = [synthetic_inputs(run.io, shapes, seed=i + 1, vocabulary=vocabulary)
                  for i, shapes in enumerate(verification_shapes(run.profiles, export_shapes))]
    references = [run_torch(model, run.io, inputs, options.device) for inputs in input_sets]
    check_finite_references(references, load_info["non_finite_weights"])
    synthetic = ReferenceSet(input_sets, references, f"synthetic inputs at {len(input_sets)} shape sets",
                             drawn_as(run.io, vocabulary))
    if options.skip_verify:
        return LoadedModel(model, entry, VerificationData(synthetic), export_shapes, vocabulary)
    reference_check = _check_references(run, model, synthetic, vocabulary)
    return LoadedModel(model, entry, _with_real_samples(run, model, synthetic), export_shapes, vocabulary,
                       reference_check)


def _check_references(run: RunContext, model, synthetic: ReferenceSet, vocabulary: dict) -> dict:
    """The report's `reference_check` entry; a StageError for an output that does not vary with the inputs."""
    from trt_converters.reference_check import check_references

    device = run.options.device
    return check_references(
        lambda inputs: run_torch(model, run.io, inputs, device), synthetic.input_sets, synthetic.references,
        redraw=lambda inputs: synthetic_inputs(run.io, {k: v.shape for k, v in inputs.items()}, seed=1000,
                                               vocabulary=vocabulary),
        allow_constant=run.options.allow_constant_output)


def _with_real_samples(run: RunContext, model, synthetic: ReferenceSet) -> VerificationData:
    """The synthetic set, and the real samples with their references where the options name some."""
    from trt_converters.verification_data import load_real_samples

    options = run.options
    real = load_real_samples(run.io, run.profiles, options=options,
                             run=lambda inputs: run_torch(model, run.io, inputs, options.device))
    if real is None:
        return VerificationData(synthetic)
    check_finite_references(real.references, [], real.label)
    return VerificationData(synthetic, ReferenceSet(real.input_sets, real.references, real.label), real.calibration)


def run_torch(model, io: IOSpec, inputs: dict, device: str) -> dict:
    """The PyTorch reference outputs; forward() failing on the IO config's inputs, or returning something other
    than the IO config's outputs, is a UserError that says which."""
    import torch

    forward = f"{type(model).__name__}.forward()"
    with torch.no_grad():
        tensors = to_device(inputs, device)
        try:
            outputs = model(*[tensors[t.name] for t in io.inputs])
        except torch.cuda.OutOfMemoryError:
            raise
        except Exception as exc:
            given = ", ".join(f"{t.name} {t.dtype}{list(inputs[t.name].shape)}" for t in io.inputs)
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise UserError(f"{forward} failed on inputs made from --model-io-config ({given}): "
                            f"{type(exc).__name__}: {first}; check the IO config's inputs (order, dtype, shape, "
                            "value_range) against what forward() expects") from exc
    declared = [t.name for t in io.outputs]
    if isinstance(outputs, dict):
        missing = [name for name in declared if name not in outputs]
        if missing:
            raise UserError(f"{forward} returned a dict with keys {', '.join(map(repr, outputs))} but "
                            f"--model-io-config declares output {missing[0]!r}; name the outputs as forward() does")
        outputs = tuple(outputs[name] for name in declared)
    if not isinstance(outputs, (tuple, list)):
        outputs = (outputs,)
    described = ", ".join(f"{type(o).__name__}{list(o.shape)}" if isinstance(o, torch.Tensor) else type(o).__name__
                          for o in outputs)
    if len(outputs) != len(io.outputs) or not all(isinstance(o, torch.Tensor) for o in outputs):
        raise UserError(f"{forward} returned {len(outputs)} value(s) ({described}) but --model-io-config declares "
                        f"{len(io.outputs)} output tensor(s) ({', '.join(declared)}); make them match")
    for spec, output in zip(io.outputs, outputs):
        dims = list(output.shape[1:])
        if len(dims) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, dims)):
            raise UserError(f"{forward} returned output {spec.name!r} of shape {list(output.shape)} but "
                            f"--model-io-config declares {spec.shape} (without the batch dim); fix its shape "
                            "(-1 for a dynamic dim)")
    return {t.name: o.detach().float().cpu().numpy() for t, o in zip(io.outputs, outputs)}


def check_finite_references(references: list[dict], non_finite_weights: list[str],
                             inputs: str = "the synthetic inputs") -> None:
    """A NaN/inf PyTorch output leaves nothing to verify against: the model or checkpoint is broken."""
    import numpy as np

    from trt_converters.verify import non_finite_reference_message

    for reference in references:
        for name, array in reference.items():
            bad = int((~np.isfinite(array)).sum())
            if bad:
                more = f" (+{len(non_finite_weights) - 3} more)" if len(non_finite_weights) > 3 else ""
                cause = (f"--ckpt-path holds NaN/inf in {', '.join(non_finite_weights[:3])}{more}"
                         if non_finite_weights else "")
                raise UserError(non_finite_reference_message(name, bad, "the PyTorch reference", where=f" on {inputs}",
                                                             cause=cause))
