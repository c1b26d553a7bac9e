"""Small random models built from a config, with MiniLM's real tokenizer: fast to export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tritonhf.export.source import DEFAULT_MODEL, resolve_model

TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
)
SENTIMENT_LABELS = ("negative", "neutral", "positive")


def tiny_model(
    folder: Path,
    architecture: str = "bert",
    *,
    pooling: str | None = None,
    labels: tuple[str, ...] = (),
) -> Path:
    """A randomly initialised 2-layer model saved as safetensors; a classifier if ``labels``."""
    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        DistilBertConfig,
        DistilBertModel,
        T5Config,
        T5EncoderModel,
    )

    torch.manual_seed(0)
    if architecture == "bert":
        config = BertConfig(
            hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=128,
        )  # fmt: skip
        if labels:
            config.id2label = dict(enumerate(labels))
            config.label2id = {label: i for i, label in enumerate(labels)}
            model = BertForSequenceClassification(config)
        else:
            model = BertModel(config)
    elif architecture == "t5":  # an encoder without the BERT family's graph patterns
        model = T5EncoderModel(
            T5Config(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_heads=2, vocab_size=30522)
        )
    else:
        model = DistilBertModel(
            DistilBertConfig(
                dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128
            )
        )
    model.save_pretrained(folder)
    source = resolve_model(DEFAULT_MODEL).path
    for name in TOKENIZER_FILES:
        shutil.copyfile(source / name, folder / name)
    if pooling:
        (folder / "1_Pooling").mkdir()
        (folder / "1_Pooling" / "config.json").write_text(
            json.dumps({"word_embedding_dimension": 32, f"pooling_mode_{pooling}": True})
        )
    return folder
