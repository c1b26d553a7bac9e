"""HuggingFace model -> validated ONNX -> Triton model repository."""
