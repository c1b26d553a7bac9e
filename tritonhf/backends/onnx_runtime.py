"""Triton Python-backend step: run the exported ONNX graph with the ``onnxruntime`` package.

Served as ``<name>_model/1/model.py`` (a one-line shim that imports this module) for the
``python-onnx`` runtime. Its inputs are ragged (``allow_ragged_batch``), so Triton hands over
requests of different sequence lengths in one batch; their rows (a request of several texts is
split: `single_rows`) are grouped here by length (`length_groups`: little padding, a
padded-token budget per call) and each group is padded to its longest row and run as one ONNX
Runtime call. The graph masks padding, so results do not depend on it.

Each instance runs on ``intra_op_threads`` (1 by default) while another instance of the step
is running a batch, and on every core while none is (`backends.busy.BusyBoard`): instances
overlap batches under load, and a lone request is not held to one core.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside the server, by the unit tests
    pb_utils = None

from tritonhf.backends import counts_for_drift, refusal_message, string_parameters
from tritonhf.backends.busy import BusyBoard
from tritonhf.backends.execute_clock import clocked
from tritonhf.backends.loads import counted
from tritonhf.observability.drift import PROFILE_FILE
from tritonhf.observability.metrics import RefusedInput
from tritonhf.observability.steps import ModelObserver, now

log = logging.getLogger(__name__)
ONNX_FILE = "model.onnx"
INPUT_NAMES = ("input_ids", "attention_mask")
OBSERVED = ("LABEL", "SCORE", "EMBEDDING")
"""Outputs handed to the observer (metrics, logs, drift)."""
TEXT_STATS = ("NUM_TOKENS", "TRUNCATED")
"""Outputs of a merged step that its tokenizer, not the graph, produces (`backends.merged`)."""


@dataclass(frozen=True)
class SessionSettings:
    """The step's parameters, read from ``config.pbtxt``."""

    output_names: tuple[str, ...]
    intra_op_threads: int = 0  # 0: ONNX Runtime picks (one per physical core)
    spinning: bool = True
    """Let idle intra-op threads spin; off, they yield the cores to the tokenizer and Triton."""
    group_slack: float = 0.0
    """Split a batch by length where padding exceeds this many times its tokens (0: never)."""
    run_token_budget: int = 0
    """Split a batch into ONNX Runtime calls of at most this many padded tokens (0: never)."""
    widen_when_idle: bool = False
    """Run a batch on every core while the step's other instances are idle (`BusyBoard`)."""
    pipeline: str = ""
    """The ensemble's name: the ``model`` label of the step's metrics and logs."""
    normalized: bool = True
    """The embeddings have norm 1 (the model's head ends with Normalize)."""
    max_length: int = 0
    """The longest token sequence the pipeline tokenizes to (0: not checked)."""
    vocab_size: int = 0
    """Rows of the model's token embedding: larger ids are refused (0: not checked)."""
    cuda_graphs: bool = True
    """python-torch on a GPU: replay small batches as CUDA graphs (`backends.cuda_graphs`)."""
    rows_alone: bool = False
    """Run each row alone, trailing padding cut (`Precision.runs_texts_alone`)."""

    @classmethod
    def from_model_config(cls, config: dict[str, Any]) -> SessionSettings:
        """Read the settings from Triton's model config (JSON form)."""
        params = string_parameters(config)
        return cls(
            output_names=tuple(
                output["name"] for output in config["output"] if output["name"] not in TEXT_STATS
            ),
            intra_op_threads=int(params.get("intra_op_threads", 0)),
            spinning=params.get("intra_op_spinning", "1") != "0",
            group_slack=float(params.get("length_group_slack", 0)),
            run_token_budget=int(params.get("run_token_budget", 0)),
            widen_when_idle=params.get("widen_when_idle", "0") == "1",
            pipeline=params.get("pipeline") or str(config.get("name", "")).removesuffix("_model"),
            normalized=params.get("normalized", "1") != "0",
            max_length=int(params.get("max_length", 0)),
            vocab_size=int(params.get("vocab_size", 0)),
            cuda_graphs=params.get("cuda_graphs", "1") != "0",
            rows_alone=params.get("rows_alone", "0") == "1",
        )


def stack_ragged(batches: list[dict[str, NDArray[Any]]]) -> dict[str, NDArray[Any]]:
    """Pad every request's token tensors to the longest one and stack them into one batch.

    One request passes through as it is; otherwise each input is written once into a zeroed
    array (``np.pad`` + ``np.concatenate`` cost ~0.1 ms per request, most of it Python).
    """
    if len(batches) == 1:
        return {name: batches[0][name] for name in INPUT_NAMES}
    width = max(batch["input_ids"].shape[1] for batch in batches)
    rows = sum(batch["input_ids"].shape[0] for batch in batches)
    stacked = {}
    for name in INPUT_NAMES:
        dtype = np.result_type(*(batch[name] for batch in batches))
        padded = np.zeros((rows, width), dtype=dtype)
        start = 0
        for batch in batches:
            tensor = batch[name]
            padded[start : start + tensor.shape[0], : tensor.shape[1]] = tensor
            start += tensor.shape[0]
        stacked[name] = padded
    return stacked


def length_groups(
    widths: list[int], rows: list[int], slack: float, budget: int = 0
) -> list[list[int]]:
    """Group requests (by index) into ONNX Runtime calls that waste little and stay small.

    Requests are taken shortest first; a request joins the current group unless padding the
    group to its width would cost more than ``slack`` times the group's own tokens, or the
    group would hold more than ``budget`` padded tokens (a request alone may exceed it). 0
    turns either rule off; with both off there is one group in arrival order (everything
    padded to the longest request).
    """
    if (slack <= 0 and budget <= 0) or len(widths) < 2:
        return [list(range(len(widths)))]
    groups: list[list[int]] = []
    current: list[int] = []
    tokens = count = 0
    for index in sorted(range(len(widths)), key=widths.__getitem__):
        width, size = widths[index], rows[index]
        padded = width * (count + size)
        wasteful = slack > 0 and padded > slack * (tokens + width * size)
        if current and (wasteful or 0 < budget < padded):
            groups.append(current)
            current, tokens, count = [], 0, 0
        current.append(index)
        tokens += width * size
        count += size
    groups.append(current)
    return groups


def single_rows(batches: list[dict[str, NDArray[Any]]]) -> list[dict[str, NDArray[Any]]]:
    """Every row of every request as a request of its own, its trailing padding cut.

    A request of several texts comes padded to its longest; as rows, its short texts can join
    the length groups of other short texts instead of running at the long one's width.
    """
    rows = []
    for tensors in batches:
        ids, mask = tensors["input_ids"], tensors["attention_mask"]
        # Every row attends somewhere (`check_token_inputs`): width = its last 1, plus one.
        widths = mask.shape[1] - np.argmax(mask[:, ::-1] != 0, axis=1)
        for row, width in enumerate(widths.tolist()):
            rows.append(
                {
                    "input_ids": ids[row : row + 1, :width],
                    "attention_mask": mask[row : row + 1, :width],
                }
            )
    return rows


def observed(outputs: dict[str, NDArray[Any]]) -> dict[str, NDArray[Any]]:
    """The outputs the observer records (labels, scores, embeddings)."""
    return {name: array for name, array in outputs.items() if name in OBSERVED}


class TokenTensorError(RefusedInput):
    """A request's token tensors cannot run; ``reason`` labels ``tritonhf_invalid_inputs_total``."""


def check_token_inputs(
    tensors: dict[str, NDArray[Any]], *, max_length: int = 0, vocab_size: int = 0
) -> None:
    """Refuse token tensors the model would fail on (failing its whole batch, unhelpfully).

    Only clients that send token tensors straight to the model step can get here: the
    tokenizer step never writes more than ``max_length`` tokens or an id outside the vocabulary.
    On a GPU an out-of-range id would be a device-side assert that ends the instance.
    """
    ids, mask = tensors["input_ids"], tensors["attention_mask"]
    if ids.ndim != 2 or ids.shape != mask.shape or ids.shape[1] == 0:
        raise TokenTensorError(
            f"input_ids {ids.shape} and attention_mask {mask.shape} must be equal, non-empty "
            "[batch, length] tensors",
            "bad_shape",
        )
    if 0 < max_length < ids.shape[1]:
        raise TokenTensorError(
            f"input_ids holds {ids.shape[1]} tokens per row, more than the pipeline's "
            f"max_length {max_length}",
            "bad_shape",
        )
    if ((mask != 0) & (mask != 1)).any() or not mask.any(axis=1).all():
        raise TokenTensorError(
            "attention_mask must hold only 0 and 1, with at least one 1 per row (a row that "
            "attends to nothing has no output)",
            "bad_mask",
        )
    if ids.size and (ids.min() < 0 or 0 < vocab_size <= ids.max()):
        raise TokenTensorError(
            f"input_ids must lie in [0, {vocab_size or 'vocab_size'}); got values from "
            f"{ids.min()} to {ids.max()}",
            "bad_token_id",
        )


def as_triton_array(array: NDArray[Any]) -> NDArray[Any]:
    """ONNX Runtime returns string tensors as ``str`` objects; Triton's BYTES wants bytes."""
    if array.dtype == object:
        encode = np.vectorize(lambda item: str(item).encode("utf-8"), otypes=[object])
        return np.asarray(encode(array), dtype=object)
    return array


def open_session(path: Path, *, threads: int, spinning: bool) -> Any:
    """An ONNX Runtime CPU session with ``threads`` intra-op threads (0: one per core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@counted
@clocked
class TritonPythonModel:
    """The model step as Triton's Python backend sees it."""

    widens_when_idle = True
    """Whether ``widen_when_idle`` applies to this step's runtime."""
    wide_session: Any = None
    """A second session on every core, used while the other instances are idle."""
    board: BusyBoard | None = None

    def initialize(self, args: dict[str, str]) -> None:
        """Open the session(s) on the model stored beside this file."""
        config = json.loads(args["model_config"])
        self.settings = SessionSettings.from_model_config(config)
        version_dir = Path(args["model_repository"]) / args["model_version"]
        threads, cores = self.settings.intra_op_threads, available_cores()
        self.session = self.open_session(version_dir, args, threads=threads)
        if self.widens_when_idle and self.settings.widen_when_idle and 0 < threads < cores:
            try:
                self.board = BusyBoard.for_instance(
                    config["name"], args["model_version"], args["model_instance_name"]
                )
            except OSError as exc:  # a full /dev/shm: serve on the instance's own threads
                log.warning("%s runs without widening when idle: %s", config["name"], exc)
            else:
                self.wide_session = self.open_session(version_dir, args, threads=cores)
        self.observer = ModelObserver.create(
            pb_utils,
            self.settings.pipeline,
            version_dir / PROFILE_FILE,
            unit_norm=self.settings.normalized,
        )

    def open_session(self, version_dir: Path, args: dict[str, str], *, threads: int) -> Any:
        """A session with ``run(names, feeds)`` on ``threads`` intra-op threads (0: every core)."""
        session = open_session(
            version_dir / ONNX_FILE, threads=threads, spinning=self.settings.spinning
        )
        graph_outputs = [output.name for output in session.get_outputs()]
        if unknown := [n for n in self.settings.output_names if n not in graph_outputs]:
            # Else every request fails at run time, as the client's bad input.
            step = args.get("model_name", "the model step")
            raise ValueError(
                f"{step}'s config.pbtxt asks for outputs its ONNX graph lacks: "
                f"{', '.join(unknown)} (the graph's: {', '.join(graph_outputs)}); remove them "
                "from the config, or re-export"
            )
        return session

    def finalize(self) -> None:
        """Record what is still queued and release the busy board."""
        self.observer.close()
        if self.board is not None:
            self.board.close()

    @contextmanager
    def batch_session(self) -> Iterator[Any]:
        """The session for the next batch: every core if no other instance is running one."""
        if self.board is None:
            yield self.session
            return
        with self.board.running() as others_busy:
            yield self.session if others_busy else self.wide_session

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run the dynamic batch's requests, one ONNX Runtime call per length group."""
        started = now()
        responses: list[Any] = [None] * len(requests)
        accepted: list[tuple[int, dict[str, NDArray[Any]]]] = []
        rejected: list[tuple[str, Exception]] = []
        for index, request in enumerate(requests):
            tensors = {name: self.input_array(request, name) for name in INPUT_NAMES}
            try:
                check_token_inputs(
                    tensors,
                    max_length=self.settings.max_length,
                    vocab_size=self.settings.vocab_size,
                )
            except TokenTensorError as exc:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[],
                    error=pb_utils.TritonError(
                        refusal_message(request.request_id(), exc),
                        pb_utils.TritonError.INVALID_ARG,
                    ),
                )
                rejected.append((request.request_id(), exc))
                continue
            accepted.append((index, tensors))
        results = self.infer_or_answer(accepted, requests, responses)
        if results is None:
            return responses
        for (index, _), outputs in zip(accepted, results, strict=True):
            responses[index] = pb_utils.InferenceResponse(
                output_tensors=[self.output_tensor(name, array) for name, array in outputs.items()]
            )
        request_ids = [requests[index].request_id() for index, _ in accepted]
        drift = [counts_for_drift(requests[index]) for index, _ in accepted]
        self.observer.record(request_ids, [observed(r) for r in results], rejected, started, drift)
        return responses

    def infer_or_answer(
        self,
        accepted: list[tuple[int, dict[str, NDArray[Any]]]],
        requests: list[Any],
        responses: list[Any],
    ) -> list[dict[str, NDArray[Any]]] | None:
        """`infer` of the ``accepted`` (index, tensors), or None when it failed.

        Each of them is then answered in ``responses`` with the reason, on one line, as the
        server's fault (INTERNAL). Raised, a failure reached the client with the step's stack
        appended, and the runtime's own words ("INVALID_ARGUMENT" for a config edited past
        what the graph runs) read as the client's bad input.
        """
        try:
            return self.infer([tensors for _, tensors in accepted])
        except Exception as exc:  # noqa: BLE001 - every request of the batch is answered
            reason = " ".join(str(exc).split()) or type(exc).__name__
            message = f"{self.settings.pipeline} could not run the model: {reason}"
            for index, _ in accepted:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[],
                    error=pb_utils.TritonError(
                        refusal_message(requests[index].request_id(), message),
                        pb_utils.TritonError.INTERNAL,
                    ),
                )
            return None

    def input_array(self, request: Any, name: str) -> NDArray[Any]:
        """One input of one request, as a numpy array."""
        return pb_utils.get_input_tensor_by_name(request, name).as_numpy()  # type: ignore[no-any-return]

    def output_tensor(self, name: str, array: NDArray[Any]) -> Any:
        """One output of one response, as Triton's tensor."""
        return pb_utils.Tensor(name, array)

    def infer(self, batches: list[dict[str, NDArray[Any]]]) -> list[dict[str, NDArray[Any]]]:
        """Each request's outputs (name -> rows), computed as few padded runs as pays."""
        if not batches:
            return []
        names = list(self.settings.output_names)
        with self.batch_session() as session:
            outputs = self.run_grouped(session, names, batches)
        results = []
        start = 0
        for tensors in batches:
            stop = start + tensors["input_ids"].shape[0]
            results.append(
                {name: array[start:stop] for name, array in zip(names, outputs, strict=True)}
            )
            start = stop
        return results

    def run_grouped(
        self, session: Any, names: list[str], batches: list[dict[str, NDArray[Any]]]
    ) -> list[NDArray[Any]]:
        """Run the requests as one call per length group; rows come back in request order.

        With ``rows_alone`` every row is a group of its own, at its own length: a batch of 32
        moves a gated int8 MiniLM's embeddings to cosine 0.966-0.983 of their own (fp32: 1.0);
        running alone costs 2-3 % of the length groups' texts/s on one thread, ~12 % on two
        (benchmarks/int8_rows.py, docs/precision.md).
        """
        alone = self.settings.rows_alone
        grouping = self.settings.group_slack > 0 or self.settings.run_token_budget > 0
        if alone or (grouping and any(b["input_ids"].shape[0] > 1 for b in batches)):
            batches = single_rows(batches)  # a request's short texts need not pad to its long one
        groups = (
            [[row] for row in range(len(batches))]
            if alone
            else length_groups(
                [b["input_ids"].shape[1] for b in batches],
                [b["input_ids"].shape[0] for b in batches],
                self.settings.group_slack,
                self.settings.run_token_budget,
            )
        )
        if len(groups) == 1:
            ordered = [batches[i] for i in groups[0]]
            if groups[0] == sorted(groups[0]):
                return [as_triton_array(a) for a in session.run(names, stack_ragged(ordered))]
        per_request: list[list[NDArray[Any]]] = [[] for _ in batches]
        for group in groups:
            results = session.run(names, stack_ragged([batches[i] for i in group]))
            start = 0
            for index in group:
                stop = start + batches[index]["input_ids"].shape[0]
                per_request[index] = [array[start:stop] for array in results]
                start = stop
        return [
            as_triton_array(np.concatenate([parts[k] for parts in per_request]))
            for k in range(len(names))
        ]
