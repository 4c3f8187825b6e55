"""The stages of one conversion run, each a function of its inputs that returns a frozen result.

    checks.py        refusals before any work (missing options, artifact paths)
    context.py       what every stage of the run shares (options, staging area, IO spec, profiles) and logging
    references.py    load the model; the PyTorch reference outputs (synthetic and real samples), loaded once
    verification.py  one ONNX graph against the references
    export.py        PyTorch -> verified FP32 ONNX (or an existing --onnx-path)
    lower.py         FP16 / INT8 Q/DQ for TensorRT, and --precision auto
    onnxruntime_int8.py  --onnx-int8: fusion and ONNX Runtime INT8 for CPU serving
    build.py         TensorRT engine
    package.py       Triton model folder, pipeline, request samples, requirements.txt
    report.py        the report, built once from the results

convert.py composes them (docs/design.md, "Stages").
"""
