"""What each drift feature of an embedder scores on traffic like its reference and unlike it.

Builds the export's reference profile (token lengths and the embeddings' similarity to their
centroid) of the package corpus with the exported graph of a repository, then scores windows
of other texts against it, as the served steps do (one window of 500 texts per feature):

- the corpus itself (what the e2e test sends; slightly closer to the anchor than new texts);
- lines of this checkout's docs (English prose on one technical subject) and Python source;
- the same lines resampled to the corpus's token-length bins: another subject at about the
  reference's lengths, which is what token length alone cannot see.

    .venv/bin/python benchmarks/drift_features.py [--repo model_repository] [--name minilm]
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).parent.parent
WINDOW = 500


def lines_of(pattern: str, *, prose: bool) -> list[str]:
    """The checkout's non-trivial lines of files matching ``pattern``, each once, in order."""
    found: dict[str, None] = {}
    for path in sorted(ROOT.glob(pattern)):
        for line in path.read_text(encoding="utf-8").splitlines():
            text = line.strip()
            if len(text) > 15 and (text[0].isalpha() or not prose):
                found.setdefault(text)
    return list(found)


def length_matched(
    texts: Sequence[str], like: Sequence[int], bin_of: Callable[[str], int], rng: random.Random
) -> list[str]:
    """Texts drawn so that their token-length bins follow the bins ``like`` holds.

    The candidates are the lines and runs of 2, 4 and 8 consecutive lines (paragraphs, for
    the corpus's long bins).
    """
    by_bin: dict[int, list[str]] = {}
    for run in (1, 2, 4, 8):
        for start in range(0, len(texts) - run + 1, run):
            text = " ".join(texts[start : start + run])
            by_bin.setdefault(bin_of(text), []).append(text)
    missing = sorted(set(like) - set(by_bin))
    if missing:
        raise SystemExit(f"no text of token-length bins {missing} to match the corpus with")
    return [rng.choice(by_bin[b]) for b in like]


def main() -> int:
    """Print one row per traffic set: its PSI per feature, beside the alert threshold."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from tritonhf import data
    from tritonhf.observability.drift import (
        ALERT_THRESHOLD,
        EMBEDDING_SIMILARITY,
        TOKEN_LENGTH,
        DriftWindow,
    )
    from tritonhf.observability.reference import build_reference_profile, onnx_outputs_of

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    parser.add_argument("--name", default="minilm")
    args = parser.parse_args()
    manifest = args.repo / args.name / "tritonhf.json"
    try:
        spec = json.loads(manifest.read_text(encoding="utf-8"))["spec"]
    except (OSError, ValueError, KeyError) as exc:
        raise SystemExit(f"{manifest}: not a tritonhf export ({exc})") from None
    if spec["task"] != "embedding" or spec["layout"] != "split":
        raise SystemExit(
            f"{args.name} is a {spec['task']} pipeline ({spec['layout']} layout): this script "
            "scores a split embedder's features"
        )
    step = args.repo / f"{args.name}_model" / "1"
    served = Tokenizer.from_file(str(args.repo / f"{args.name}_tokenizer" / "1" / "tokenizer.json"))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=served)
    max_length = served.truncation["max_length"] if served.truncation else 256
    graph = step / "model.onnx"
    embed = onnx_outputs_of(graph, tokenizer, output="EMBEDDING", max_length=max_length)
    corpus = data.sentences()
    profile = build_reference_profile(
        texts=corpus, source="corpus", tokenizer=tokenizer, max_length=max_length, embedder=embed
    )
    lengths, similarity = profile.features[TOKEN_LENGTH], profile.features[EMBEDDING_SIMILARITY]

    def length_bin(text: str) -> int:
        count = len(tokenizer(text, truncation=True, max_length=max_length)["input_ids"])
        return int(lengths.bin_numbers([count])[0])

    def scores(texts: Sequence[str]) -> tuple[float, float]:
        by_length = DriftWindow(lengths, WINDOW, 1)
        by_length.add_bins(length_bin(t) for t in texts)
        by_similarity = DriftWindow(similarity, WINDOW, 1)
        by_similarity.add_values(similarity.similarities(np.asarray(embed(list(texts)))))
        return by_length.score() or 0.0, by_similarity.score() or 0.0

    rng = random.Random(0)  # noqa: S311  # a fixed sample, not a secret
    docs = lines_of("docs/**/*.md", prose=True)
    source = lines_of("tritonhf/**/*.py", prose=False)
    corpus_bins = [length_bin(t) for t in (corpus * 2)[:WINDOW]]
    traffic = {
        "the corpus itself": (corpus * 2)[:WINDOW],
        "docs lines": rng.sample(docs, WINDOW),
        "docs lines, corpus lengths": length_matched(docs, corpus_bins, length_bin, rng),
        "source lines": rng.sample(source, WINDOW),
        "source lines, corpus lengths": length_matched(source, corpus_bins, length_bin, rng),
    }
    print(f"reference: the package corpus ({len(corpus)} texts); model: {graph}")
    print(f"\n| traffic ({WINDOW} texts) | {TOKEN_LENGTH} PSI | {EMBEDDING_SIMILARITY} PSI |")
    print("|---|---:|---:|")
    for name, texts in traffic.items():
        by_length, by_similarity = scores(texts)
        print(f"| {name} | {by_length:.3f} | {by_similarity:.3f} |")
    print(f"\nalert threshold: {ALERT_THRESHOLD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
