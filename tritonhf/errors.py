"""One exception root for the whole package, one subtree per area.

Every message says what was wrong, the value seen, and what to do about it.
"""

from __future__ import annotations


def first_line(exc: BaseException, *, limit: int = 200) -> str:
    """``TypeName: first line of the message`` (at most ``limit`` characters of it).

    For one-line errors that wrap a library's exception, whose later lines can be a whole
    traced graph or install advice.
    """
    return f"{type(exc).__name__}: {next(iter(str(exc).splitlines()), '')[:limit]}"


_OUT_OF_MEMORY = (
    "Cannot allocate memory",  # ENOMEM from a native library (mmap, the loader)
    "std::bad_alloc",
    "failed to map segment",  # the dynamic loader under `ulimit -v`
    "Could not allocate",  # pybind11 ("Could not allocate bytes object!")
)


def out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` says memory ran out (a native library's ENOMEM, ``bad_alloc``...)."""
    return isinstance(exc, MemoryError) or any(sign in str(exc) for sign in _OUT_OF_MEMORY)


MEMORY_ADVICE = (
    "not enough memory: free some, or raise the limit (`ulimit -v`, the container's memory limit)"
)
EXPORT_MEMORY_ADVICE = f"{MEMORY_ADVICE}; exporting MiniLM takes ~1.8 GB of address space"


class TritonHFError(Exception):
    """Root of every error tritonhf raises on purpose."""


class ConfigError(TritonHFError, ValueError):
    """A configuration value is out of range or inconsistent."""


class ExportError(TritonHFError):
    """Loading or exporting a model failed."""


class ModelSourceError(ExportError, ValueError):
    """The model argument names no usable model: a missing path, a file, no config.json."""


class ValidationError(ExportError):
    """The exported model disagrees with the PyTorch reference beyond the tolerance."""


class TrainingError(TritonHFError):
    """Loading the base model, training or saving the classifier failed."""


class OutputError(TritonHFError, OSError):
    """A command's output could not be written (a full disk, a closed standard output)."""


class DatasetError(TrainingError, ValueError):
    """A training or evaluation CSV is unusable; the message names the file, line and problem."""


class RepositoryError(TritonHFError):
    """Writing or reading a Triton model repository failed."""


class ServerError(TritonHFError):
    """Provisioning, starting or stopping the Triton server failed."""


class ClientError(TritonHFError):
    """Root of the client's errors: anything that went wrong talking to Triton."""


class ServerUnavailableError(ClientError):
    """The server cannot be reached (not started, stopped, or restarting)."""


class WrongProtocolError(ServerUnavailableError):
    """The URL is Triton's port for the other protocol (gRPC's over HTTP, or the reverse).

    Not retried: a wrong URL does not fix itself.
    """


class ModelNotFoundError(ClientError):
    """The server does not know the requested model."""


class ModelNotReadyError(ClientError):
    """The model exists but is not loaded and ready."""


class PermissionDeniedError(ClientError):
    """The server refused an admin call (repository index, load, unload): no or a wrong admin key.

    Set ``TRITONHF_ADMIN_KEY`` to the key the server was started with.
    """


class InvalidInputError(ClientError, ValueError):
    """The request was rejected because of its content (empty text, bad encoding, ...)."""


class OverloadedError(ClientError):
    """The server rejected the request because its queue is full: back off and retry later."""


class InferenceTimeoutError(ClientError, TimeoutError):
    """The request did not complete within the client's timeout."""


class DeployError(ClientError):
    """A model version could not be loaded; the version that was serving keeps serving."""


class DeployPendingError(DeployError):
    """A load outlasted the client's wait: Triton goes on loading and switches if it loads."""


class InferenceError(ClientError):
    """The server failed the request for a reason not covered by a narrower error."""
