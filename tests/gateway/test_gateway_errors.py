"""One table, one body: each error's status, JSON shape and retry headers."""

from __future__ import annotations

import json

import pytest

from brickwork.contracts.errors import (
    BrickworkError,
    BulkheadFullError,
    CircuitOpenError,
    InputValidationError,
    PermissionDeniedError,
    PluginFailedError,
    ProviderRateLimitedError,
    RecordFailedError,
    StorageError,
)
from brickwork.gateway.errors import (
    IdempotencyConflictError,
    IdempotencyKeyReusedError,
    InternalError,
    PayloadTooLargeError,
    error_response,
    status_of,
)


@pytest.mark.parametrize(
    ("error", "status", "headers"),
    [
        (
            ProviderRateLimitedError("slow down", retry_after=2.2),
            429,
            {"retry-after": "3", "retry-after-ms": "2200"},
        ),
        (CircuitOpenError("open", retry_after=0.2), 503, {"retry-after": "1", "retry-after-ms": "200"}),
        (BulkheadFullError("full"), 503, {"retry-after": "1"}),  # always a hint on a 503
        (RecordFailedError("disk"), 503, {"retry-after": "1"}),
        (StorageError("db down"), 503, {"retry-after": "1"}),
        (PluginFailedError("bug in plugin"), 502, {"x-should-retry": "false"}),
        (InternalError("bug"), 500, {"x-should-retry": "false"}),
        (InputValidationError("bad"), 422, {}),
        (PermissionDeniedError("no"), 403, {}),
        (PayloadTooLargeError("big"), 413, {}),
        (IdempotencyConflictError("running"), 409, {}),
        (IdempotencyKeyReusedError("other body"), 422, {}),
    ],
)
def test_status_body_and_headers(error: BrickworkError, status: int, headers: dict[str, str]) -> None:
    response = error_response(error)
    assert response.status_code == status == status_of(error)
    body = json.loads(bytes(response.body))
    assert body["error"]["code"] == error.code
    assert body["error"]["message"] == error.message
    assert set(body["error"]) >= {"code", "message", "plugin", "retry_after", "type"}
    for name, value in headers.items():
        assert response.headers[name] == value
    if status not in (429, 503):
        assert "retry-after" not in response.headers
    if "x-should-retry" not in headers:
        assert "x-should-retry" not in response.headers
