"""Two ways to run a sequence-classification model during training.

`CachedEngine` (the default, head mode): the frozen lower layers see each text once; their
output is cached and every epoch runs only the trainable top layers and the head. The last
layer computes only its first-token row, the one row the classification head reads. Before it
is used, its logits are checked against the model's own forward, so the weights it trains are
exactly those of the saved model.

`FullEngine`: the model's own forward on every step, for a full fine-tune and for models whose
layout the cached path does not know (their frozen parameters still get no gradients).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Sequence
from typing import Any, Protocol

from tritonhf.errors import ConfigError, TrainingError

CHECK_ATOL = 1e-4
"""Largest |cached - model forward| logit difference accepted for the cached path."""
ENCODE_BATCH = 64


class Engine(Protocol):
    """What the training loop needs from a way of running the model."""

    description: str

    def parameters(self) -> list[Any]:
        """The parameters the optimiser updates."""

    def train_mode(self, training: bool) -> None:
        """Switch the trainable modules' dropout on (``True``) or off."""

    def logits(self, split: str, indices: Sequence[int]) -> Any:
        """Logits ``[len(indices), labels]`` for rows ``indices`` of ``split``."""


def encoder_layers(model: Any) -> Any | None:
    """The model's stack of transformer layers (a ``ModuleList``), if it has a known layout."""
    import torch

    base = model.base_model
    for owner_name, list_name in (("encoder", "layer"), ("transformer", "layer"), ("", "layers")):
        owner = getattr(base, owner_name, None) if owner_name else base
        layers = getattr(owner, list_name, None)
        if isinstance(layers, torch.nn.ModuleList) and len(layers) > 0:
            return layers
    return None


def head_modules(model: Any, top_layers: int) -> list[Any]:
    """Modules trained in head mode: everything outside the encoder, its pooler, top layers."""
    base = model.base_model
    modules = [module for name, module in model.named_children() if module is not base]
    pooler = getattr(base, "pooler", None)
    if pooler is not None:
        modules.append(pooler)
    if top_layers:
        layers = encoder_layers(model)
        if layers is None:
            raise TrainingError(
                f"cannot find the transformer layers of {type(model).__name__}; train the head "
                "alone (top layers 0) or fine-tune the whole model"
            )
        if top_layers > len(layers):
            raise ConfigError(
                f"{top_layers} top layers requested but {type(model).__name__} has "
                f"{len(layers)}; use at most {len(layers)}"
            )
        modules.extend(layers[len(layers) - top_layers :])
    return modules


def unique_parameters(modules: Sequence[Any]) -> list[Any]:
    """The parameters of ``modules``, each once (tied weights would appear twice)."""
    seen: dict[int, Any] = {}
    for module in modules:
        for parameter in module.parameters():
            seen.setdefault(id(parameter), parameter)
    return list(seen.values())


def _extended_mask(mask: Any, dtype: Any) -> Any:
    import torch

    # The additive form eager attention expects: 0 where attended, very negative elsewhere.
    return (1.0 - mask[:, None, None, :].to(dtype)) * torch.finfo(dtype).min


def _first_row_of_layer(layer: Any, hidden: Any, mask: Any) -> Any:
    """A BERT-style layer's output for the first token only (what the classifier reads)."""
    import torch

    attention = layer.attention.self
    heads, size = int(attention.num_attention_heads), int(attention.attention_head_size)
    batch, length, _ = hidden.shape
    first = hidden[:, :1]
    query = attention.query(first).view(batch, 1, heads, size).transpose(1, 2)
    key = attention.key(hidden).view(batch, length, heads, size).transpose(1, 2)
    value = attention.value(hidden).view(batch, length, heads, size).transpose(1, 2)
    scores = query @ key.transpose(2, 3) / math.sqrt(size) + _extended_mask(mask, hidden.dtype)
    weights = attention.dropout(torch.softmax(scores, dim=-1))
    context = (weights @ value).transpose(1, 2).reshape(batch, 1, heads * size)
    attended = layer.attention.output(context, first)
    return layer.output(layer.intermediate(attended), attended)


def _has_bert_layout(layer: Any) -> bool:
    attention = getattr(getattr(layer, "attention", None), "self", None)
    needed = ("query", "key", "value", "num_attention_heads", "attention_head_size", "dropout")
    return (
        attention is not None
        and all(hasattr(attention, name) for name in needed)
        and all(hasattr(layer, name) for name in ("intermediate", "output"))
        and hasattr(layer.attention, "output")
    )


def _head_candidates(model: Any) -> list[tuple[str, Callable[[Any], Any]]]:
    """Ways the known classification heads turn first-token states ``[b, 1, d]`` into logits."""
    import torch

    candidates: list[tuple[str, Callable[[Any], Any]]] = []
    pooler = getattr(model.base_model, "pooler", None)
    dropout, classifier = getattr(model, "dropout", None), getattr(model, "classifier", None)
    if isinstance(classifier, torch.nn.Module):
        if isinstance(pooler, torch.nn.Module) and isinstance(dropout, torch.nn.Module):
            # BERT and kin: pooler(dense + tanh on [CLS]) -> dropout -> classifier
            candidates.append(("pooler", lambda h: classifier(dropout(pooler(h)))))
        # RoBERTa, ELECTRA, XLM-R: the classifier reads features[:, 0] itself
        candidates.append(("first-token", lambda h: classifier(h)))
    return candidates


def pad_rows(rows: Sequence[dict[str, Any]], *, pad_id: int) -> dict[str, Any]:
    """Stack unpadded rows into a right-padded batch (``input_ids`` padded with ``pad_id``)."""
    import torch

    length = max(int(row["input_ids"].shape[0]) for row in rows)
    return {
        name: torch.stack(
            [
                torch.nn.functional.pad(
                    row[name],
                    (0, length - int(row[name].shape[0])),
                    value=pad_id if name == "input_ids" else 0,
                )
                for row in rows
            ]
        )
        for name in rows[0]
    }


def tokenize(
    tokenizer: Any, texts: Sequence[str], *, max_length: int, accepted: Collection[str]
) -> list[dict[str, Any]]:
    """One unpadded ``{input name: 1-D tensor}`` per text, only the inputs in ``accepted``."""
    import torch

    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=False)
    # e.g. a BERT tokenizer gives token_type_ids, which DistilBERT's forward does not take
    names = [n for n in tokenizer.model_input_names if n in encoded and n in accepted]
    return [
        {name: torch.tensor(encoded[name][i], dtype=torch.long) for name in names}
        for i in range(len(texts))
    ]


class CachedEngine:
    """Head mode from cached activations of the frozen layers (see the module docstring).

    Build it with `build_cached_engine`, which checks it against the model's forward.
    """

    def __init__(
        self,
        *,
        model: Any,
        top_layers: int,
        inputs: dict[str, list[dict[str, Any]]],
        pad_id: int,
    ) -> None:
        import torch

        self.model = model
        self.top_layers = top_layers
        self.head: Callable[[Any], Any] = lambda hidden: hidden
        layers = encoder_layers(model)
        self.layers = list(layers[len(layers) - top_layers :]) if top_layers and layers else []
        self.trainable = head_modules(model, top_layers)
        self.cache: dict[str, list[Any]] = {}
        model.eval()
        with torch.no_grad():
            for split, rows in inputs.items():
                self.cache[split] = self._encode_split(rows, pad_id=pad_id)
        layer_word = "layer" if top_layers == 1 else "layers"
        self.description = (
            f"head + top {top_layers} {layer_word}, from cached activations of the frozen layers"
            if top_layers
            else "head only, from cached encoder activations"
        )

    def _encode_split(self, rows: list[dict[str, Any]], *, pad_id: int) -> list[Any]:
        # Length-sorted batches pad less; results go back to the rows' own order.
        order = sorted(range(len(rows)), key=lambda i: int(rows[i]["input_ids"].shape[0]))
        cached: list[Any] = [None] * len(rows)
        for start in range(0, len(order), ENCODE_BATCH):
            chosen = order[start : start + ENCODE_BATCH]
            batch = pad_rows([rows[i] for i in chosen], pad_id=pad_id)
            outputs = self.model.base_model(**batch, output_hidden_states=True)
            # hidden_states[0] is the embeddings' output, [i] layer i's: the first trainable
            # layer's input is the output of the last frozen one.
            states = outputs.hidden_states[len(outputs.hidden_states) - 1 - self.top_layers]
            lengths = batch["attention_mask"].sum(dim=1).tolist()
            for place, i in enumerate(chosen):
                keep = int(lengths[place]) if self.top_layers else 1
                cached[i] = states[place, :keep].clone()
        return cached

    def parameters(self) -> list[Any]:
        """Head, pooler and top-layer parameters."""
        return unique_parameters(self.trainable)

    def train_mode(self, training: bool) -> None:
        """Dropout on only in the trainable modules; the cached part is fixed anyway."""
        self.model.eval()
        for module in self.trainable:
            module.train(training)

    def forward_rows(self, rows: Sequence[Any]) -> Any:
        """Logits for cached rows (each ``[tokens, d]``)."""
        import torch

        hidden = torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence(
            [torch.ones(len(row), dtype=torch.long) for row in rows], batch_first=True
        )
        if self.layers:
            for layer in self.layers[:-1]:
                out = layer(hidden, _extended_mask(mask, hidden.dtype))
                hidden = out[0] if isinstance(out, tuple) else out
            hidden = _first_row_of_layer(self.layers[-1], hidden, mask)
        return self.head(hidden[:, :1])

    def logits(self, split: str, indices: Sequence[int]) -> Any:
        """Logits for rows ``indices`` of a cached split."""
        rows = self.cache[split]
        return self.forward_rows([rows[i] for i in indices])


def build_cached_engine(
    *, model: Any, top_layers: int, inputs: dict[str, list[dict[str, Any]]], pad_id: int
) -> CachedEngine | str:
    """The cached engine, or why it cannot reproduce this model (use `FullEngine` then).

    The check: logits of the first training rows through the cached path must equal the
    model's own forward within `CHECK_ATOL`.
    """
    import torch

    layers = encoder_layers(model)
    if top_layers and (layers is None or not _has_bert_layout(layers[-1])):
        return f"{type(model).__name__} does not have BERT-style layers"
    candidates = _head_candidates(model)
    if not candidates:
        return f"{type(model).__name__} has an unknown classification head"
    try:
        engine = CachedEngine(model=model, top_layers=top_layers, inputs=inputs, pad_id=pad_id)
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError) as exc:
        return f"caching {type(model).__name__}'s activations failed ({type(exc).__name__})"
    sample = list(range(min(8, len(inputs["train"]))))
    worst = []
    with torch.no_grad():
        expected = model(**pad_rows([inputs["train"][i] for i in sample], pad_id=pad_id)).logits
        for name, head in candidates:
            engine.head = head
            try:
                got = engine.logits("train", sample)
            except (RuntimeError, TypeError, ValueError, AttributeError) as exc:
                worst.append(f"{name}: {type(exc).__name__}")
                continue
            if got.shape == expected.shape:
                diff = float((got - expected).abs().max())
                if diff <= CHECK_ATOL:
                    return engine
                worst.append(f"{name}: differs by {diff:.1e}")
            else:
                worst.append(f"{name}: shape {tuple(got.shape)}")
    return f"the cached path does not match {type(model).__name__}'s forward ({'; '.join(worst)})"


class FullEngine:
    """The model's own forward on every step; frozen parameters get no gradients."""

    def __init__(
        self,
        *,
        model: Any,
        inputs: dict[str, list[dict[str, Any]]],
        pad_id: int,
        trainable: list[Any] | None,
        reason: str = "",
    ) -> None:
        self.model = model
        self.inputs = inputs
        self.pad_id = pad_id
        self.trainable = trainable
        if trainable is None:
            self.description = "full fine-tune of every parameter"
        else:
            self.description = "head mode, the frozen encoder run on every step"
            if reason:
                self.description += f" (no cached path: {reason})"

    def parameters(self) -> list[Any]:
        """Every parameter, or those of the head modules."""
        return unique_parameters([self.model] if self.trainable is None else self.trainable)

    def train_mode(self, training: bool) -> None:
        """Dropout in the trained modules only."""
        if self.trainable is None:
            self.model.train(training)
            return
        self.model.eval()
        for module in self.trainable:
            module.train(training)

    def logits(self, split: str, indices: Sequence[int]) -> Any:
        """The model's logits for rows ``indices`` of ``split``."""
        rows = [self.inputs[split][i] for i in indices]
        return self.model(**pad_rows(rows, pad_id=self.pad_id)).logits
