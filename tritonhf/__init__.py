"""tritonhf: put a HuggingFace transformer into production on NVIDIA Triton Inference Server.

Importing the package is cheap: the client (`tritonhf.client`) needs only numpy and
tritonclient; export, training and serving import their heavy dependencies when used.
"""

from importlib.metadata import PackageNotFoundError, version

from tritonhf.errors import TritonHFError

try:
    __version__ = version("tritonhf")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

__all__ = ["TritonHFError", "__version__"]
