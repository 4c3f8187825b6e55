"""trt-converters: PyTorch checkpoint -> verified ONNX -> TensorRT engine -> Triton repository."""

__version__ = "0.1.0"
