"""Benchmark: do a classifier's label and score belong inside the ONNX graph, or after it.

Exports a MiniLM classifier (seeded random 3-class head: timing does not depend on the
weights) twice: PROBABILITIES only, and with ArgMax + LabelEncoder + ReduceMax appended
(what `tritonhf export` ships). Runs both on the same corpus sentences one at a time,
alternating rounds; the numpy variant does argmax, score and the label lookup as a separate
postprocess would. Prints a table.

    .venv/bin/python benchmarks/label_placement.py [--texts 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from alternating import alternate, print_rates

LABELS = ("negative", "neutral", "positive")


def main() -> None:
    """Export both variants, time them on the same sentences, print the table."""
    import onnxruntime as ort
    import torch
    from transformers import AutoModelForSequenceClassification

    from tritonhf import data
    from tritonhf.export.onnx_export import (
        add_label_outputs,
        classifier_probabilities,
        export_onnx,
    )
    from tritonhf.export.source import DEFAULT_MODEL, load_fast_tokenizer, resolve_model

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--texts", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    source = resolve_model(DEFAULT_MODEL)
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(  # nosec B615 - local folder
        source.path, num_labels=len(LABELS), attn_implementation="eager"
    ).eval()
    tokenizer = load_fast_tokenizer(source)
    # Removed when the script exits, however it exits.
    scratch = tempfile.TemporaryDirectory(prefix="label-bench-")
    work = Path(scratch.name)
    probabilities = classifier_probabilities(model, token_types=True)
    export_onnx(probabilities, work / "probs.onnx", output="PROBABILITIES")
    shutil.copyfile(work / "probs.onnx", work / "labels.onnx")
    add_label_outputs(work / "labels.onnx", LABELS)
    probs = ort.InferenceSession(str(work / "probs.onnx"), providers=["CPUExecutionProvider"])
    labelled = ort.InferenceSession(str(work / "labels.onnx"), providers=["CPUExecutionProvider"])
    feeds = []
    for text in data.sentences()[: args.texts]:
        batch = tokenizer([text], truncation=True, max_length=256, return_tensors="np")
        feeds.append({k: batch[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    names = np.array([label.encode() for label in LABELS], dtype=object)

    def in_graph(feed: dict[str, Any]) -> Any:
        label, score, _probabilities = labelled.run(["LABEL", "SCORE", "PROBABILITIES"], feed)
        return np.vectorize(lambda x: str(x).encode(), otypes=[object])(label), score

    def in_numpy(feed: dict[str, Any]) -> Any:
        probabilities = probs.run(None, feed)[0]
        best = probabilities.argmax(axis=1)
        return names[best][:, None], probabilities.max(axis=1, keepdims=True)

    functions: dict[str, Callable[[dict[str, Any]], Any]] = {
        "labels in graph": in_graph,
        "labels in numpy": in_numpy,
    }
    runs = alternate(functions, feeds, args.rounds)
    agree = all(
        (in_graph(f)[0] == in_numpy(f)[0]).all() and np.allclose(in_graph(f)[1], in_numpy(f)[1])
        for f in feeds
    )
    print_rates(runs, base="labels in graph")
    print(f"same labels and scores on {len(feeds)} sentences: {agree}")


if __name__ == "__main__":
    main()
