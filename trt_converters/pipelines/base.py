"""What the converter hands a pipeline writer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from trt_converters.spec import IOSpec
from trt_converters.triton.config import PipelineServing


@dataclass(frozen=True)
class PipelineRequest:
    repo: Path  # staging copy of the Triton repository: write everything inside it
    core_model_name: str
    pipeline_name: str  # the model users call with raw text or images
    io: IOSpec  # the core model's inputs (after --triton-inputs) and outputs
    max_batch_size: int
    instance_kind: Literal["gpu", "cpu"] = "gpu"
    options: dict = field(default_factory=dict)
    checkpoint_dir: Path | None = None
    serving: PipelineServing = field(default_factory=PipelineServing)  # instance counts, cache, warmup
