"""Served embeddings against sentence-transformers, over gRPC and HTTP."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from tritonhf import data
from tritonhf.client import TritonHFClient
from tritonhf.export.pipeline import ExportResult
from tritonhf.export.source import DEFAULT_MODEL, resolve_model
from tritonhf.server.launcher import TritonServer

MIN_COSINE = 0.9999


@pytest.fixture(scope="session")
def model_path() -> Path:
    return resolve_model(DEFAULT_MODEL).path


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    return data.sentences()


@pytest.fixture(scope="session")
def reference(model_path: Path, corpus: list[str]) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_path), device="cpu")
    return np.asarray(model.encode(corpus, batch_size=32, normalize_embeddings=True))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_corpus_is_large_and_varied(corpus: list[str]) -> None:
    assert len(corpus) >= 200
    assert len(set(corpus)) == len(corpus)
    assert max(map(len, corpus)) > 500
    assert any(ord(ch) > 0x3000 for text in corpus for ch in text)


def test_served_embeddings_match_sentence_transformers(
    client: TritonHFClient, corpus: list[str], reference: np.ndarray
) -> None:
    served = client.embed(corpus)
    assert served.shape == reference.shape == (len(corpus), 384)
    assert served.dtype == np.float32
    found = cosines(served, reference)
    assert found.min() >= MIN_COSINE, f"min cosine {found.min():.6f} at {corpus[found.argmin()]!r}"
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)


def test_num_tokens_match_the_hf_tokenizer_with_truncation(
    client: TritonHFClient, corpus: list[str], model_path: Path, exported: ExportResult
) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    expected = [
        len(ids)
        for ids in tokenizer(corpus, truncation=True, max_length=exported.spec.max_length)[
            "input_ids"
        ]
    ]
    assert client.encode(corpus).num_tokens.tolist() == expected


def test_a_100k_character_text_is_truncated_to_the_cap(
    client: TritonHFClient, exported: ExportResult
) -> None:
    words = "the quick brown fox jumps over the lazy dog while the band plays on "
    text = (words * (100_000 // len(words) + 1))[:100_000]
    result = client.encode([text, "short text"])
    assert result.num_tokens.tolist()[0] == exported.spec.max_length == 256
    assert result.num_tokens.tolist()[1] < 10
    np.testing.assert_allclose(np.linalg.norm(result.embeddings, axis=1), 1.0, atol=1e-5)


def test_one_batch_mixing_short_and_long_texts_matches_texts_sent_alone(
    client: TritonHFClient, corpus: list[str]
) -> None:
    mixed = [*sorted(corpus[:40], key=len)[::3], corpus[0] * 30]
    together = client.embed(mixed)
    alone = np.concatenate([client.embed([text]) for text in mixed])
    assert cosines(together, alone).min() >= 0.99999


def test_concurrent_requests_of_mixed_lengths_are_batched_correctly(
    client: TritonHFClient, corpus: list[str], reference: np.ndarray
) -> None:
    # Many in-flight single-text requests make Triton's dynamic batcher merge requests of
    # different lengths (ragged batches); each must still get its own embedding.
    with ThreadPoolExecutor(max_workers=8) as pool:
        rows = list(pool.map(lambda text: client.embed([text])[0], corpus[:120]))
    assert cosines(np.stack(rows), reference[:120]).min() >= MIN_COSINE


def test_batches_larger_than_max_batch_size_are_split_by_the_client(
    client: TritonHFClient, corpus: list[str], reference: np.ndarray, exported: ExportResult
) -> None:
    count = exported.spec.max_batch_size * 2 + 7
    texts = (corpus * 2)[:count]
    served = client.embed(texts)
    assert served.shape == (count, 384)
    assert cosines(served, np.concatenate([reference, reference])[:count]).min() >= MIN_COSINE


def test_an_empty_batch_gives_an_empty_array(client: TritonHFClient) -> None:
    assert client.embed([]).shape == (0, 384)


def established_to(port: int) -> int:
    """This machine's open IPv4 TCP connections to ``port`` (from ``/proc/net/tcp``)."""
    lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    return sum(
        1 for f in map(str.split, lines) if int(f[2].split(":")[1], 16) == port and f[3] == "01"
    )


def event_descriptors() -> int:
    """This process's open pipes and anonymous inodes (what an event loop holds)."""
    found = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # the listing's own, closed meanwhile
            found += fd.readlink().name.startswith(("pipe:", "anon_inode:"))
    return found


def test_a_thread_per_request_does_not_leave_an_http_connection_per_thread(
    server: TritonServer,
) -> None:
    port = int(server.config.http_url.rsplit(":", 1)[1])
    with TritonHFClient(server.config.http_url, protocol="http", timeout_s=60) as client:
        before, loops_before = established_to(port), event_descriptors()
        for _ in range(30):  # each thread opens its own connection and ends
            thread = threading.Thread(target=client.embed, args=(["one request"],))
            thread.start()
            thread.join()
        assert established_to(port) - before <= 2
        # Nor its gevent event loop (two descriptors each, which ran a long-lived
        # process out of them after ~500 threads).
        assert event_descriptors() - loops_before <= 4


def open_descriptors_after(script: str, server: TritonServer) -> int:
    """Run ``script`` (given the HTTP URL) in a new process, so an abort fails only it; it
    prints its open descriptors last."""
    done = subprocess.run(
        [sys.executable, "-c", script, server.config.http_url],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.split()[-1])


DROPPED_CLIENTS = """
import gc, os, sys
import tritonclient.http as httpclient
from tritonhf.client import TritonHFClient

kept = TritonHFClient(sys.argv[1], protocol="http")
plain = httpclient.InferenceServerClient(sys.argv[1])  # another gevent user of the thread
kept.embed(["before"])

def handler(i):  # a web handler that makes a client per call and never closes it
    return TritonHFClient(sys.argv[1], protocol="http").embed([f"dropped {i}"])

for i in range(30):
    handler(i)
    gc.collect()
assert kept.embed(["after"]).shape == (1, 384)
assert plain.is_server_ready()
print("open descriptors", len(os.listdir("/proc/self/fd")))
"""


def test_an_http_client_dropped_without_close_leaves_the_threads_other_clients_working(
    server: TritonServer,
) -> None:
    # A dropped client destroyed the thread's gevent hub, which every HTTP client of the
    # thread shares: the others then failed with "operation on destroyed loop".
    assert open_descriptors_after(DROPPED_CLIENTS, server) < 40  # their sockets were closed


SHORT_LIVED_THREADS = """
import os, sys, threading
from tritonhf.client import TritonHFClient

made = []  # the client is made in a thread that ends, as a Streamlit page's is
maker = threading.Thread(target=lambda: made.append(TritonHFClient(sys.argv[1], protocol="http")))
maker.start()
maker.join()
client = made[0]

def work(i):
    client.health()
    client.embed([f"text {i}"])

for round_ in range(80):
    threads = [threading.Thread(target=work, args=(round_ * 3 + k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
print("open descriptors", len(os.listdir("/proc/self/fd")))
"""


def test_short_lived_threads_sharing_an_http_client_neither_crash_nor_leak(
    server: TritonServer,
) -> None:
    # Each thread's gevent hub is destroyed in that thread as it ends: destroyed from another
    # thread, libev aborted the whole process ("epoll_wait: Bad file descriptor").
    # Not two more per thread (240 threads ran).
    assert open_descriptors_after(SHORT_LIVED_THREADS, server) < 40
