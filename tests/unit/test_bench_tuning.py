"""The tuning levers kept in the model step's hot path: length groups and thread spinning."""

from __future__ import annotations

import numpy as np
import pytest

from tritonhf.backends import onnx_runtime as step
from tritonhf.repository.configs import StepTuning, model_config
from tritonhf.spec import PipelineSpec, Runtime


def padded_and_real(widths: list[int], rows: list[int], groups: list[list[int]]) -> tuple[int, int]:
    padded = sum(max(widths[i] for i in g) * sum(rows[i] for i in g) for g in groups)
    return padded, sum(w * r for w, r in zip(widths, rows, strict=True))


def test_slack_zero_keeps_one_group_in_arrival_order() -> None:
    assert step.length_groups([30, 5, 120], [1, 1, 1], 0) == [[0, 1, 2]]


def test_similar_lengths_share_one_group() -> None:
    assert step.length_groups([17, 16, 18, 15], [1, 1, 1, 1], 1.5) == [[3, 1, 0, 2]]


def test_a_long_text_does_not_pad_the_short_ones() -> None:
    widths, rows = [12, 200, 14, 10, 190], [1, 1, 1, 1, 1]
    groups = step.length_groups(widths, rows, 1.5)
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert [3, 0, 2] in groups
    padded, real = padded_and_real(widths, rows, groups)
    assert padded <= 1.5 * real
    one_group, _ = padded_and_real(widths, rows, [[0, 1, 2, 3, 4]])
    assert one_group > 2 * real


@pytest.mark.parametrize("seed", range(5))
def test_every_group_stays_within_the_slack(seed: int) -> None:
    rng = np.random.default_rng(seed)
    widths = [int(w) for w in rng.integers(3, 256, size=40)]
    rows = [int(r) for r in rng.integers(1, 4, size=40)]
    groups = step.length_groups(widths, rows, 1.3)
    assert sorted(i for g in groups for i in g) == list(range(40))
    for group in groups:
        padded, real = padded_and_real(
            [widths[i] for i in group], [rows[i] for i in group], [list(range(len(group)))]
        )
        assert padded <= 1.3 * real


@pytest.mark.parametrize("seed", range(5))
def test_the_token_budget_caps_every_group_but_never_splits_a_request(seed: int) -> None:
    rng = np.random.default_rng(seed)
    widths = [int(w) for w in rng.integers(3, 256, size=40)]
    rows = [int(r) for r in rng.integers(1, 4, size=40)]
    groups = step.length_groups(widths, rows, 0, 512)
    assert sorted(i for g in groups for i in g) == list(range(40))
    for group in groups:
        padded = max(widths[i] for i in group) * sum(rows[i] for i in group)
        assert padded <= 512 or len(group) == 1


def test_long_texts_run_two_per_call_and_short_ones_together() -> None:
    assert step.length_groups([200, 210, 205, 190], [1, 1, 1, 1], 1.5, 512) == [[3, 0], [2, 1]]
    assert step.length_groups([16] * 32, [1] * 32, 1.5, 512) == [list(range(32))]
    assert step.length_groups([300], [4], 1.5, 512) == [[0]]


class FakeSession:
    """Records the batch widths it is given; answers each row with its own row sum."""

    def __init__(self) -> None:
        self.widths: list[int] = []

    def run(self, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.widths.append(feeds["input_ids"].shape[1])
        ids = feeds["input_ids"]
        return [ids.sum(axis=1, keepdims=True).astype(np.float32)]


def _model(slack: float) -> step.TritonPythonModel:
    model = step.TritonPythonModel()
    model.settings = step.SessionSettings(output_names=("EMBEDDING",), group_slack=slack)
    model.session = FakeSession()
    return model


def _request(lengths: list[int]) -> dict[str, np.ndarray]:
    width = max(lengths)
    ids = np.zeros((len(lengths), width), dtype=np.int64)
    for row, length in enumerate(lengths):
        ids[row, :length] = np.arange(1, length + 1)
    return {"input_ids": ids, "attention_mask": (ids > 0).astype(np.int64)}


@pytest.mark.parametrize("slack", [0.0, 1.5])
def test_grouped_run_returns_rows_in_request_order(slack: float) -> None:
    model = _model(slack)
    batches = [_request([5]), _request([150, 148]), _request([7, 6]), _request([149])]
    (out,) = model.run_grouped(model.session, ["EMBEDDING"], batches)
    expected = [n * (n + 1) / 2 for n in (5, 150, 148, 7, 6, 149)]
    assert out[:, 0].tolist() == expected
    assert model.session.widths == ([150] if slack == 0 else [7, 150])


def test_settings_read_spinning_and_slack_with_old_behaviour_when_absent() -> None:
    config = {"output": [{"name": "EMBEDDING"}], "parameters": {}}
    settings = step.SessionSettings.from_model_config(config)
    assert (settings.spinning, settings.group_slack) == (True, 0.0)
    config["parameters"] = {
        "intra_op_spinning": {"string_value": "0"},
        "length_group_slack": {"string_value": "1.5"},
    }
    settings = step.SessionSettings.from_model_config(config)
    assert (settings.spinning, settings.group_slack) == (False, 1.5)


def test_export_writes_the_tuned_defaults_into_the_model_step() -> None:
    config = model_config(PipelineSpec(runtime=Runtime.PYTHON_ONNX))
    parsed = step.SessionSettings.from_model_config(
        {
            "output": [{"name": o.name} for o in config.output],
            "parameters": {
                k: {"string_value": v.string_value} for k, v in config.parameters.items()
            },
        }
    )
    tuning = StepTuning()
    assert parsed.spinning is tuning.intra_op_spinning
    assert parsed.group_slack == tuning.length_group_slack
