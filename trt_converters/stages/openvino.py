"""The OpenVINO stage: IRs made from the run's FP32 graph and verified against its PyTorch references
(openvino_cpu/stage.py), where the CPU runtime is OpenVINO or --tune measures it."""

from __future__ import annotations

from pathlib import Path

from trt_converters.stages.context import RunContext, log, warnings_logged


def openvino_stage(run: RunContext, fp32_onnx: Path | None, loaded, verifier):
    """The frozen OpenVINOArtifacts; `loaded` and `verifier` are None where there is nothing to verify against."""
    from trt_converters.openvino_cpu.stage import StageInputs, lower_for_openvino

    def verification_data(precision: str):
        if verifier is None:
            return None
        references = verifier.data.for_precision(precision)
        return references.input_sets, references.references, references.label

    calibration = loaded.data.calibration if loaded is not None else None
    inputs = StageInputs(run.options, run.io, run.profiles, fp32_onnx, run.staged, verification_data, calibration)
    with warnings_logged():
        return lower_for_openvino(inputs, log)
