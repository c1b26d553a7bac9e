from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import tritonhf.backends.merged
import tritonhf.backends.onnx_runtime
import tritonhf.backends.tokenizer
from tests.killed_export import kill_an_export_midway
from tritonhf.errors import RepositoryError
from tritonhf.repository import staging, writer
from tritonhf.repository.configs import (
    BatchingPolicy,
    StepTuning,
    ensemble_config,
    model_config,
    parse_pbtxt,
    to_pbtxt,
    tokenizer_config,
)
from tritonhf.repository.writer import StepArtifacts, write_repository
from tritonhf.spec import Layout, PipelineSpec, Runtime, Task

STEPS = ("minilm_tokenizer", "minilm_model", "minilm", "minilm_feedback")


def step_class(model_py: Path) -> type:
    """The ``TritonPythonModel`` that Triton's stub finds in a written ``model.py``."""
    namespace: dict[str, object] = {}
    exec(compile(model_py.read_text(encoding="utf-8"), str(model_py), "exec"), namespace)  # noqa: S102
    found = namespace["TritonPythonModel"]
    assert isinstance(found, type)
    return found


def files_under(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


PYTHON_TAG = f"{sys.version_info.major}{sys.version_info.minor}"
"""The bytecode files' tag: an export compiles its steps' model.py for the Python it runs."""


@pytest.fixture
def artifacts(tiny_onnx: Path, tokenizer_json: Path) -> StepArtifacts:
    return StepArtifacts(
        onnx_path=tiny_onnx,
        tokenizer_json=tokenizer_json,
        pad_token_id=0,
        manifest={"source": "default", "head": {"pooling": ["mean"], "steps": []}},
    )


def test_python_onnx_repository_has_the_four_model_folders_and_their_files(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    spec = PipelineSpec(runtime=Runtime.PYTHON_ONNX)

    folders = write_repository(spec=spec, repo=repo, artifacts=artifacts)

    assert folders == [
        repo / "minilm_tokenizer",
        repo / "minilm_model",
        repo / "minilm",
        repo / "minilm_feedback",
    ]
    assert files_under(repo) == {
        name.format(PYTHON_TAG)
        for name in (
            "minilm_tokenizer",
            "minilm_tokenizer/config.pbtxt",
            "minilm_tokenizer/1",
            "minilm_tokenizer/1/model.py",
            "minilm_tokenizer/1/__pycache__",
            "minilm_tokenizer/1/__pycache__/model.cpython-{}.pyc",
            "minilm_tokenizer/1/tokenizer.json",
            "minilm_model",
            "minilm_model/config.pbtxt",
            "minilm_model/1",
            "minilm_model/1/model.py",
            "minilm_model/1/__pycache__",
            "minilm_model/1/__pycache__/model.cpython-{}.pyc",
            "minilm_model/1/model.onnx",
            "minilm",
            "minilm/config.pbtxt",
            "minilm/1",
            "minilm/tritonhf.json",
            "minilm_feedback",
            "minilm_feedback/config.pbtxt",
            "minilm_feedback/1",
            "minilm_feedback/1/model.py",
            "minilm_feedback/1/__pycache__",
            "minilm_feedback/1/__pycache__/model.cpython-{}.pyc",
        )
    }


def test_loading_a_steps_model_py_writes_nothing_into_its_folder(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    """Python wrote __pycache__ beside model.py at a version's first load; Triton then took
    the step for modified and reloaded its newest version when the ensemble loaded: a
    `deploy --version 1` to a version first loaded then ended on version 2."""
    import subprocess

    write_repository(spec=PipelineSpec(), repo=tmp_path / "repo", artifacts=artifacts)
    version = tmp_path / "repo" / "minilm_model" / "1"

    def tree() -> dict[str, int]:
        return {str(p): p.stat().st_mtime_ns for p in [version, *version.rglob("*")]}

    before = tree()
    loaded = subprocess.run(
        [
            sys.executable, "-c",
            "import importlib.util, sys; "
            "spec = importlib.util.spec_from_file_location('model', sys.argv[1]); "
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))",
            str(version / "model.py"),
        ],
        capture_output=True, text=True, check=False,
        # As Triton's stub runs it: writing bytecode (the stub ignores this variable).
        env={k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"},
    )  # fmt: skip

    assert loaded.returncode == 0, loaded.stderr
    assert tree() == before


def test_onnxruntime_repository_has_no_python_step_for_the_model(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"

    write_repository(spec=PipelineSpec(runtime=Runtime.ONNXRUNTIME), repo=repo, artifacts=artifacts)

    assert files_under(repo / "minilm_model") == {"config.pbtxt", "1", "1/model.onnx"}
    assert (repo / "minilm_tokenizer" / "1" / "model.py").is_file()


def test_steps_are_the_installed_package_classes_and_artifacts_are_copied_byte_for_byte(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"

    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)

    version = "1"
    tokenizer_dir, model_dir = repo / "minilm_tokenizer" / version, repo / "minilm_model" / version
    # The package's classes, not copies of their modules: a repository exported before a
    # package update runs the updated code, never a frozen copy against newer imports.
    assert step_class(tokenizer_dir / "model.py") is tritonhf.backends.tokenizer.TritonPythonModel
    assert step_class(model_dir / "model.py") is tritonhf.backends.onnx_runtime.TritonPythonModel
    assert (tokenizer_dir / "tokenizer.json").read_bytes() == artifacts.tokenizer_json.read_bytes()
    assert (model_dir / "model.onnx").read_bytes() == artifacts.onnx_path.read_bytes()


@pytest.mark.parametrize("runtime", [Runtime.PYTHON_ONNX, Runtime.ONNXRUNTIME])
def test_written_configs_are_the_spec_configs(
    tmp_path: Path, artifacts: StepArtifacts, runtime: Runtime
) -> None:
    repo = tmp_path / "repo"
    spec = PipelineSpec(name="bge", runtime=runtime, max_length=128, max_batch_size=8)
    artifacts = StepArtifacts(artifacts.onnx_path, artifacts.tokenizer_json, pad_token_id=3)

    write_repository(spec=spec, repo=repo, artifacts=artifacts)

    def read(name: str) -> object:
        return parse_pbtxt((repo / name / "config.pbtxt").read_text(encoding="utf-8"))

    assert read("bge_tokenizer") == tokenizer_config(spec, pad_token_id=3)
    assert read("bge_model") == model_config(spec)
    assert read("bge") == ensemble_config(spec)


def test_manifest_records_the_spec_and_the_exporter_provenance(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    spec = PipelineSpec(runtime=Runtime.ONNXRUNTIME, embedding_size=384, max_length=200)

    write_repository(spec=spec, repo=repo, artifacts=artifacts)

    manifest = json.loads((repo / "minilm" / "tritonhf.json").read_text(encoding="utf-8"))
    assert manifest == {
        "spec": {
            "name": "minilm",
            "task": "embedding",
            "runtime": "onnxruntime",
            "embedding_size": 384,
            "normalized": True,
            "max_length": 200,
            "max_batch_size": 64,
            "precision": "fp32",
            "layout": "split",
        },
        "version": 1,
        "source": "default",
        "head": {"pooling": ["mean"], "steps": []},
    }


def test_rewriting_replaces_stale_files_and_keeps_other_models(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(runtime=Runtime.PYTHON_ONNX), repo=repo, artifacts=artifacts)
    (repo / "minilm_model" / "1" / "stale.bin").write_bytes(b"old")
    (repo / "minilm_model" / "2").mkdir()
    (repo / "minilm_tokenizer" / "1" / "vocab.txt").write_text("old", encoding="utf-8")
    other = repo / "other_model" / "1"
    other.mkdir(parents=True)
    (other / "model.py").write_text("# untouched", encoding="utf-8")

    write_repository(spec=PipelineSpec(runtime=Runtime.ONNXRUNTIME), repo=repo, artifacts=artifacts)

    assert files_under(repo / "minilm_model") == {"config.pbtxt", "1", "1/model.onnx"}
    assert not (repo / "minilm_tokenizer" / "1" / "vocab.txt").exists()
    assert (other / "model.py").read_text(encoding="utf-8") == "# untouched"
    config = parse_pbtxt((repo / "minilm_model" / "config.pbtxt").read_text(encoding="utf-8"))
    assert config.platform == "onnxruntime_onnx"


def test_writing_into_a_missing_nested_folder_creates_it(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "a" / "b" / "repo"

    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)

    assert (repo / "minilm" / "config.pbtxt").is_file()


@pytest.mark.parametrize("missing", ["onnx_path", "tokenizer_json"])
def test_a_missing_artifact_is_a_repository_error_and_nothing_is_written(
    tmp_path: Path, artifacts: StepArtifacts, missing: str
) -> None:
    gone = tmp_path / "gone" / "file"
    paths = {"onnx_path": artifacts.onnx_path, "tokenizer_json": artifacts.tokenizer_json}
    paths[missing] = gone
    repo = tmp_path / "repo"

    with pytest.raises(RepositoryError, match=r"does not exist|is missing") as info:
        write_repository(
            spec=PipelineSpec(), repo=repo, artifacts=StepArtifacts(**paths, pad_token_id=0)
        )

    assert str(gone) in str(info.value)
    assert not repo.exists()


def test_an_artifact_that_is_a_folder_is_a_repository_error(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    folder = tmp_path / "tokenizer"
    folder.mkdir()

    with pytest.raises(RepositoryError, match="does not exist"):
        write_repository(
            spec=PipelineSpec(),
            repo=tmp_path / "repo",
            artifacts=StepArtifacts(artifacts.onnx_path, folder, pad_token_id=0),
        )


def test_a_repository_path_that_is_a_file_is_a_repository_error(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    repo.write_text("not a folder", encoding="utf-8")

    with pytest.raises(RepositoryError, match="could not write the model repository"):
        write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)


def snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def disk_full_at(monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    real = writer._write_model

    def write(root: Path, name: str, *args: Any, **kwargs: Any) -> Path:
        if name == step:
            raise OSError(28, "No space left on device")
        return real(root, name, *args, **kwargs)

    monkeypatch.setattr(writer, "_write_model", write)


@pytest.mark.parametrize("version", [1, 2])
def test_a_write_that_fails_halfway_leaves_the_repository_as_it_was(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch, version: int
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    before = snapshot(repo)
    disk_full_at(monkeypatch, "minilm_model")

    with pytest.raises(RepositoryError, match="No space left on device; the repository is as"):
        write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=version)

    assert snapshot(repo) == before
    assert not list(tmp_path.glob(".repo.tritonhf-staging-*"))


def test_a_first_export_that_fails_leaves_no_empty_repository_behind(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk left an empty folder: the next export or serve took it for a repository."""
    disk_full_at(monkeypatch, "minilm_model")
    with pytest.raises(RepositoryError, match="No space left on device; nothing was written"):
        write_repository(spec=PipelineSpec(), repo=tmp_path / "a" / "repo", artifacts=artifacts)

    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        # The 4th rename moves the staged model step in, its serving folder already aside.
        (OSError(5, "Input/output error"), RepositoryError),
        # Ctrl-C right after the 3rd rename (the model step's serving folder moved aside),
        # before the writer could note it.
        (KeyboardInterrupt(), KeyboardInterrupt),
    ],
    ids=["rename-fails", "ctrl-c"],
)
def test_a_move_into_the_repository_cut_short_puts_back_what_it_moved(
    tmp_path: Path,
    artifacts: StepArtifacts,
    monkeypatch: pytest.MonkeyPatch,
    failure: BaseException,
    expected: type[BaseException],
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    before = snapshot(repo)
    real, calls = staging.os.rename, []

    def rename(source: Path, target: Path) -> None:
        calls.append(source)
        if isinstance(failure, OSError) and len(calls) == 4:
            raise failure
        real(source, target)
        if isinstance(failure, KeyboardInterrupt) and len(calls) == 3:
            raise failure

    monkeypatch.setattr(staging.os, "rename", rename)

    with pytest.raises(expected):
        write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)

    assert snapshot(repo) == before


def test_a_repository_without_a_staging_neighbour_is_written_in_place_naming_what_was(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    @contextlib.contextmanager
    def no_staging(repo: Path) -> Iterator[None]:  # a repository that is a mount point
        yield None

    monkeypatch.setattr(writer, "staging_area", no_staging)
    disk_full_at(monkeypatch, "minilm_model")

    with pytest.raises(RepositoryError, match="minilm_tokenizer had been written already"):
        write_repository(spec=PipelineSpec(), repo=tmp_path / "repo", artifacts=artifacts)


def test_a_later_version_links_the_serving_versions_instead_of_copying_them(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    served = repo / "minilm_model" / "1" / "model.onnx"
    inode = served.stat().st_ino

    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=2)

    assert served.stat().st_ino == inode
    assert (repo / "minilm_model" / "2" / "model.onnx").stat().st_ino != inode


def test_a_later_version_is_added_beside_the_serving_one(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    spec = PipelineSpec()
    write_repository(spec=spec, repo=repo, artifacts=artifacts)
    shared = {f: f.stat().st_ino for f in (repo / "minilm").rglob("*")}
    shared |= {f: f.stat().st_ino for f in (repo / "minilm_feedback").rglob("*")}

    write_repository(spec=spec, repo=repo, artifacts=artifacts, version=2)

    for step in ("minilm_tokenizer", "minilm_model"):
        assert sorted(p.name for p in (repo / step).iterdir() if p.is_dir()) == ["1", "2"]
    assert {f: f.stat().st_ino for f in shared} == shared, "version 2 rewrote what it shares"
    assert json.loads((repo / "minilm" / "tritonhf.json").read_text())["version"] == 1
    assert json.loads((repo / "minilm_model" / "2" / "tritonhf.json").read_text())["version"] == 2
    write_repository(spec=spec, repo=repo, artifacts=artifacts)
    assert not (repo / "minilm_model" / "2").exists()


def test_exports_into_one_repository_wait_for_each_other_and_keep_every_version(
    tmp_path: Path, artifacts: StepArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    caplog.set_level(logging.INFO, logger=staging.__name__)
    held = os.open(repo, os.O_RDONLY | os.O_DIRECTORY)  # another export's lock, as flock sees it
    fcntl.flock(held, fcntl.LOCK_EX)
    with ThreadPoolExecutor(2) as pool:
        later = [
            pool.submit(write_repository, spec=PipelineSpec(), repo=repo, artifacts=artifacts,
                        version=version)
            for version in (2, 3)
        ]  # fmt: skip
        time.sleep(0.5)
        waited = not any(f.done() for f in later) and not (repo / "minilm_model" / "2").exists()
        os.close(held)
        for future in later:
            future.result(timeout=30)

    assert waited
    assert "waiting for another export to finish writing into" in caplog.text
    for step in ("minilm_tokenizer", "minilm_model"):
        assert sorted(p.name for p in (repo / step).iterdir() if p.is_dir()) == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("changed", "expected"),
    [
        (PipelineSpec(task=Task.CLASSIFICATION, labels=("a", "b", "c")), "minilm_tokenizer|task"),
        (PipelineSpec(embedding_size=128), "dims"),
        (PipelineSpec(max_length=128), "max_length"),
        (PipelineSpec(runtime=Runtime.ONNXRUNTIME), "minilm_tokenizer|platform|backend"),
        (PipelineSpec(layout=Layout.MERGED), "minilm_model"),
    ],
)
def test_a_later_version_that_changes_a_shared_config_is_refused_and_writes_nothing(
    tmp_path: Path, artifacts: StepArtifacts, changed: PipelineSpec, expected: str
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    before = files_under(repo)

    with pytest.raises(RepositoryError, match=f"version 2 of 'minilm' would change .*({expected})"):
        write_repository(spec=changed, repo=repo, artifacts=artifacts, version=2)

    assert files_under(repo) == before


def test_a_later_version_keeps_the_served_instances_and_threads_no_flag_sets(
    tmp_path: Path, artifacts: StepArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    # A version 1 written by a release with other defaults (one tokenizer instance, before
    # two): the later version joins its configs instead of being refused.
    repo = tmp_path / "repo"
    older = StepTuning(tokenizer_instances=1, model_instances=3, intra_op_threads=2)
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, tuning=older)
    served = {step: (repo / step / "config.pbtxt").read_text() for step in STEPS}
    caplog.set_level(logging.INFO, logger=writer.__name__)

    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=2)

    assert {step: (repo / step / "config.pbtxt").read_text() for step in STEPS} == served
    assert (repo / "minilm_tokenizer" / "2" / "tokenizer.json").is_file()
    assert "keeps minilm_tokenizer's served tuning" in caplog.text
    with pytest.raises(RepositoryError, match="max_queue_size"):  # a flag sets this one
        write_repository(
            spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=3,
            tuning=StepTuning(batching=BatchingPolicy(max_queue_size=8)),
        )  # fmt: skip


def hand_tune(config: Path) -> str:
    """``config`` as an operator tunes it: batcher delay, preferred sizes, a note of their own."""
    text = config.read_text().replace(
        "dynamic_batching {",
        "dynamic_batching {\n  preferred_batch_size: 8\n  max_queue_delay_microseconds: 2000",
    )
    text += 'parameters {\n  key: "team_note"\n  value {\n    string_value: "tuned"\n  }\n}\n'
    config.write_text(text)
    return text


def test_a_later_version_keeps_a_hand_tuned_batcher_and_parameters_of_ones_own(
    tmp_path: Path, artifacts: StepArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    """A probe's tuned repository was refused a version 2, with advice to repeat flags that
    do not exist; and a version 1 dropped the tuning without a word."""
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    tuned = {step: parse_pbtxt(hand_tune(repo / step / "config.pbtxt")) for step in STEPS}

    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=2)

    assert {step: parse_pbtxt((repo / step / "config.pbtxt").read_text()) for step in STEPS} == (
        tuned
    )
    caplog.set_level(logging.WARNING, logger=writer.__name__)
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    assert (
        "max_queue_delay_microseconds: 2000" not in (repo / STEPS[0] / "config.pbtxt").read_text()
    )
    assert "version 1 of 'minilm' replaces minilm_tokenizer's tuning with the defaults" in (
        caplog.text
    )
    assert "team_note: 'tuned' -> None" in caplog.text


def test_a_later_version_beside_a_config_of_an_older_tritonhf_says_so(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    config = repo / "minilm_model" / "config.pbtxt"
    older = parse_pbtxt(config.read_text())
    del older.parameters["max_length"]  # a parameter a later release added
    config.write_text(to_pbtxt(older))

    with pytest.raises(
        RepositoryError,
        match=r"minilm_model's config was written by an older tritonhf, .*max_length",
    ):
        write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=2)


def test_labels_renamed_in_a_later_version_are_refused(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    old = PipelineSpec(task=Task.CLASSIFICATION, labels=("negative", "positive"))
    write_repository(spec=old, repo=repo, artifacts=artifacts)
    renamed = PipelineSpec(task=Task.CLASSIFICATION, labels=("bad", "good"))

    with pytest.raises(RepositoryError, match=r"minilm's config .*negative.*under another --name"):
        write_repository(spec=renamed, repo=repo, artifacts=artifacts, version=2)


def test_a_later_version_of_a_pipeline_that_is_not_there_is_refused(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    with pytest.raises(RepositoryError, match="export version 1 first"):
        write_repository(spec=PipelineSpec(), repo=tmp_path, artifacts=artifacts, version=2)


@pytest.mark.parametrize("name", ["minilm_tokenizer", "minilm_model", "minilm_feedback"])
def test_a_name_that_is_another_pipelines_model_is_refused(
    tmp_path: Path, artifacts: StepArtifacts, name: str
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}

    with pytest.raises(
        RepositoryError, match=f"would overwrite .*{name}, a model of pipeline 'minilm'"
    ):
        write_repository(spec=PipelineSpec(name=name), repo=repo, artifacts=artifacts)

    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before


def test_a_step_name_taken_by_a_foreign_model_is_refused(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    (repo / "search_model").mkdir(parents=True)
    (repo / "search_model" / "config.pbtxt").write_text('name: "search_model"\nbackend: "python"\n')

    with pytest.raises(RepositoryError, match="search_model, a model tritonhf did not write"):
        write_repository(spec=PipelineSpec(name="search"), repo=repo, artifacts=artifacts)


def test_a_native_pipeline_is_exported_again_over_itself(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    spec = PipelineSpec(runtime=Runtime.ONNXRUNTIME)  # its model step has no parameters
    write_repository(spec=spec, repo=repo, artifacts=artifacts)
    write_repository(spec=spec, repo=repo, artifacts=artifacts)
    write_repository(spec=spec, repo=repo, artifacts=artifacts, version=2)

    assert sorted(p.name for p in (repo / "minilm_model").iterdir() if p.is_dir()) == ["1", "2"]


def test_version_zero_is_refused(tmp_path: Path, artifacts: StepArtifacts) -> None:
    with pytest.raises(RepositoryError, match="start at 1"):
        write_repository(spec=PipelineSpec(), repo=tmp_path, artifacts=artifacts, version=0)


def test_merged_layout_writes_no_tokenizer_and_a_model_step_that_tokenizes(
    tmp_path: Path, artifacts: StepArtifacts
) -> None:
    repo = tmp_path / "repo"
    split = PipelineSpec(runtime=Runtime.PYTHON_ONNX)
    write_repository(spec=split, repo=repo, artifacts=artifacts)
    spec = PipelineSpec(runtime=Runtime.PYTHON_ONNX, layout=Layout.MERGED)

    folders = write_repository(spec=spec, repo=repo, artifacts=artifacts)

    assert folders == [repo / "minilm_model", repo / "minilm", repo / "minilm_feedback"]
    assert not (repo / "minilm_tokenizer").exists()  # the split export's step is gone
    version = repo / "minilm_model" / "1"
    assert sorted(p.name for p in version.iterdir()) == [
        "__pycache__",
        "model.onnx",
        "model.py",
        "tokenizer.json",
    ]
    assert step_class(version / "model.py") is tritonhf.backends.merged.TritonPythonModel
    config = parse_pbtxt((repo / "minilm_model" / "config.pbtxt").read_text(encoding="utf-8"))
    assert config == model_config(spec)


def test_a_bind_mounted_repository_refusing_renames_is_written_in_place(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    def cross_device(source: Path, target: Path) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(staging.os, "rename", cross_device)
    repo = tmp_path / "repo"

    folders = write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)

    assert [folder.name for folder in folders] == [
        "minilm_tokenizer", "minilm_model", "minilm", "minilm_feedback"
    ]  # fmt: skip
    assert (repo / "minilm_model" / "1" / "model.onnx").is_file()
    assert not list(tmp_path.glob(".repo.tritonhf-staging-*"))


def test_a_later_version_is_copied_where_the_filesystem_has_no_hard_links(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    before = (repo / "minilm_model" / "1" / "model.onnx").read_bytes()

    def no_links(source: str, target: str) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(staging.os, "link", no_links)
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts, version=2)

    assert (repo / "minilm_model" / "1" / "model.onnx").read_bytes() == before
    assert (repo / "minilm_model" / "2" / "model.onnx").is_file()


@pytest.mark.parametrize("relative", [".", "sub/.."])
def test_a_repository_given_as_dot_is_staged_beside_it_not_inside(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch, relative: str
) -> None:
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    monkeypatch.chdir(repo)
    seen: list[str] = []
    real = writer._write_model

    def write(root: Path, *args: Any, **kwargs: Any) -> Path:
        seen.append(str(Path(root).resolve().parent))
        return real(root, *args, **kwargs)

    monkeypatch.setattr(writer, "_write_model", write)

    write_repository(spec=PipelineSpec(), repo=Path(relative), artifacts=artifacts)

    assert set(seen) == {str(tmp_path)}  # the staging area sits beside the repository
    assert sorted(p.name for p in repo.iterdir()) == [
        "minilm", "minilm_feedback", "minilm_model", "minilm_tokenizer", "sub"
    ]  # fmt: skip


def test_staging_areas_of_killed_exports_are_cleared_unless_they_hold_replaced_folders(
    tmp_path: Path, artifacts: StepArtifacts, caplog: pytest.LogCaptureFixture
) -> None:
    dead = 2**22 + 1  # above Linux's largest pid: no process has it
    killed = tmp_path / f".repo.tritonhf-staging-{dead}-abc"
    (killed / "minilm_model").mkdir(parents=True)
    holding = tmp_path / f".repo.tritonhf-staging-{dead}-def"
    (holding / ".replaced" / "minilm_model").mkdir(parents=True)
    running = tmp_path / f".repo.tritonhf-staging-{os.getpid()}-ghi"  # a live export's
    running.mkdir()

    write_repository(spec=PipelineSpec(), repo=tmp_path / "repo", artifacts=artifacts)

    assert not killed.exists()
    assert holding.exists()
    assert running.exists()
    assert f"{holding} holds minilm_model, moved out of the repository" in caplog.text


def test_another_users_staging_area_beside_the_repository_is_left_alone(
    tmp_path: Path, artifacts: StepArtifacts, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beside a repository in /tmp, another user's fake staging area made serve (as root)
    move a step out and delete it, and move a planted model in, which Triton ran."""
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    before = snapshot(repo)
    fake = tmp_path / f".repo.tritonhf-staging-{2**22 + 1}-abc"  # a pid no process has
    (fake / ".replaced" / "planted" / "1").mkdir(parents=True)
    (fake / ".moving.json").write_text(json.dumps({"names": ["minilm_feedback"], "removed": []}))
    (fake / ".replaced" / "planted" / "1" / "model.py").write_text("print('pwned')")
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)  # what was made so far: another user's

    staging.recover_killed_exports(repo)

    assert snapshot(repo) == before
    assert (fake / ".replaced" / "planted").is_dir()


@pytest.mark.parametrize("name", ["../elsewhere", "/abs", ".", "", "a/b", "a\0", 3])
def test_a_journal_naming_anything_but_a_repository_folder_is_not_followed(
    tmp_path: Path, name: object
) -> None:
    (tmp_path / ".moving.json").write_text(json.dumps({"names": ["minilm", name], "removed": []}))
    assert staging._journal(tmp_path) is None
    (tmp_path / ".moving.json").write_text(json.dumps({"names": ["minilm"], "removed": [name]}))
    assert staging._journal(tmp_path) is None
    (tmp_path / ".moving.json").write_text(json.dumps({"names": ["minilm"], "removed": []}))
    assert staging._journal(tmp_path) == {"names": ["minilm"], "removed": []}


def test_a_parent_that_cannot_be_written_is_written_in_place_with_a_warning(
    tmp_path: Path,
    artifacts: StepArtifacts,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refused(**kwargs: Any) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(staging.tempfile, "mkdtemp", refused)

    write_repository(spec=PipelineSpec(), repo=tmp_path / "repo", artifacts=artifacts)

    assert (tmp_path / "repo" / "minilm_model" / "1" / "model.onnx").is_file()
    assert "not beside it first (Permission denied)" in caplog.text


@pytest.mark.parametrize("renames", [1, 3, 4, 8])
def test_a_move_killed_partway_is_undone_by_the_next_export_or_serve(
    tmp_path: Path, artifacts: StepArtifacts, caplog: pytest.LogCaptureFixture, renames: int
) -> None:
    """A probe killed an export at its 3rd rename: the new tokenizer sat with the old model,
    and a restarted server served that mix as READY (wrong embeddings)."""
    repo = tmp_path / "repo"
    write_repository(spec=PipelineSpec(), repo=repo, artifacts=artifacts)
    (repo / "minilm_model" / "1" / "old.txt").write_text("the serving export")
    before = snapshot(repo)
    assert artifacts.onnx_path is not None
    kill_an_export_midway(repo, artifacts.onnx_path, artifacts.tokenizer_json, renames=renames)
    assert snapshot(repo) != before

    staging.recover_killed_exports(repo)

    assert snapshot(repo) == before
    assert not list(tmp_path.glob(".repo.tritonhf-staging-*"))
    moved = "minilm_tokenizer, minilm_model, minilm, minilm_feedback"
    assert f"was killed while it moved {moved} in: undone" in caplog.text


def test_work_folders_of_killed_exports_are_deleted_and_a_running_ones_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonhf.export import pipeline

    monkeypatch.setattr(pipeline.tempfile, "tempdir", str(tmp_path))
    killed = tmp_path / f"{pipeline.WORK_PREFIX}{2**22 + 1}-abc"  # no process has that pid
    running = tmp_path / f"{pipeline.WORK_PREFIX}{os.getpid()}-def"
    for folder in (killed, running):
        folder.mkdir()
        (folder / "model.onnx").write_bytes(b"graph")

    pipeline._clear_killed_work_folders()

    assert not killed.exists()
    assert running.exists()


def test_another_users_work_folder_under_a_killed_exports_name_is_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tritonhf.export import pipeline

    monkeypatch.setattr(pipeline.tempfile, "tempdir", str(tmp_path))
    theirs = tmp_path / f"{pipeline.WORK_PREFIX}{2**22 + 1}-abc"
    theirs.mkdir()
    uid = os.geteuid()
    monkeypatch.setattr(os, "geteuid", lambda: uid + 1)

    pipeline._clear_killed_work_folders()

    assert theirs.exists()
