"""The launcher and the server environment: real processes, real failures."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROBE_MODEL, server_config
from tests.killed_export import kill_an_export_midway
from tritonhf.client import TritonHFClient
from tritonhf.errors import ServerError
from tritonhf.export.pipeline import ExportResult
from tritonhf.server.launcher import EXPORT_RECOVERY_S, TritonServer


def test_python_steps_run_with_this_environments_packages(server: TritonServer) -> None:
    import sys

    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server.config.grpc_url)
    dummy = grpcclient.InferInput("DUMMY", [1], "INT32")
    dummy.set_data_from_numpy(np.zeros(1, dtype=np.int32))
    result = client.infer(PROBE_MODEL, [dummy])
    info = json.loads(result.as_numpy("INFO")[0])
    client.close()
    assert info["prefix"] == sys.prefix
    for module, path in info["modules"].items():
        assert path.startswith(sys.prefix), f"{module} imported from outside the venv: {path}"
    assert info["numpy_version"].startswith("1."), "the 2.51 stub misreads BYTES under numpy 2"


def test_the_metrics_endpoint_serves_tritons_inference_counters(server: TritonServer) -> None:
    with TritonHFClient(server.config.grpc_url) as client:
        client.embed(["count me"])
    with urllib.request.urlopen(server.config.metrics_url, timeout=10) as response:  # noqa: S310
        text = response.read().decode()
    assert 'nv_inference_request_success{model="minilm"' in text
    assert 'nv_inference_request_success{model="minilm_tokenizer"' in text


def test_the_server_binds_only_the_requested_address(server: TritonServer) -> None:
    assert server.config.host == "127.0.0.1"
    assert f"--grpc-address={server.config.host}" in server.config.command(Path("x"), Path("y"))


def test_a_model_that_cannot_load_stops_the_start_with_the_reason(tmp_path: Path) -> None:
    repo = tmp_path / "broken-repo"
    (repo / "broken" / "1").mkdir(parents=True)
    (repo / "broken" / "config.pbtxt").write_text('name: "broken"\nbackend: "python"\n')
    (repo / "broken" / "1" / "model.py").write_text("raise RuntimeError('weights are corrupt')\n")
    with pytest.raises(
        ServerError,
        match=r"(?s)stopped while starting \(code .*\) because broken version 1 "
        r"failed to load.*weights are corrupt",
    ):
        TritonServer(server_config(repo), log_path=tmp_path / "server.log").start()


def test_a_stopped_server_leaves_no_process_behind(tmp_path: Path) -> None:
    repo = tmp_path / "empty-repo"
    repo.mkdir()
    server = TritonServer(server_config(repo), log_path=tmp_path / "server.log")
    server.start()
    pid = server.pid
    assert pid is not None
    assert server.stop() == 0
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_repository_path_with_a_space_and_non_ascii_is_served(
    exported: ExportResult, tmp_path: Path
) -> None:
    """Triton 2.51's Python backend cannot start a stub under such a path (a probe's finding:
    a space hung the start for 180 s, an accent failed the steps); serve links to it."""
    repo = tmp_path / "model store" / "répertoire"
    repo.mkdir(parents=True)
    for folder in exported.folders:
        shutil.copytree(folder, repo / folder.name, copy_function=os.link)
    with (
        TritonServer(server_config(repo), log_path=tmp_path / "server.log") as server,
        TritonHFClient(server.config.grpc_url) as client,
    ):
        assert client.embed(["served from a path with a space"]).shape == (1, 384)


def test_a_serving_server_undoes_an_export_killed_while_moving_in(
    exported: ExportResult, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The next deploy loads what is on disk: a probe killed an export mid-move, deployed,
    and got a READY pipeline of the new tokenizer and the old model (wrong embeddings)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    source = exported.folders[0].parent
    with TritonServer(server_config(repo), log_path=tmp_path / "server.log"):
        kill_an_export_midway(
            repo,
            source / "minilm_model" / "1" / "model.onnx",
            source / "minilm_tokenizer" / "1" / "tokenizer.json",
            renames=2,  # the tokenizer moved in, the model step not yet
        )
        assert (repo / "minilm_tokenizer").is_dir()
        deadline = time.monotonic() + EXPORT_RECOVERY_S * 3
        while (repo / "minilm_tokenizer").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not any(repo.iterdir()), list(repo.iterdir())
    assert "was killed while it moved minilm_tokenizer" in caplog.text


def test_a_repository_triton_refuses_stops_the_start_with_tritons_reason(tmp_path: Path) -> None:
    """Triton's own refusal (an ensemble larger than its step) is an error line of its log."""
    repo = tmp_path / "repo"
    (repo / "echo" / "1").mkdir(parents=True)
    (repo / "echo" / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    (repo / "echo" / "config.pbtxt").write_text(
        'name: "echo"\nbackend: "python"\nmax_batch_size: 4\n'
        'input { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }\n'
        'output { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }\n'
    )
    (repo / "wide" / "1").mkdir(parents=True)
    (repo / "wide" / "config.pbtxt").write_text(
        'name: "wide"\nplatform: "ensemble"\nmax_batch_size: 8\n'
        'input { name: "IN" data_type: TYPE_FP32 dims: [ 1 ] }\n'
        'output { name: "OUT" data_type: TYPE_FP32 dims: [ 1 ] }\n'
        'ensemble_scheduling { step { model_name: "echo" model_version: -1 '
        'input_map { key: "IN" value: "IN" } output_map { key: "OUT" value: "OUT" } } }\n'
    )
    log = tmp_path / "server.log"  # appended to: an earlier run's failure is not this one's
    log.write_text("2026-01-01T00:00:00Z E 1 model_lifecycle.cc:642] \"failed to load 'old'\"\n")
    with pytest.raises(
        ServerError,
        match=r"ensemble wide allows maximum batch size 8, but it contains model echo which only "
        r"allows maximum batch size to be 4",
    ) as info:
        TritonServer(server_config(repo), log_path=log).start()
    assert "failed to load 'old'" not in str(info.value)


def test_a_model_step_config_asking_for_outputs_its_graph_lacks_stops_the_start(
    exported: ExportResult, tmp_path: Path
) -> None:
    """A hand-added output served with green health, then failed every request as bad input."""
    repo = tmp_path / "repo"
    for folder in exported.folders:
        shutil.copytree(folder, repo / folder.name)
    config = repo / "minilm_model" / "config.pbtxt"
    extra = 'output { name: "POOLED" data_type: TYPE_FP32 dims: [ 384 ] }\n'
    config.write_text(config.read_text() + extra)
    with pytest.raises(
        ServerError,
        match=r"minilm_model's config\.pbtxt asks for outputs its ONNX graph lacks: POOLED \(",
    ):
        TritonServer(server_config(repo), log_path=tmp_path / "server.log").start()


def test_a_model_run_that_fails_is_one_line_and_the_servers_fault_not_the_clients(
    exported: ExportResult, tmp_path: Path
) -> None:
    """max_length raised by hand past MiniLM's 512 positions: a long text failed as the
    client's bad input ("INVALID_ARGUMENT" in ONNX Runtime's words), with the step's stack."""
    from tritonhf.errors import InferenceError, InvalidInputError

    repo = tmp_path / "repo"
    for folder in exported.folders:
        shutil.copytree(folder, repo / folder.name)
    for step in ("minilm_tokenizer", "minilm_model"):
        config = repo / step / "config.pbtxt"
        config.write_text(
            re.sub(
                r'(key: "max_length"\s*value \{\s*string_value: )"\d+"',
                r'\1"1000"',
                config.read_text(),
            )
        )
    with (
        TritonServer(server_config(repo), log_path=tmp_path / "server.log") as server,
        TritonHFClient(server.config.grpc_url) as client,
    ):
        with pytest.raises(InferenceError, match=r"minilm could not run the model: ") as info:
            client.embed(["word " * 700])
        assert not isinstance(info.value, InvalidInputError)
        assert "\n" not in str(info.value)
        assert client.embed(["a short text still runs"]).shape == (1, 384)
