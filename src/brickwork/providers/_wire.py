"""What an upstream sends, read: an HTTP status as one typed error (with its
Retry-After), its error text for a message, and streamed lines, Server-Sent Events
and NDJSON objects. :class:`brickwork.providers.http.HttpClient` uses these; the
table of statuses is in that module's docstring.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import math
import time
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any

from brickwork.contracts.errors import (
    ProviderAuthenticationError,
    ProviderError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderResponseError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)

__all__ = [
    "MAX_LINE",
    "MAX_MESSAGE",
    "MAX_RETRY_AFTER",
    "SSEEvent",
    "error_for_status",
    "iter_lines",
    "ndjson_objects",
    "parse_retry_after",
    "sse_events",
    "upstream_message",
]

#: An upstream's Retry-After beyond a day is taken as a day.
MAX_RETRY_AFTER = 86_400.0
#: A line longer than this (8 MiB) is an upstream gone wrong, not a reply.
MAX_LINE = 8 * 1024 * 1024
#: How much of an upstream's error text an error message keeps.
MAX_MESSAGE = 500


# --- status → error ------------------------------------------------------------


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait, from ``retry-after-ms`` (OpenAI) or ``Retry-After``.

    ``Retry-After`` may be delay-seconds or an HTTP-date (RFC 9110 §10.2.3); a date
    in the past means "now" (0). Anything unparsable is ignored (``None``).
    """
    lower = {k.lower(): v for k, v in headers.items()}
    millis = lower.get("retry-after-ms")
    if millis is not None:
        with contextlib.suppress(ValueError):
            value = float(millis)
            if 0 <= value < math.inf:
                return min(value / 1000, MAX_RETRY_AFTER)
    raw = lower.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        seconds = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        current = time.time() if now is None else now
        return max(0.0, when.timestamp() - current)
    if not 0 <= seconds < math.inf:  # negative, nan or inf: not a usable hint
        return None
    return min(seconds, MAX_RETRY_AFTER)


def upstream_message(body: bytes | str, limit: int = MAX_MESSAGE) -> str:
    """The human message of an error body: ``{"error": {"message"}}`` (OpenAI,
    Anthropic), ``{"error": "..."}`` (Ollama), ``{"detail"}`` / ``{"message"}``, else
    the text itself, shortened to ``limit`` characters."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    message: str | None = None
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict):
            inner = error.get("message")
            kind = error.get("type") or error.get("code")
            if isinstance(inner, str):
                message = f"{kind}: {inner}" if isinstance(kind, str) and kind else inner
        elif isinstance(error, str):
            message = error
        if message is None:
            for key in ("message", "detail"):
                if isinstance(parsed.get(key), str):
                    message = parsed[key]
                    break
    if message is None:
        message = " ".join(text.split())
    if len(message) > limit:
        message = message[:limit] + "…"
    return message or "(empty body)"


#: Statuses with which a backend refuses the request itself (it is up and well).
_REJECTED = frozenset({400, 404, 409, 413, 422})


def error_for_status(
    status: int,
    message: str,
    *,
    retry_after: float | None = None,
    details: dict[str, Any] | None = None,
) -> ProviderError:
    """The typed error for an upstream HTTP status (the table in this module's doc).

    ``retry_after`` is kept only on the retryable errors: a 400 is not worth waiting for.
    """
    cls: type[ProviderError]
    if status in (401, 403):
        cls = ProviderAuthenticationError
    elif status in (408, 504):
        cls = ProviderTimeoutError
    elif status == 429:
        cls = ProviderRateLimitedError
    elif status >= 500:
        cls = ProviderUnavailableError
    elif status in _REJECTED:
        cls = ProviderRejectedError
    else:
        cls = ProviderResponseError
    if status == 404:
        message += " (is the model name or the base URL right?)"
    return cls(message, retry_after=retry_after if cls.retryable else None, details=details)


# --- stream parsing ------------------------------------------------------------


async def iter_lines(
    chunks: AsyncIterable[bytes], *, keep_partial: bool, source: str = "upstream", max_line: int = MAX_LINE
) -> AsyncGenerator[bytes, None]:
    """Lines of a byte stream, ended by ``\\n``, ``\\r\\n`` or ``\\r`` (terminators dropped).

    Args:
        keep_partial: whether text after the last line end is yielded when the
            stream ends (NDJSON: yes, a cut value then fails to parse; SSE: no, an
            event is only complete at its blank line).
    """
    buf = bytearray()
    async for chunk in chunks:
        if not chunk:
            continue
        buf += chunk
        start = 0
        lf = buf.find(b"\n")
        cr = buf.find(b"\r")
        while lf >= 0 or cr >= 0:
            if cr < 0 or 0 <= lf < cr:
                yield bytes(buf[start:lf])
                start = lf + 1
            else:
                if cr + 1 == len(buf):
                    break  # "\r" last: a "\n" may follow in the next chunk
                yield bytes(buf[start:cr])
                start = cr + 2 if buf[cr + 1] == 0x0A else cr + 1
            if lf < start:
                lf = buf.find(b"\n", start)
            if cr < start:
                cr = buf.find(b"\r", start)
        del buf[:start]
        if len(buf) > max_line:
            raise ProviderResponseError(f"{source}: a stream line passed {max_line} bytes")
    if buf.endswith(b"\r"):
        yield bytes(buf[:-1])
    elif buf and keep_partial:
        yield bytes(buf)


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One server-sent event: its ``data`` lines joined by ``\\n``."""

    data: str
    event: str = "message"
    id: str | None = None


async def sse_events(
    chunks: AsyncIterable[bytes], *, source: str = "upstream"
) -> AsyncGenerator[SSEEvent, None]:
    """Server-sent events (WHATWG HTML §9.2): ``data:`` lines (several make one
    event), ``event:``, ``id:``, comments (``:``) skipped, dispatched at a blank
    line. An event the stream cuts off before its blank line is dropped, as the
    standard says — so a truncated ``data: [DONE]`` never counts as the end."""
    data: list[str] = []
    event = ""
    last_id: str | None = None
    async with contextlib.aclosing(iter_lines(chunks, keep_partial=False, source=source)) as lines:
        async for raw in lines:
            if not raw:
                if data:
                    yield SSEEvent("\n".join(data), event or "message", last_id)
                data = []
                event = ""
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ProviderResponseError(f"{source}: a stream line is not UTF-8") from exc
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                data.append(value)
            elif name == "event":
                event = value
            elif name == "id" and "\0" not in value:
                last_id = value


async def ndjson_objects(
    chunks: AsyncIterable[bytes], *, source: str = "upstream"
) -> AsyncGenerator[Any, None]:
    """One JSON value per line; blank lines skipped; a line that does not parse —
    as a value cut off by the end of the stream does not — is a
    :class:`ProviderResponseError`."""
    async with contextlib.aclosing(iter_lines(chunks, keep_partial=True, source=source)) as lines:
        async for raw in lines:
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except ValueError as exc:
                raise ProviderResponseError(
                    f"{source}: malformed stream line {_snippet(raw)}", details={"reason": "malformed"}
                ) from exc


def _snippet(raw: bytes | str, limit: int = 120) -> str:
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return repr(text if len(text) <= limit else text[:limit] + "…")
