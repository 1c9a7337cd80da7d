"""Logs as JSON lines, with secrets redacted before anything is written.

:class:`RedactingFilter` rewrites a record's message, arguments and
``brickwork`` extra (the structured data :class:`~brickwork.runtime.recording.LogRecorder`
attaches); the formatters redact their final text once more, which catches
secrets inside objects that were only turned into text while formatting
(an exception's message, a traceback).

What is redacted:

- Brickwork keys ``bw_<id>_<secret>`` (the id is kept: it is not secret),
- ``Bearer <token>``,
- provider keys: ``sk-...`` (OpenAI, Anthropic), ``AKIA...`` (AWS), ``AIza...`` (Google),
  ``ghp_...``/``github_pat_...`` (GitHub), ``xox.-...`` (Slack),
- the whole value under a mapping key that names a secret as a whole word:
  ``api_key``, ``apiKey``, ``X-Api-Key``, ``authorization``, ``password``,
  ``token``, ``access_token``, ``secret``, ``client_secret``, ``cookie``… but not
  ``max_tokens`` or ``input_tokens`` (``tokens`` is another word).
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any, TextIO

__all__ = [
    "REDACTED",
    "JsonFormatter",
    "RedactingFilter",
    "TextFormatter",
    "configure_logging",
    "is_secret_key",
    "redact",
    "redact_text",
]

REDACTED = "[REDACTED]"

_TEXT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"(?<![A-Za-z0-9])(bw_[A-Za-z0-9]+_)[A-Za-z0-9_\-]{4,}"), r"\1" + REDACTED),
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-]+"), r"\1 " + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])sk-[A-Za-z0-9_\-]{8,}"), "sk-" + REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])AKIA[0-9A-Z]{16}(?![A-Za-z0-9])"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])AIza[0-9A-Za-z_\-]{30,}"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"), REDACTED),
    (re.compile(r"(?<![A-Za-z0-9])xox[abprs]-[A-Za-z0-9\-]{10,}"), REDACTED),
)

#: Words that make a mapping key secret wherever they appear in it, and pairs of
#: consecutive words that do.
_SECRET_WORDS = frozenset(
    {
        "apikey",
        "authorization",
        "password",
        "passwd",
        "passphrase",
        "token",
        "secret",
        "cookie",
        "credential",
        "credentials",
    }
)
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key"), ("secret", "key")})
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")
_MAX_DEPTH = 20


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret (whole words: ``max_tokens`` does not)."""
    if not isinstance(key, str):
        return False
    words = [w for w in _SPLIT.split(_CAMEL.sub("_", key).lower()) if w]
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in pairwise(words))


def redact_text(text: str) -> str:
    """``text`` with every secret-looking token replaced."""
    for pattern, replacement in _TEXT_RULES:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with secrets redacted in strings, mappings and sequences.

    Other objects are returned as they are; the formatters redact their text.
    """
    if isinstance(value, str):
        return redact_text(value)
    if _depth >= _MAX_DEPTH:
        return value
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(k) else redact(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(v, _depth + 1) for v in value) if type(value) in (list, tuple) else value
    return value


class RedactingFilter(logging.Filter):
    """Redacts a record's message and ``brickwork`` extra in place.

    The message is rendered here (arguments redacted first, by mapping key too),
    redacted as text, and stored with no arguments left, so every handler after
    this one — not only ours — sees the redacted text. Attach it to a handler:
    handlers see records from every child logger; a logger's own filters do not.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.args = redact(record.args)
        try:
            message = record.getMessage()
        except Exception:  # a malformed call: let the handler report it, redacted as far as we can
            record.msg = redact(record.msg)
        else:
            record.msg, record.args = redact_text(message), None
        extra = getattr(record, "brickwork", None)
        if extra is not None:
            record.brickwork = redact(extra)
        return True


def _jsonable(value: object) -> str:
    return redact_text(str(value))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``,
    the ``brickwork`` extra when present, and ``exception``/``stack`` when present.
    """

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact_text(record.getMessage()),
        }
        extra = getattr(record, "brickwork", None)
        if extra is not None:
            payload["brickwork"] = redact(extra)
        if record.exc_info:
            payload["exception"] = redact_text(self.formatException(record.exc_info))
        elif record.exc_text:
            payload["exception"] = redact_text(record.exc_text)
        if record.stack_info:
            payload["stack"] = redact_text(self.formatStack(record.stack_info))
        return jsonlib.dumps(payload, default=_jsonable, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Human-readable lines for a terminal, redacted the same way."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extra = getattr(record, "brickwork", None)
        if extra is not None:
            text += " " + jsonlib.dumps(redact(extra), default=_jsonable, ensure_ascii=False)
        return redact_text(text)


def configure_logging(
    level: int | str = "INFO", json: bool = True, *, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (standard error), redacted, as JSON or text.

    Replaces the handler an earlier call installed; leaves other handlers alone.
    Returns the handler.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_brickwork", False)]:
        root.removeHandler(old)
        old.close()
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if json else TextFormatter())
    handler.addFilter(RedactingFilter())
    handler._brickwork = True  # type: ignore[attr-defined]  # marks the handler this function owns
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
