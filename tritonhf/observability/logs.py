"""Structured JSON request logs: one line per request (or batch) from every step.

Nothing here configures logging at import: an entry point (a step's ``initialize``, the CLI)
calls `configure_json_logging`. Raw text is never logged unless `TextLogging.RAW` is chosen;
`TextLogging.HASH` logs a short SHA-256 of each text instead, enough to find repeats.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from enum import Enum
from typing import IO, Any

from tritonhf.errors import ConfigError

REQUEST_LOGGER = "tritonhf.requests"
LOG_TEXT_ENV = "TRITONHF_LOG_TEXT"
"""Environment variable read by the steps at load time: ``off`` (default), ``hash`` or ``raw``."""
_HANDLER_NAME = "tritonhf-json"


class TextLogging(str, Enum):
    """What a request log line says about the input text."""

    OFF = "off"
    HASH = "hash"
    RAW = "raw"

    @classmethod
    def parse(cls, value: str | None) -> TextLogging:
        """Read a setting such as the `LOG_TEXT_ENV` value; empty means `OFF`."""
        if not value:
            return cls.OFF
        try:
            return cls(value.strip().lower())
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ConfigError(f"{LOG_TEXT_ENV}={value!r} is not one of: {allowed}") from None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> TextLogging:
        """The setting from the environment (`LOG_TEXT_ENV`)."""
        return cls.parse((os.environ if environ is None else environ).get(LOG_TEXT_ENV))


def text_hash(text: str) -> str:
    """A short, stable fingerprint of a text (first 16 hex digits of its SHA-256)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


LOGGED_TEXT_CHARS = 1_000
"""The characters of one text a `TextLogging.RAW` line carries; the rest is counted."""


def logged_text(text: str, limit: int = LOGGED_TEXT_CHARS) -> str:
    """``text`` as a raw log line shows it: its first ``limit`` characters, then how many more.

    One request may carry 64 texts of a megabyte: in full, they made one 64 MB log line.
    """
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... [{len(text) - limit:,} more characters]"


def text_fields(texts: Iterable[str], mode: TextLogging) -> dict[str, Any]:
    """The log fields describing ``texts`` under ``mode`` (nothing when `TextLogging.OFF`)."""
    if mode is TextLogging.RAW:
        return {"text": [logged_text(t) for t in texts]}
    if mode is TextLogging.HASH:
        return {"text_sha256": [text_hash(t) for t in texts]}
    return {}


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object: timestamp, level, logger, message, extra fields.

    Fields passed as ``extra={"fields": {...}}`` are merged in at the top level.
    """

    def format(self, record: logging.LogRecord) -> str:
        """Serialise ``record``; non-JSON values are written with ``str``."""
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, Mapping):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        # ASCII (non-ASCII as \\u escapes): a Python-backend stub's stdout is ASCII-only,
        # and a line with "négatif" or an emoji would otherwise be dropped with a traceback.
        return json.dumps(line, default=str, ensure_ascii=True, separators=(",", ":"))


def configure_json_logging(
    stream: IO[str] | None = None, *, logger: str = REQUEST_LOGGER, level: int = logging.INFO
) -> logging.Logger:
    """Send ``logger``'s records as JSON lines to ``stream`` (default stdout); idempotent.

    Inside Triton, a Python-backend step's stdout is the server's output, so the lines land in
    the server log next to Triton's own, where Promtail picks them up.
    """
    target = logging.getLogger(logger)
    target.setLevel(level)
    target.propagate = False
    for handler in target.handlers:
        if handler.get_name() == _HANDLER_NAME:
            return target
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter())
    target.addHandler(handler)
    return target


LOGGED_REQUEST_ID_CHARS = 128
"""A request id is logged up to this length (the client's limit), then cut with a marker:
Triton takes any id a raw client sends, and a line per step would repeat a long one."""


def log_event(logger: logging.Logger, event: str, /, **fields: Any) -> None:
    """Log one structured event; errors (``outcome != "ok"``) at WARNING level."""
    level = logging.INFO if fields.get("outcome", "ok") == "ok" else logging.WARNING
    request_id = fields.get("request_id")
    if isinstance(request_id, str) and len(request_id) > LOGGED_REQUEST_ID_CHARS:
        cut = len(request_id) - LOGGED_REQUEST_ID_CHARS
        fields["request_id"] = (
            f"{request_id[:LOGGED_REQUEST_ID_CHARS]}... [{cut:,} more characters]"
        )
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


def log_recording_error(logger: logging.Logger, *, model: str, step: str, error: Exception) -> None:
    """The warning a step logs when recording a metric failed (callers log it once per load)."""
    logger.warning(
        "observability_error",
        extra={"fields": {"model": model, "step": step, "error": repr(error)}},
    )


def elapsed_ms(started: float) -> float:
    """Milliseconds since ``started`` (a `time.perf_counter` value), rounded to 0.01 ms."""
    return round((time.perf_counter() - started) * 1000.0, 2)
