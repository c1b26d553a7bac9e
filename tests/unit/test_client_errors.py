from __future__ import annotations

import socket

import pytest
from geventhttpclient.response import HTTPConnectionClosed
from tritonclient.utils import InferenceServerException

from tritonhf.client.client import RETRYABLE
from tritonhf.client.errors import answers_http1, map_error, one_line, shift_rows
from tritonhf.errors import (
    ClientError,
    DeployError,
    InferenceError,
    InferenceTimeoutError,
    InvalidInputError,
    ModelNotFoundError,
    ModelNotReadyError,
    OverloadedError,
    PermissionDeniedError,
    ServerUnavailableError,
    TritonHFError,
)

URL = "127.0.0.1:8001"
REFUSED = (
    "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8001: "
    "Failed to connect to remote host: Connection refused"
)
BATCH_TOO_LARGE = "inference request batch-size must be <= 64 for 'minilm'"
UNKNOWN_MODEL = "Request for unknown model: 'x' is not found"
BAD_SHAPE = (
    "[request id: <id_unknown>] unexpected shape for input 'TEXT' for model 'minilm'. "
    "Expected [-1,1], got [2]"
)

LOAD_FAILED = (
    "load failed for model 'minilm_model': version 3 is at UNAVAILABLE state: Internal: "
    "InvalidProtobuf: Protobuf parsing failed."
)

# Triton 2.51's answers to a restricted API called without the admin key's header.
GRPC_RESTRICTED = (
    "This protocol is restricted, expecting header 'triton-grpc-protocol-tritonhf-admin-key'"
)
HTTP_RESTRICTED = "This API is restricted, expecting header 'tritonhf-admin-key'"
NO_LOAD_API = "explicit model load / unload is not allowed if polling is enabled"

# (exception as tritonclient or the network raises it, expected error type)
CASES = {
    # gRPC answers with UNAVAILABLE: it must not read as a server that is down.
    "grpc-restricted": (
        InferenceServerException(GRPC_RESTRICTED, status="StatusCode.UNAVAILABLE"),
        PermissionDeniedError,
    ),
    "http-restricted": (
        InferenceServerException(HTTP_RESTRICTED, status="403"),
        PermissionDeniedError,
    ),
    "http-forbidden": (InferenceServerException("Forbidden", status="403"), PermissionDeniedError),
    "grpc-load-failed": (
        InferenceServerException(LOAD_FAILED, status="StatusCode.INTERNAL"),
        DeployError,
    ),
    "http-load-failed": (InferenceServerException(LOAD_FAILED, status="400"), DeployError),
    "grpc-unavailable": (
        InferenceServerException(REFUSED, status="StatusCode.UNAVAILABLE"),
        ServerUnavailableError,
    ),
    "grpc-connect-timed-out": (
        InferenceServerException(
            "failed to connect to all addresses; last error: UNKNOWN: ipv4:127.0.0.1:8001: "
            "connection attempt timed out before receiving SETTINGS frame",
            status="StatusCode.UNAVAILABLE",
        ),
        ServerUnavailableError,
    ),
    "grpc-deadline": (
        InferenceServerException("Deadline Exceeded", status="StatusCode.DEADLINE_EXCEEDED"),
        InferenceTimeoutError,
    ),
    "grpc-batch-too-large": (
        InferenceServerException(BATCH_TOO_LARGE, status="StatusCode.INVALID_ARGUMENT"),
        InvalidInputError,
    ),
    "grpc-bad-shape": (
        InferenceServerException(BAD_SHAPE, status="StatusCode.INVALID_ARGUMENT"),
        InvalidInputError,
    ),
    "grpc-unknown-model": (
        InferenceServerException(UNKNOWN_MODEL, status="StatusCode.NOT_FOUND"),
        ModelNotFoundError,
    ),
    "http-batch-too-large": (
        InferenceServerException(BATCH_TOO_LARGE, status="400"),
        InvalidInputError,
    ),
    "http-unknown-model": (
        InferenceServerException(UNKNOWN_MODEL, status="400"),
        ModelNotFoundError,
    ),
    "http-unknown-model-404": (
        InferenceServerException(UNKNOWN_MODEL, status="404"),
        ModelNotFoundError,
    ),
    "model-not-ready": (
        InferenceServerException("model 'minilm' is not ready", status="StatusCode.INTERNAL"),
        ModelNotReadyError,
    ),
    "http-model-not-ready": (
        InferenceServerException("model 'minilm' is not ready", status="500"),
        ModelNotReadyError,
    ),
    "connection-refused": (
        ConnectionRefusedError(111, "Connection refused"),
        ServerUnavailableError,
    ),
    "http-server-died-mid-request": (
        HTTPConnectionClosed("connection closed."),
        ServerUnavailableError,
    ),
    "socket-timeout": (socket.timeout("timed out"), InferenceTimeoutError),  # noqa: UP041
    "timeout-error": (TimeoutError("timed out"), InferenceTimeoutError),
    "anything-else": (RuntimeError("boom: the stub crashed"), InferenceError),
    "grpc-queue-timeout": (
        InferenceServerException(
            "in ensemble 'minilm', Request timeout expired", status="StatusCode.UNAVAILABLE"
        ),
        OverloadedError,
    ),
    "http-queue-timeout": (
        InferenceServerException("in ensemble 'minilm', Request timeout expired", status="503"),
        OverloadedError,
    ),
    "grpc-unloaded-model": (
        InferenceServerException(
            "Request for unknown model: 'tb0' has no available versions",
            status="StatusCode.UNAVAILABLE",
        ),
        ModelNotReadyError,
    ),
    "http-unloaded-model": (
        InferenceServerException(
            "Request for unknown model: 'tb0' has no available versions", status="400"
        ),
        ModelNotReadyError,
    ),
    "bad-input-to-a-model-named-timeout": (
        InferenceServerException(
            "in ensemble 'timeout-svc', TEXT[0] has no tokens after normalisation",
            status="StatusCode.INVALID_ARGUMENT",
        ),
        InvalidInputError,
    ),
    # The caller's request id leads a refusal: one that reads like a status is not one.
    "bad-input-with-a-request-id-named-timeout": (
        InferenceServerException(
            "in ensemble 'minilm', [request id: DEADLINE_EXCEEDED] TEXT[0] has no tokens",
            status="StatusCode.INVALID_ARGUMENT",
        ),
        InvalidInputError,
    ),
    "bad-input-with-a-request-id-named-unavailable": (
        InferenceServerException("[request id: UNAVAILABLE] TEXT[0] is empty", status="400"),
        InvalidInputError,
    ),
    "bad-input-with-a-bracketed-request-id": (
        InferenceServerException("[request id: x[timeout]] TEXT[0] is empty", status="400"),
        InvalidInputError,
    ),
    "unknown-model-named-timeout": (
        InferenceServerException(
            "Request for unknown model: 'timeout_model' is not found", status="StatusCode.NOT_FOUND"
        ),
        ModelNotFoundError,
    ),
    "unknown-model-named-unavailable": (
        InferenceServerException(
            "Request for unknown model: 'unavailable-thing' is not found", status="400"
        ),
        ModelNotFoundError,
    ),
    "grpc-channel-closed-by-the-caller": (
        InferenceServerException("Channel closed", status="StatusCode.CANCELLED"),
        InferenceError,
    ),
    "grpc-call-cancelled-by-a-stopping-server": (
        InferenceServerException("CANCELLED", status="StatusCode.CANCELLED"),
        ServerUnavailableError,
    ),
    "server-internal": (
        InferenceServerException("Failed to process the request(s)", status="StatusCode.INTERNAL"),
        InferenceError,
    ),
    # Triton 2.51 without explicit model control: gRPC UNAVAILABLE, HTTP 503.
    "grpc-load-in-mode-none": (
        InferenceServerException(NO_LOAD_API, status="StatusCode.UNAVAILABLE"),
        DeployError,
    ),
    "http-load-in-mode-none": (InferenceServerException(NO_LOAD_API, status="503"), DeployError),
}


def message_of(exc: BaseException) -> str:
    if isinstance(exc, InferenceServerException):
        return str(exc.message())
    return str(exc)


@pytest.mark.parametrize(("raised", "expected"), CASES.values(), ids=CASES.keys())
def test_map_error_picks_the_narrowest_client_error(
    raised: BaseException, expected: type[ClientError]
) -> None:
    mapped = map_error(raised, model="minilm", url=URL)

    assert type(mapped) is expected


@pytest.mark.parametrize(("raised", "expected"), CASES.values(), ids=CASES.keys())
def test_every_mapped_error_is_a_client_error_keeping_the_server_message(
    raised: BaseException, expected: type[ClientError]
) -> None:
    mapped = map_error(raised, model="minilm", url=URL)

    assert isinstance(mapped, ClientError)
    assert isinstance(mapped, TritonHFError)
    assert message_of(raised) in str(mapped)


def test_unavailable_server_error_names_the_url_and_the_fix() -> None:
    raised = InferenceServerException(REFUSED, status="StatusCode.UNAVAILABLE")

    mapped = map_error(raised, model="minilm", url="10.0.0.7:8001")

    assert str(mapped).startswith("cannot reach Triton at 10.0.0.7:8001")
    assert "tritonhf serve" in str(mapped)


def test_model_not_found_error_names_the_model() -> None:
    raised = InferenceServerException(UNKNOWN_MODEL, status="StatusCode.NOT_FOUND")

    assert "no model 'x'" in str(map_error(raised, model="x", url=URL))


def test_generic_inference_error_carries_the_status() -> None:
    raised = InferenceServerException("Failed to process", status="StatusCode.INTERNAL")

    assert "StatusCode.INTERNAL: Failed to process" in str(map_error(raised, model="m", url=URL))


@pytest.mark.parametrize("status", ["StatusCode.INTERNAL", "500"])
def test_a_server_fault_quoting_invalid_argument_is_not_the_clients_bad_input(status: str) -> None:
    """ONNX Runtime's own words in a step's failure made it read as the caller's bad input."""
    raised = InferenceServerException(
        "in ensemble 'minilm', [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Invalid output name:"
        "POOLED\n\nAt:\n  onnx_runtime.py(379): run_grouped\n",
        status=status,
    )

    mapped = map_error(raised, model="minilm", url=URL)

    assert type(mapped) is InferenceError
    assert str(mapped).endswith("Invalid output name:POOLED")  # one line, no stack


@pytest.mark.parametrize("status", ["StatusCode.INTERNAL", "500"])
def test_a_step_whose_process_died_is_not_ready_and_retried_not_a_failure(status: str) -> None:
    """A dead stub fails its requests until `serve` reloads the step (~3 s); none ran."""
    raised = InferenceServerException(
        "in ensemble 'minilm', Stub process 'minilm_model_0_1' is not healthy.", status=status
    )

    mapped = map_error(raised, model="minilm", url=URL)

    assert type(mapped) is ModelNotReadyError
    assert isinstance(mapped, RETRYABLE)
    assert "a process of one of its steps died" in str(mapped)


def test_an_exception_without_status_is_reported_as_an_error() -> None:
    mapped = map_error(InferenceServerException("odd"), model="m", url=URL)

    assert type(mapped) is InferenceError
    assert "error: odd" in str(mapped)


def test_a_client_error_passes_through_unchanged() -> None:
    original = InvalidInputError("texts[0] is empty")

    assert map_error(original, model="m", url=URL) is original


def test_mapped_errors_stay_catchable_as_the_builtin_they_resemble() -> None:
    timeout = map_error(TimeoutError("slow"), model="m", url=URL)
    invalid = map_error(InferenceServerException(BATCH_TOO_LARGE, status="400"), model="m", url=URL)

    assert isinstance(timeout, TimeoutError)
    assert isinstance(invalid, ValueError)


NOT_AT_READY_STATE = "Request for unknown model: 'minilm' version 1 is not at ready state"


def test_grpc_model_not_at_ready_state_is_model_not_ready() -> None:
    raised = InferenceServerException(NOT_AT_READY_STATE, status="StatusCode.UNAVAILABLE")

    assert type(map_error(raised, model="minilm", url=URL)) is ModelNotReadyError


def test_http_model_not_at_ready_state_is_model_not_ready() -> None:
    raised = InferenceServerException(NOT_AT_READY_STATE, status="503")

    assert type(map_error(raised, model="minilm", url=URL)) is ModelNotReadyError


def test_one_line_drops_the_python_stack_of_a_failed_step() -> None:
    reason = (
        "Internal: TypeError: bad weights\n\nAt:\n  /models/m/1/model.py(42): initialize\n"
        "  <string>(1): <module>\n"
    )

    assert one_line(reason) == "Internal: TypeError: bad weights"
    assert one_line("two\n  lines") == "two lines"


def test_a_server_that_is_stopping_is_unavailable_not_unreachable() -> None:
    raised = InferenceServerException(
        "in ensemble 'minilm', [request id: 7] Server is stopping, scheduler for model has "
        "stopped accepting new inference requests",
        status="StatusCode.UNAVAILABLE",
    )

    mapped = map_error(raised, model="minilm", url=URL)

    assert isinstance(mapped, ServerUnavailableError)
    assert "shutting down" in str(mapped)
    assert "cannot reach" not in str(mapped)


def test_a_server_that_is_not_ready_to_load_is_unavailable_not_unreachable() -> None:
    raised = InferenceServerException("Server not ready", status="StatusCode.UNAVAILABLE")

    mapped = map_error(raised, model="pt_model", url=URL)

    assert isinstance(mapped, ServerUnavailableError)
    assert "starting or shutting down" in str(mapped)


def test_a_refused_admin_call_says_to_set_the_admin_key() -> None:
    raised = InferenceServerException(GRPC_RESTRICTED, status="StatusCode.UNAVAILABLE")

    mapped = map_error(raised, model=None, url=URL)

    assert isinstance(mapped, ClientError)
    assert not isinstance(mapped, ServerUnavailableError)
    assert str(mapped).endswith("set TRITONHF_ADMIN_KEY to the key the server was started with")
    assert URL in str(mapped)


def test_only_an_http1_answer_counts_as_the_http_port() -> None:
    with socket.socket() as silent:  # accepts the connection, answers nothing, then closes
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        assert not answers_http1(address, timeout_s=0.2)
    assert not answers_http1(address, timeout_s=0.2)  # closed: refused
    assert not answers_http1("no-port-here", timeout_s=0.2)


# rows named in a chunk's refusal --------------------------------------------------------------


@pytest.mark.parametrize("status", ["StatusCode.INVALID_ARGUMENT", "400"], ids=["grpc", "http"])
def test_a_row_offset_moves_every_row_the_refusal_names_to_the_callers_index(status: str) -> None:
    raised = InferenceServerException(
        "in ensemble 'minilm', [request id: r] TEXT[6] has no tokens; TEXT[6] again",
        status=status,
    )

    mapped = map_error(raised, model="minilm", url=URL, row_offset=64)

    assert type(mapped) is InvalidInputError
    assert "[request id: r] TEXT[70] has no tokens; TEXT[70] again" in str(mapped)
    assert "TEXT[6]" not in str(mapped)


def test_without_a_row_offset_the_rows_stay_as_the_server_named_them() -> None:
    raised = InferenceServerException("TEXT[1] is not valid UTF-8", status="400")

    assert "TEXT[1] is not valid UTF-8" in str(map_error(raised, model="m", url=URL))


@pytest.mark.parametrize(
    ("message", "shifted"),
    [
        ("TEXT[0] is 9 bytes, over the limit", "TEXT[64] is 9 bytes, over the limit"),
        ("[request id: TEXT[1]] TEXT[2] has no tokens", "[request id: TEXT[1]] TEXT[66] has"),
        ("in ensemble 'TEXT[3]', TEXT[3] has no tokens", "in ensemble 'TEXT[3]', TEXT[67] has"),
        ("input 'TEXT' for model 'minilm'. Expected [-1,1]", "input 'TEXT' for model 'minilm'."),
        ("MY_TEXT[5] and TEXT[x] are not rows", "MY_TEXT[5] and TEXT[x] are not rows"),
    ],
    ids=["row", "request-id-kept", "quoted-name-kept", "no-row", "not-a-row"],
)
def test_shift_rows_moves_only_the_rows_a_step_names(message: str, shifted: str) -> None:
    assert shift_rows(message, 64).startswith(shifted)


def test_a_call_cancelled_by_closing_the_client_says_so() -> None:
    raised = InferenceServerException("Channel closed", status="StatusCode.CANCELLED")

    assert "the client was closed while the call ran" in str(
        map_error(raised, model="minilm", url=URL)
    )


def test_a_call_the_server_cancelled_is_retried_as_a_server_that_is_stopping() -> None:
    """Under SIGTERM Triton's gRPC endpoint ended a held call with CANCELLED (seen once in
    the drain test): the request was refused, not lost in flight, so it is retried."""
    raised = InferenceServerException("CANCELLED", status="StatusCode.CANCELLED")

    error = map_error(raised, model="minilm", url=URL)

    assert isinstance(error, ServerUnavailableError)
    assert "cancelled the call before answering" in str(error)


def test_running_out_of_file_descriptors_is_local_not_an_unreachable_server() -> None:
    """Under `ulimit -n 8` an import inside a call failed with EMFILE, which read as a server
    that is down ("is the server running?") and was retried."""
    raised = OSError(24, "Too many open files")

    mapped = map_error(raised, model="minilm", url=URL)

    assert type(mapped) is ClientError
    assert not isinstance(mapped, RETRYABLE)
    assert "ran out of file descriptors" in str(mapped)
