"""The CUDA-graph buckets: which padded shape a batch is replayed at (no GPU needed)."""

from __future__ import annotations

import pytest

from tritonhf.backends.cuda_graphs import WIDTHS, bucket, row_buckets, width_buckets


@pytest.mark.parametrize(
    ("max_rows", "expected"),
    [
        (1, (1,)),
        (2, (1, 2)),
        (8, (1, 2, 4, 8)),
        (64, (1, 2, 4, 8, 16, 32, 64)),
        (48, (1, 2, 4, 8, 16, 32, 48)),
    ],
)
def test_rows_are_powers_of_two_up_to_the_batch_limit(
    max_rows: int, expected: tuple[int, ...]
) -> None:
    assert row_buckets(max_rows) == expected


@pytest.mark.parametrize(
    ("size", "expected"), [(1, 8), (8, 8), (9, 16), (17, 24), (200, 256), (512, 512)]
)
def test_a_width_is_padded_to_the_smallest_bucket_that_holds_it(size: int, expected: int) -> None:
    assert bucket(size, WIDTHS) == expected


def test_past_the_largest_bucket_there_is_none_and_the_batch_runs_eagerly() -> None:
    assert bucket(513, WIDTHS) is None
    assert bucket(65, row_buckets(64)) is None


@pytest.mark.parametrize(
    ("max_width", "expected"),
    [
        (0, WIDTHS),
        (512, WIDTHS),
        (40, (8, 16, 24, 32, 40)),
        (64, (8, 16, 24, 32, 48, 64)),
        (5, (5,)),
        (1024, WIDTHS),
    ],
)
def test_no_width_bucket_is_wider_than_the_model_takes(
    max_width: int, expected: tuple[int, ...]
) -> None:
    assert width_buckets(max_width) == expected
