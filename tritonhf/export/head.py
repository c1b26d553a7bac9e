"""What a sentence-transformers model does after the transformer: pooling, Dense, Normalize.

A sentence-transformers folder lists its modules in ``modules.json``: the transformer, then a
Pooling module, then any Dense projections and an optional Normalize. `read_head` reads that
list into a `SentenceHead`, which `load_head` turns into PyTorch layers that the exporter puts
into the ONNX graph (and the python-torch step runs), so a served embedding is what
``SentenceTransformer(folder).encode(text)`` returns. Modules tritonhf cannot reproduce are
refused by name instead of being silently dropped.

A plain HuggingFace folder (no ``modules.json``) gets mean pooling (or what a legacy
``1_Pooling/config.json`` asks for) and L2 normalisation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from tritonhf.errors import EXPORT_MEMORY_ADVICE, ExportError, first_line, out_of_memory

MODULES_FILE = "modules.json"
LEGACY_POOLING_FOLDER = "1_Pooling"
HEAD_WEIGHTS_FILE = "sentence_head.safetensors"
"""Where the python-torch step keeps the Dense weights (`save_head`), beside ``config.json``."""


class Pooling(str, Enum):
    """How token vectors become one sentence vector (sentence-transformers' mode names)."""

    CLS = "cls"
    MAX = "max"
    MEAN = "mean"
    MEAN_SQRT_LEN = "mean_sqrt_len_tokens"
    WEIGHTED_MEAN = "weightedmean"
    LAST_TOKEN = "lasttoken"  # noqa: S105  # nosec B105  # a pooling mode


_LEGACY_POOLING_FLAGS = {
    "pooling_mode_cls_token": Pooling.CLS,
    "pooling_mode_max_tokens": Pooling.MAX,
    "pooling_mode_mean_tokens": Pooling.MEAN,
    "pooling_mode_mean_sqrt_len_tokens": Pooling.MEAN_SQRT_LEN,
    "pooling_mode_weightedmean_tokens": Pooling.WEIGHTED_MEAN,
    "pooling_mode_lasttoken": Pooling.LAST_TOKEN,
}
"""sentence-transformers < 6 wrote one flag per mode; several flags concatenate, in this order."""


class Activation(str, Enum):
    """A Dense module's activation: the torch.nn classes sentence-transformers saves by name."""

    IDENTITY = "torch.nn.modules.linear.Identity"
    TANH = "torch.nn.modules.activation.Tanh"
    RELU = "torch.nn.modules.activation.ReLU"
    GELU = "torch.nn.modules.activation.GELU"
    SIGMOID = "torch.nn.modules.activation.Sigmoid"
    SILU = "torch.nn.modules.activation.SiLU"

    def module(self) -> Any:
        """A fresh ``torch.nn`` module (classes named here only: nothing is imported by name)."""
        import torch

        return {
            Activation.IDENTITY: torch.nn.Identity,
            Activation.TANH: torch.nn.Tanh,
            Activation.RELU: torch.nn.ReLU,
            Activation.GELU: torch.nn.GELU,
            Activation.SIGMOID: torch.nn.Sigmoid,
            Activation.SILU: torch.nn.SiLU,
        }[self]()


@dataclass(frozen=True)
class Dense:
    """A linear projection of the sentence vector, then an activation."""

    in_features: int
    out_features: int
    bias: bool = True
    activation: Activation = Activation.TANH
    folder: Path = Path()
    """Where its weights are (the export reads them; a served step has them in its own file)."""


@dataclass(frozen=True)
class Normalize:
    """L2 normalisation of the sentence vector."""


HeadStep = Dense | Normalize


@dataclass(frozen=True)
class SentenceHead:
    """Pooling (several modes concatenate), then Dense and Normalize steps in order."""

    pooling: tuple[Pooling, ...] = (Pooling.MEAN,)
    steps: tuple[HeadStep, ...] = (Normalize(),)

    @property
    def normalized(self) -> bool:
        """True when the last step is L2 normalisation: every embedding has norm 1."""
        return bool(self.steps) and isinstance(self.steps[-1], Normalize)

    def embedding_size(self, hidden_size: int) -> int:
        """The served embedding's width for a transformer of ``hidden_size``."""
        size = hidden_size * len(self.pooling)
        for step in self.steps:
            if isinstance(step, Dense):
                if step.in_features != size:
                    raise ExportError(
                        f"{step.folder} projects {step.in_features} features, but the vector "
                        f"before it has {size}; the model's modules do not fit together"
                    )
                size = step.out_features
        return size

    def describe(self) -> str:
        """``mean -> dense 384->256 tanh -> normalize``."""
        parts = ["+".join(mode.value for mode in self.pooling)]
        for step in self.steps:
            if isinstance(step, Dense):
                name = step.activation.name.lower()
                parts.append(f"dense {step.in_features}->{step.out_features} {name}")
            else:
                parts.append("normalize")
        return " -> ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the export manifest, the python-torch step's settings)."""
        steps: list[dict[str, Any]] = [
            {
                "dense": {
                    "in_features": step.in_features,
                    "out_features": step.out_features,
                    "bias": step.bias,
                    "activation": step.activation.value,
                }
            }
            if isinstance(step, Dense)
            else {"normalize": True}
            for step in self.steps
        ]
        return {"pooling": [mode.value for mode in self.pooling], "steps": steps}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SentenceHead:
        """Read the form written by `to_dict`."""
        steps: list[HeadStep] = []
        for step in data.get("steps", ()):
            if "dense" in step:
                dense = step["dense"]
                steps.append(
                    Dense(
                        in_features=int(dense["in_features"]),
                        out_features=int(dense["out_features"]),
                        bias=bool(dense["bias"]),
                        activation=Activation(dense["activation"]),
                    )
                )
            else:
                steps.append(Normalize())
        return cls(pooling=tuple(Pooling(m) for m in data["pooling"]), steps=tuple(steps))


PLAIN_HEAD = SentenceHead()
"""A folder without sentence-transformers modules: mean pooling, L2 normalisation."""


LFS_POINTER = b"version https://git-lfs"


def unreadable_weights(folder: Path, exc: BaseException) -> ExportError:
    """A one-line error for weights that could not be read, naming the likely file.

    A git-LFS pointer (a clone without git-lfs) or an empty file is named as such; otherwise
    the loader's first line is shown: a truncated or corrupt file, most often.
    """
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("*.bin")]):
        with path.open("rb") as handle:
            start = handle.read(len(LFS_POINTER))
        if start == LFS_POINTER:
            return ExportError(
                f"{path} is a git-LFS pointer, not the weights: fetch them (`git lfs pull` in "
                "the clone), or download the model again"
            )
        if not start:
            return ExportError(f"{path} is empty: download the model again")
    message = str(exc)
    if out_of_memory(exc):
        return ExportError(
            f"could not read the weights in {folder} ({first_line(exc)}): {EXPORT_MEMORY_ADVICE}"
        )
    if "Weights only load failed" in message:  # torch's safe unpickler refused, ran nothing
        return ExportError(
            f"the pickle weights in {folder} hold Python objects besides tensors, which torch's "
            "safe loader refuses (nothing in them ran): load the model where you trust it and "
            "save it with safetensors (model.save_pretrained(...))"
        )
    if "size mismatch" in message or "ignore_mismatched_sizes" in message:
        return ExportError(
            f"the weights in {folder} do not fit its config.json ({first_line(exc)}): they "
            "belong to another model, or config.json was edited"
        )
    return ExportError(
        f"could not read the weights in {folder} ({first_line(exc)}); a "
        "file is truncated or corrupt: download the model again"
    )


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from ``path``; {} when the file is missing or holds something else."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExportError(f"could not read {path}: {exc}") from exc
    return data if isinstance(data, dict) else {}


def read_pooling(folder: Path) -> tuple[Pooling, ...]:
    """The modes of a Pooling module's ``config.json`` (new ``pooling_mode`` or legacy flags)."""
    config = read_json(folder / "config.json")
    if "pooling_mode" in config:
        raw = config["pooling_mode"]
        names = list(raw) if isinstance(raw, list) else [raw]
    else:
        names = [
            _LEGACY_POOLING_FLAGS[key].value for key in _LEGACY_POOLING_FLAGS if config.get(key)
        ]
        unknown = sorted(
            k for k, v in config.items() if k.startswith("pooling_mode_") and v
            and k not in _LEGACY_POOLING_FLAGS
        )  # fmt: skip
        names += unknown
    if not names:
        return (Pooling.MEAN,)
    try:
        return tuple(Pooling(name) for name in names)
    except ValueError:
        raise ExportError(
            f"{folder} asks for pooling {names}; tritonhf supports "
            f"{[mode.value for mode in Pooling]}"
        ) from None


def _read_dense(folder: Path) -> Dense:
    config = read_json(folder / "config.json")
    name = str(config.get("activation_function", Activation.TANH.value))
    try:
        activation = Activation(name)
    except ValueError:
        raise ExportError(
            f"{folder} uses the activation {name!r}; tritonhf supports "
            f"{[a.value for a in Activation]}"
        ) from None
    try:
        return Dense(
            in_features=int(config["in_features"]),
            out_features=int(config["out_features"]),
            bias=bool(config.get("bias", True)),
            activation=activation,
            folder=folder,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ExportError(f"{folder}/config.json is not a Dense config: {exc!r}") from exc


def _module_kind(entry: dict[str, Any]) -> str:
    """``Pooling`` from ``sentence_transformers.models.Pooling`` or its 6.x module path."""
    return str(entry.get("type", "")).rsplit(".", 1)[-1]


def _module_entries(root: Path) -> list[dict[str, Any]] | None:
    """``root/modules.json`` in ``idx`` order; None for a plain HuggingFace folder."""
    modules_file = root / MODULES_FILE
    if not modules_file.is_file():
        return None
    try:
        entries = json.loads(modules_file.read_text(encoding="utf-8"))
        return sorted(entries, key=lambda entry: int(entry.get("idx", 0)))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"could not read {modules_file}: {exc}") from exc


def pooling_includes_prompt(root: Path) -> bool:
    """Whether the Pooling module pools a prompt's tokens (its ``include_prompt``, default true)."""
    entries = _module_entries(root)
    folder = root / str(entries[1].get("path", "")) if entries and len(entries) > 1 else None
    if folder is None:
        folder = root / LEGACY_POOLING_FOLDER
    return bool(read_json(folder / "config.json").get("include_prompt", True))


def transformer_folder(root: Path) -> Path:
    """Where the transformer's config and weights are: ``root`` or its Transformer module's path."""
    entries = _module_entries(root) or []
    for entry in entries:
        if _module_kind(entry) == "Transformer":
            return root / str(entry.get("path", ""))
    return root


def read_head(root: Path) -> SentenceHead:
    """The steps after the transformer, from ``modules.json`` (`PLAIN_HEAD` without one)."""
    entries = _module_entries(root)
    if entries is None:
        legacy = root / LEGACY_POOLING_FOLDER
        return SentenceHead(pooling=read_pooling(legacy)) if legacy.is_dir() else PLAIN_HEAD
    kinds = [_module_kind(entry) for entry in entries]
    if kinds[:2] != ["Transformer", "Pooling"]:
        raise ExportError(
            f"{root / MODULES_FILE} lists {kinds}; tritonhf exports a Transformer, then a "
            "Pooling module, then any Dense and Normalize modules"
        )
    steps: list[HeadStep] = []
    for kind, entry in zip(kinds[2:], entries[2:], strict=True):
        if kind == "Dense":
            steps.append(_read_dense(root / str(entry.get("path", ""))))
        elif kind == "Normalize":
            steps.append(Normalize())
        elif kind != "Dropout":  # Dropout is the identity at inference
            raise ExportError(
                f"{root / MODULES_FILE} has a {kind} module ({entry.get('type')}), which "
                "tritonhf cannot put into the graph; it exports Transformer, Pooling, Dense "
                "and Normalize modules"
            )
    pooling = read_pooling(root / str(entries[1].get("path", "")))
    return SentenceHead(pooling=pooling, steps=tuple(steps))


def head_layers(head: SentenceHead) -> Any:
    """``torch.nn.Sequential`` of ``head.steps`` (pooling is the caller's), weights unset."""
    import torch

    class L2Normalize(torch.nn.Module):
        def forward(self, vectors: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.normalize(vectors, p=2.0, dim=1)

    layers: list[Any] = []
    for step in head.steps:
        if isinstance(step, Dense):
            linear = torch.nn.Linear(step.in_features, step.out_features, bias=step.bias)
            layers.append(torch.nn.Sequential(linear, step.activation.module()))
        else:
            layers.append(L2Normalize())
    return torch.nn.Sequential(*layers).eval()


def load_head(head: SentenceHead, *, allow_pickle_weights: bool = False) -> Any:
    """`head_layers` with each Dense module's weights read from its folder."""
    layers = head_layers(head)
    for index, step in enumerate(head.steps):
        if isinstance(step, Dense):
            state = _dense_weights(step, allow_pickle_weights=allow_pickle_weights)
            try:
                layers[index][0].load_state_dict(
                    {key.removeprefix("linear."): value for key, value in state.items()}
                )
            except RuntimeError as exc:
                raise ExportError(f"{step.folder} weights do not fit its config: {exc}") from exc
    return layers


def save_head(layers: Any, path: Path) -> None:
    """Write a loaded head's weights (`load_head`) to one safetensors file."""
    from safetensors.torch import save_file

    save_file({key: value.contiguous() for key, value in layers.state_dict().items()}, str(path))


def saved_head(head: SentenceHead, path: Path) -> Any:
    """`head_layers` with the weights `save_head` wrote to ``path``."""
    from safetensors.torch import load_file

    layers = head_layers(head)
    layers.load_state_dict(load_file(str(path)))
    return layers


def _dense_weights(dense: Dense, *, allow_pickle_weights: bool) -> dict[str, Any]:
    """The ``linear.weight`` / ``linear.bias`` tensors of a Dense module's folder."""
    safetensors = dense.folder / "model.safetensors"
    pickled = dense.folder / "pytorch_model.bin"
    try:
        if safetensors.is_file():
            from safetensors.torch import load_file

            return dict(load_file(str(safetensors)))
        if pickled.is_file() and allow_pickle_weights:
            import torch

            return dict(torch.load(str(pickled), map_location="cpu", weights_only=True))
    except Exception as exc:  # safetensors' and torch's readers raise their own types
        raise unreadable_weights(dense.folder, exc) from exc
    if pickled.is_file():
        raise ExportError(
            f"{dense.folder} has only pickle weights (pytorch_model.bin), which run arbitrary "
            "code when loaded: convert them, or pass --allow-pickle-weights if you trust it"
        )
    raise ExportError(f"{dense.folder} has no weights (model.safetensors)")
