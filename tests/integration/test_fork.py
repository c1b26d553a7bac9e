"""A `TritonHFClient` in processes forked from the one that made it (multiprocessing's default
start method on Linux before Python 3.14)."""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np
import pytest

from tritonhf.client import TritonHFClient
from tritonhf.server.launcher import TritonServer

TEXTS = [[f"text {i} of child {child}" for i in range(8)] for child in range(3)]
_INHERITED: list[TritonHFClient] = []  # what a forked child finds of the parent's (not pickled)


def _embed_in_child(url: str, protocol: str, child: int) -> Any:
    own = _INHERITED[0] if _INHERITED else TritonHFClient(url, protocol=protocol, timeout_s=30)
    try:
        return own.embed(TEXTS[child])
    except Exception as exc:  # noqa: BLE001  # sent back to the test, which names it
        return f"{type(exc).__name__}: {exc}"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("whose", ["the parent's client", "a client of its own"])
def test_forked_children_get_their_own_answers(
    server: TritonServer, protocol: str, whose: str
) -> None:
    """A probe's forked children shared the parent's HTTP connection and read each other's
    answers (another child's vectors, NaN, "answered in HTTP/2"), and a child's own HTTP client
    hung for good in the gevent loop it inherited."""
    url = server.config.http_url if protocol == "http" else server.config.grpc_url
    parent = TritonHFClient(url, protocol=protocol, timeout_s=30)
    expected = [parent.embed(texts) for texts in TEXTS]
    if whose == "the parent's client":
        _INHERITED.append(parent)
    try:
        with multiprocessing.get_context("fork").Pool(3) as pool:
            pending = [pool.apply_async(_embed_in_child, (url, protocol, c)) for c in range(3)]
            answers = [job.get(timeout=120) for job in pending]  # a hang fails here
    finally:
        _INHERITED.clear()
        parent.close()
    for child, answer in enumerate(answers):
        assert isinstance(answer, np.ndarray), answer
        np.testing.assert_allclose(answer, expected[child], atol=1e-6)
