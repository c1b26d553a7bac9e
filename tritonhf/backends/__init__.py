"""Python-backend steps, copied into the model repository as ``model.py``.

Each module here is self-contained: in a model version folder it can import only what the
server-side environment has (numpy, tokenizers, onnxruntime) plus ``triton_python_backend_utils``.
"""
