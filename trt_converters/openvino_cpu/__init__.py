"""The OpenVINO CPU serving path: ONNX graph -> OpenVINO IR (FP32, run in FP32 or BF16; INT8 by NNCF).

    runtime   CPU features, compile properties, running an IR on input sets, a session for the tuner
    lower     ONNX -> IR, and NNCF post-training INT8 (transformer preset) on the calibration data
    stage     the conversion stage: IRs made, verified against PyTorch within their budget, one chosen
    serving   the served model folder: Triton's openvino backend or the python-backend OpenVINO model
    tune      --tune over runtime x precision x instances x threads
    choice    --cpu-runtime resolved against --triton-backend (one precedence rule)

Heavy libraries (openvino, nncf) are imported inside functions.
"""

PRECISIONS = ("fp32", "bf16", "int8")
