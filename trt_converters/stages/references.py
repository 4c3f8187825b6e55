"""The model and what every graph is verified against: PyTorch reference outputs on synthetic inputs at the
profile's shapes and, for INT8 with real calibration data, on the first calibration samples. Loaded once, up
front, into frozen values."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from trt_converters.errors import UserError
from trt_converters.shapes import export_sample_shapes, synthetic_inputs, verification_shapes
from trt_converters.spec import IOSpec
from trt_converters.stages.context import RunContext, file_facts, log, to_device

CALIBRATION_SAMPLES_VERIFIED = 8
INT8_GRAPHS = ("int8", "int8_fp16", "ort_int8")  # graphs judged on calibration samples where there are some


@dataclass(frozen=True)
class ReferenceSet:
    """Input sets, the PyTorch outputs on them, and what they are (for the report)."""

    input_sets: list
    references: list
    label: str


@dataclass(frozen=True)
class VerificationData:
    """What graphs are verified against: synthetic inputs at the profile's min/middle/max shapes, and for INT8
    with real calibration data the first calibration samples (INT8 scales are judged on samples of the data they
    were calibrated for: on the real all-MiniLM-L6-v2 random token ids gave cosine 0.87 where real sentences gave
    0.97). `calibration`: every calibration array, which the INT8 lowerings calibrate on."""

    synthetic: ReferenceSet
    calibration_samples: ReferenceSet | None = None
    calibration: dict | None = None

    def for_precision(self, precision: str) -> ReferenceSet:
        if precision in INT8_GRAPHS and self.calibration_samples is not None:
            return self.calibration_samples
        return self.synthetic


@dataclass(frozen=True)
class LoadedModel:
    """The PyTorch model, its report entry, and the data verification runs on."""

    model: object
    entry: dict
    data: VerificationData
    export_shapes: dict


def load_model_and_references(run: RunContext) -> LoadedModel:
    from trt_converters.loading import load_model

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
    input_sets = [synthetic_inputs(run.io, shapes, seed=i + 1)
                  for i, shapes in enumerate(verification_shapes(run.profiles, export_shapes))]
    references = [run_torch(model, run.io, inputs, options.device) for inputs in input_sets]
    check_finite_references(references, load_info["non_finite_weights"])
    synthetic = ReferenceSet(input_sets, references, f"synthetic inputs at {len(input_sets)} shape sets")
    data = VerificationData(synthetic)
    if _verifies_int8_on_calibration_data(options):
        data = _with_calibration_samples(run, model, synthetic)
    return LoadedModel(model, entry, data, export_shapes)


def _verifies_int8_on_calibration_data(options) -> bool:
    from trt_converters.openvino_cpu.stage import quantizes

    int8 = options.precision_mode in ("int8", "int8_fp16", "auto") or options.onnx_int8 or quantizes(options)
    return bool(int8 and not options.skip_verify and options.calib_data and Path(options.calib_data).exists())


def _with_calibration_samples(run: RunContext, model, synthetic: ReferenceSet) -> VerificationData:
    from trt_converters.calibration import load_calibration_data

    options = run.options
    data = load_calibration_data(run.io, run.profiles, source=options.calib_data, samples=None,
                                 tokenizer_path=options.tokenizer_path, image_options=options.image_options)
    sample = {name: array[:CALIBRATION_SAMPLES_VERIFIED] for name, array in data.items()}
    references = [run_torch(model, run.io, sample, options.device)]
    check_finite_references(references, [], f"calibration samples of {options.calib_data}")
    count = len(next(iter(sample.values())))
    label = f"the first {count} calibration samples of {options.calib_data}"
    return VerificationData(synthetic, ReferenceSet([sample], references, label), data)


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
