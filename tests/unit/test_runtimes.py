"""TensorRT profiles, runtime/precision combinations, and what a server can serve."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from tritonhf.errors import ConfigError, ExportError, RepositoryError
from tritonhf.export.tensorrt import OptimizationProfile, ShapeRange, tensorrt_module
from tritonhf.export.variants import VariantRequest, check_request
from tritonhf.repository.compat import check_servable, repository_needs
from tritonhf.repository.configs import (
    ensemble_config,
    model_config,
    to_pbtxt,
    tokenizer_config,
)
from tritonhf.spec import PipelineSpec, Precision, Runtime, Task


def test_profile_spans_the_export_options_with_opt_clipped_into_range() -> None:
    profile = OptimizationProfile.for_spec(PipelineSpec(max_batch_size=4, max_length=64))

    assert profile.shapes() == ((1, 1), (4, 64), (4, 64))
    wide = OptimizationProfile.for_spec(PipelineSpec(max_batch_size=64, max_length=256))
    assert wide.as_dict() == {"min": [1, 1], "opt": [8, 128], "max": [64, 256]}


@pytest.mark.parametrize(("low", "opt", "high"), [(0, 1, 2), (2, 1, 4), (1, 5, 4)])
def test_a_profile_range_must_be_ordered(low: int, opt: int, high: int) -> None:
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        ShapeRange(low, opt, high)


def test_without_the_tensorrt_package_the_error_says_what_to_install_and_use() -> None:
    pytest.importorskip("torch")
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is installed here")
    with pytest.raises(ExportError, match="tensorrt-cu12") as info:
        tensorrt_module()
    assert "--runtime python-onnx" in str(info.value)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (VariantRequest(Precision.FP32, True, Runtime.TENSORRT), "contrib ops"),
        (VariantRequest(Precision.INT8, False, Runtime.TENSORRT), "calibration"),
        (
            VariantRequest(Precision.FP32, False, Runtime.TENSORRT, task=Task.CLASSIFICATION),
            "LABEL strings",
        ),
        (VariantRequest(Precision.INT8, False, Runtime.PYTHON_TORCH), "fp32 or fp16"),
        (VariantRequest(Precision.FP32, True, Runtime.PYTHON_TORCH), "ONNX graphs"),
    ],
    ids=["trt-optimize", "trt-int8", "trt-classifier", "torch-int8", "torch-optimize"],
)
def test_combinations_no_runtime_can_serve_are_refused_up_front(
    request_: VariantRequest, message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        check_request(request_)


@pytest.mark.parametrize(
    "request_",
    [
        VariantRequest(Precision.FP16, False, Runtime.TENSORRT),
        VariantRequest(Precision.FP16, False, Runtime.PYTHON_TORCH),
        VariantRequest(Precision.INT8, True, Runtime.PYTHON_ONNX),
        VariantRequest(Precision.FP16, True, Runtime.ONNXRUNTIME),
    ],
)
def test_servable_combinations_pass(request_: VariantRequest) -> None:
    check_request(request_)


def write_pipeline(repo: Path, spec: PipelineSpec, manifest: dict[str, object]) -> None:
    for config in (
        tokenizer_config(spec, pad_token_id=0),
        model_config(spec),
        ensemble_config(spec),
    ):
        folder = repo / config.name
        folder.mkdir(parents=True)
        (folder / "config.pbtxt").write_text(to_pbtxt(config))
    (repo / spec.name / "tritonhf.json").write_text(json.dumps(manifest))


def test_repository_needs_name_each_backend_and_the_plan_version(tmp_path: Path) -> None:
    write_pipeline(
        tmp_path,
        PipelineSpec(name="trt", runtime=Runtime.TENSORRT),
        {"spec": {"name": "trt"}, "tensorrt": {"version": "10.5.0"}},
    )
    needs = {n.name: (n.backend, n.tensorrt_version) for n in repository_needs(tmp_path)}
    assert needs == {
        "trt": (None, None),
        "trt_model": ("tensorrt", "10.5.0"),
        "trt_tokenizer": ("python", None),
    }


def test_a_server_without_the_backend_refuses_with_every_reason(tmp_path: Path) -> None:
    write_pipeline(
        tmp_path, PipelineSpec(name="a", runtime=Runtime.ONNXRUNTIME), {"spec": {"name": "a"}}
    )
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    with pytest.raises(RepositoryError) as info:
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
    message = str(info.value)
    assert "a_model needs Triton's onnxruntime backend, which S lacks" in message
    assert "b_model" not in message
    check_servable(
        tmp_path, backends=frozenset({"python", "onnxruntime"}), tensorrt_version=None, server="S"
    )


def test_a_plan_from_another_tensorrt_is_refused(tmp_path: Path) -> None:
    write_pipeline(
        tmp_path,
        PipelineSpec(name="trt", runtime=Runtime.TENSORRT),
        {"spec": {"name": "trt"}, "tensorrt": {"version": "10.3.0.26"}},
    )
    backends = frozenset({"python", "tensorrt"})
    with pytest.raises(RepositoryError, match=r"TensorRT 10\.3\.0\.26 plan; S runs TensorRT 10\.5"):
        check_servable(tmp_path, backends=backends, tensorrt_version="10.5.0.18", server="S")
    check_servable(tmp_path, backends=backends, tensorrt_version="10.3.0.30", server="S")
    # A later version's manifest is in its version folder: its plan is the one that serves.
    (tmp_path / "trt_model" / "2").mkdir()
    (tmp_path / "trt_model" / "2" / "tritonhf.json").write_text(
        json.dumps({"spec": {"name": "trt"}, "version": 2, "tensorrt": {"version": "10.5.0"}})
    )
    check_servable(tmp_path, backends=backends, tensorrt_version="10.5.0.18", server="S")
    with pytest.raises(RepositoryError, match=r"TensorRT 10\.5\.0 plan; S runs TensorRT 10\.3"):
        check_servable(tmp_path, backends=backends, tensorrt_version="10.3.0.30", server="S")


DAMAGE = {
    "unparsable-config": (("b_model", "config.pbtxt"), b"name: {", "b_model/config"),
    "config-not-utf8": (("b_model", "config.pbtxt"), b"\xff\xfe", "b_model/config"),
    "manifest-not-an-object": (("b", "tritonhf.json"), b"[1]", "is not a JSON object"),
    "no-model-py": (("b_model", "1", "model.py"), None, "without their code: b_model/1/model.py"),
}


@pytest.mark.parametrize(("where", "content", "message"), DAMAGE.values(), ids=DAMAGE.keys())
def test_a_broken_model_folder_is_refused_naming_it(
    tmp_path: Path, where: tuple[str, ...], content: bytes | None, message: str
) -> None:
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    for step in ("b_tokenizer", "b_model"):
        (tmp_path / step / "1").mkdir()
        (tmp_path / step / "1" / "model.py").write_text("")
    check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")

    damaged = tmp_path.joinpath(*where)
    if content is None:
        damaged.unlink()
    else:
        damaged.write_bytes(content)

    with pytest.raises(RepositoryError, match=message):
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")


def test_python_steps_whose_packages_this_environment_lacks_are_refused_naming_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A serving environment without the serve extra failed only inside Triton (its table
    said `No module named 'onnxruntime'`), after ~10 s and 125 lines of log."""
    import importlib.util

    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    for step, module in (("b_tokenizer", "tokenizer"), ("b_model", "onnx_runtime")):
        (tmp_path / step / "1").mkdir()
        shim = f"from tritonhf.backends.{module} import TritonPythonModel\n"
        (tmp_path / step / "1" / "model.py").write_text(shim)
    needs = {n.name: n.packages for n in repository_needs(tmp_path)}
    assert needs == {"b": (), "b_model": ("onnxruntime",), "b_tokenizer": ("tokenizers",)}
    check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")

    installed = importlib.util.find_spec
    absent = {"onnxruntime", "tokenizers"}
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name in absent else installed(name)
    )
    with pytest.raises(RepositoryError) as info:
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
    message = str(info.value)
    assert "onnxruntime (for b_model); tokenizers (for b_tokenizer)" in message
    assert message.endswith("pip install 'tritonhf[serve]'")


def test_a_backup_of_a_version_folder_is_not_a_version(tmp_path: Path) -> None:
    """``2.bak`` (a copy of version 2, manifest and all) made the check raise a ValueError."""
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    for version in ("2", "2.bak"):
        (tmp_path / "b_model" / version).mkdir()
        (tmp_path / "b_model" / version / "tritonhf.json").write_text(
            json.dumps({"spec": {"name": "b"}, "version": 2})
        )
        (tmp_path / "b_model" / version / "model.py").write_text("")
    assert (
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
        == []
    )


def test_folders_triton_would_take_for_broken_models_are_refused_naming_them(
    tmp_path: Path,
) -> None:
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    (tmp_path / "README.md").write_text("files are ignored\n")
    (tmp_path / "own" / "1").mkdir(parents=True)  # Triton completes a config itself
    (tmp_path / "own" / "1" / "model.py").write_text("")
    check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
    (tmp_path / ".git" / "objects").mkdir(parents=True)
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "notes.md").write_text("")

    with pytest.raises(RepositoryError, match=r"folders that are not models: \.git, scratch \("):
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")


def test_a_model_folder_without_a_config_needs_the_backend_of_its_file(tmp_path: Path) -> None:
    (tmp_path / "plain" / "1").mkdir(parents=True)
    (tmp_path / "plain" / "1" / "model.onnx").write_bytes(b"")
    with pytest.raises(RepositoryError, match="plain needs Triton's onnxruntime backend"):
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")


def test_a_copy_of_an_older_tritonhfs_step_is_named_in_a_warning(tmp_path: Path) -> None:
    """Exports before 2026-11-28 copied the step; one failed to load after an update
    (`BusyBoard.for_instance() missing 1 required positional argument`)."""
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    (tmp_path / "b_tokenizer" / "1").mkdir()
    own = "from tritonhf.spec import TEXT\n\n\nclass TritonPythonModel:\n    pass\n"
    (tmp_path / "b_tokenizer" / "1" / "model.py").write_text(own)  # a team's own, using tritonhf
    (tmp_path / "b_model" / "1").mkdir()
    copy = '"""Copied into the model repository."""\nimport numpy as np\n\n'
    copy += "from tritonhf.backends.busy import BusyBoard\n\n\nclass TritonPythonModel:\n    pass\n"
    (tmp_path / "b_model" / "1" / "model.py").write_text(copy)

    (warning,) = check_servable(
        tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S"
    )
    assert warning.startswith("b_model run a copy of an older tritonhf's step code")
    assert "re-export" in warning


def test_a_tokenizer_and_model_step_of_different_max_length_are_refused(tmp_path: Path) -> None:
    """A hand edit of one served; the model step then refused long texts as bad input."""
    manifest = {"spec": {"name": "b", "max_length": 256}}
    write_pipeline(tmp_path, PipelineSpec(name="b", max_length=256), manifest)
    for step, module in (("b_tokenizer", "tokenizer"), ("b_model", "onnx_runtime")):
        (tmp_path / step / "1").mkdir()
        shim = f"from tritonhf.backends.{module} import TritonPythonModel\n"
        (tmp_path / step / "1" / "model.py").write_text(shim)
    check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
    config = tmp_path / "b_tokenizer" / "config.pbtxt"
    edited = re.sub(
        r'(key: "max_length"\s*value \{\s*string_value: )"256"', r'\1"512"', config.read_text()
    )
    assert edited != config.read_text()
    config.write_text(edited)

    with pytest.raises(RepositoryError, match="b_tokenizer: 512 tokens, but b_model: 256"):
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
    # Both raised past what the export ran the model at: served, with a warning.
    model_config = tmp_path / "b_model" / "config.pbtxt"
    model_config.write_text(
        re.sub(
            r'(key: "max_length"\s*value \{\s*string_value: )"256"',
            r'\1"512"',
            model_config.read_text(),
        )
    )
    (warning,) = check_servable(
        tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S"
    )
    assert "b_model 512 (exported at 256), b_tokenizer 512 (exported at 256)" in warning
    for step in ("b_tokenizer", "b_model"):  # a team's own pair of models: not tritonhf's
        (tmp_path / step / "1" / "model.py").write_text("class TritonPythonModel:\n    pass\n")
    check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")


def test_a_folder_this_user_cannot_read_is_named_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A volume's root-owned lost+found (mode 700) made the check raise PermissionError."""
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    (tmp_path / "lost+found").mkdir()
    is_file, iterdir = Path.is_file, Path.iterdir

    def denied(method: Any) -> Any:
        def call(path: Path) -> Any:
            if "lost+found" in path.parts:  # as a user other than root sees it
                raise PermissionError(13, "Permission denied", str(path))
            return method(path)

        return call

    monkeypatch.setattr(Path, "is_file", denied(is_file))
    monkeypatch.setattr(Path, "iterdir", denied(iterdir))

    with pytest.raises(RepositoryError, match=r"not models: lost\+found .*serve a folder inside"):
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")


@pytest.mark.parametrize("denied", [".", "b_model/config.pbtxt"], ids=["repository", "a-file"])
def test_what_this_user_cannot_read_is_named_with_its_owner_and_mode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denied: str
) -> None:
    """An export by root under umask 077, served by another user: the unreadable repository was
    a PermissionError traceback; an unreadable file failed deep in Triton's log."""
    write_pipeline(tmp_path, PipelineSpec(name="b"), {"spec": {"name": "b"}})
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: Path(path) != tmp_path / denied and access(path, mode)
    )

    with pytest.raises(RepositoryError, match=r"cannot read .* belongs to uid \d+ with mode"):
        check_servable(tmp_path, backends=frozenset({"python"}), tensorrt_version=None, server="S")
