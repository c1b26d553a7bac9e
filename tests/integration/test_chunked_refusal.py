"""A call over the model's max batch is sent in chunks; a refusal names the caller's index."""

from __future__ import annotations

import pytest

from tests.conftest import CLASSIFIER
from tritonhf.client import InvalidInputError, TritonHFClient


@pytest.mark.parametrize(
    ("model", "count", "bad"),
    [("minilm", 100, 70), (CLASSIFIER, 40, 37)],
    ids=["embed-in-chunks-of-64", "classify-in-chunks-of-16"],
)
def test_a_refusal_past_the_first_chunk_names_the_callers_index(
    client: TritonHFClient, model: str, count: int, bad: int
) -> None:
    texts = [f"sentence {i}" for i in range(count)]
    texts[bad] = "\u200b"  # not blank to the client, which sends it; the server refuses it
    call = client.embed if model == "minilm" else client.classify

    with pytest.raises(InvalidInputError, match=rf"\] TEXT\[{bad}\] has no tokens") as raised:
        call(texts, model=model)

    assert str(raised.value).count("TEXT[") == 1
    assert client.embed(["still serving"]).shape == (1, 384)
