"""Every failure leaves the gateway as one JSON body with one status::

    {"error": {"code": ..., "message": ..., "plugin": ..., "retry_after": ...}}

Statuses come from the one table, :data:`brickwork.contracts.errors.HTTP_STATUS`,
looked up along the error's MRO; the codes only HTTP has (a body too large, an
idempotency conflict, an unknown route) are in the same tree and table.

A ``Retry-After`` header goes with every 429 and 503 (the error's own
``retry_after``, else 1 s); ``x-should-retry: false`` tells OpenAI SDKs not to
retry a 5xx that cannot succeed on a retry.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from pydantic_core import to_json
from starlette.responses import Response

from brickwork.contracts.errors import (
    AuthenticationError,
    BrickworkError,
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InternalError,
    MethodNotAllowedError,
    PayloadTooLargeError,
    RouteNotFoundError,
    UnsupportedMediaTypeError,
    http_status,
)

__all__ = [
    "IdempotencyConflictError",
    "IdempotencyKeyReusedError",
    "InternalError",
    "MethodNotAllowedError",
    "PayloadTooLargeError",
    "RouteNotFoundError",
    "UnsupportedMediaTypeError",
    "error_body",
    "error_headers",
    "error_response",
    "internal_error_response",
    "status_of",
]

log = logging.getLogger(__name__)


# OpenAI clients read ``error.type``; ours is derived from the status.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_quota",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def status_of(error: BrickworkError) -> int:
    """The HTTP status of an error, from the one table in :mod:`brickwork.contracts.errors`."""
    return http_status(error)


def error_body(error: BrickworkError, *, status: int | None = None) -> dict[str, Any]:
    """``{"error": {...}}`` with an OpenAI-style ``type`` and ``param`` added."""
    body = error.to_dict()
    status = status or status_of(error)
    body["type"] = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    body["param"] = None
    return {"error": body}


def error_headers(error: BrickworkError, status: int) -> dict[str, str]:
    headers: dict[str, str] = {}
    if status in (429, 503):
        # Always a hint on these two; 1 s when the error does not know better.
        wait = error.retry_after if error.retry_after is not None else 1.0
        wait = min(wait, 86_400.0) if math.isfinite(wait) else 1.0
        headers["retry-after"] = str(max(1, math.ceil(wait)))
        headers["retry-after-ms"] = str(max(1, math.ceil(wait * 1000)))
    elif status in (500, 501, 502, 508) and not error.retryable:
        # The same request would fail the same way: OpenAI SDKs retry 5xx by
        # default (twice), unless told not to.
        headers["x-should-retry"] = "false"
    if isinstance(error, AuthenticationError):
        headers["www-authenticate"] = 'Bearer realm="brickwork"'
    return headers


def error_response(error: BrickworkError) -> Response:
    """The response for an error; a 5xx other than the runtime's own is logged."""
    status = status_of(error)
    if status == 500:
        log.error("internal error: [%s] %s", error.code, error.message)
    return Response(
        to_json(error_body(error, status=status)),
        status_code=status,
        headers=error_headers(error, status),
        media_type="application/json",
    )


def internal_error_response(exc: BaseException) -> Response:
    """A bug in Brickwork: 500, with the type only (the message may quote input)."""
    log.error("unhandled %s in the gateway", type(exc).__name__, exc_info=exc)
    return error_response(InternalError(f"internal error ({type(exc).__name__}); see the server log"))
