"""The one error tree of Brickwork.

Every error has a stable machine ``code`` (never reworded), a ``retryable`` class
attribute the retry policy reads, and one HTTP status in :data:`HTTP_STATUS`::

    BrickworkError
    ├── ConfigurationError            developer mistakes, found at start-up
    │   ├── PluginValidationError         a plugin failed registration checks
    │   ├── ProviderValidationError       a provider or provider type failed registration checks
    │   ├── ConfigFileError               a config file is unreadable or invalid
    │   ├── RealProviderForbiddenError    a test tried to reach a real model
    │   ├── ModelNotFoundError            no such model in a provider's catalog
    │   ├── ModelNotInstalledError        a local model's data package is missing
    │   └── ModelVerificationError        a local model file's sha256 is not the official one
    ├── ContractError                 a request or a plugin broke a contract
    │   ├── InvalidRequestError           malformed request, bad plugin ref
    │   │   ├── PayloadTooLargeError          body over the size limit (HTTP)
    │   │   ├── UnsupportedMediaTypeError     not JSON (HTTP)
    │   │   ├── RouteNotFoundError            no such endpoint (HTTP)
    │   │   ├── MethodNotAllowedError         (HTTP)
    │   │   ├── IdempotencyConflictError      same key still running
    │   │   └── IdempotencyKeyReusedError     same key, different body
    │   ├── PluginNotFoundError           no such plugin / version / label
    │   ├── KeyNotFoundError              no API key with that id
    │   ├── InputValidationError          input does not match the plugin's Input
    │   ├── OutputValidationError         plugin output does not match its Output
    │   ├── PluginFailedError             plugin code raised an unexpected exception
    │   ├── CallDepthExceededError        ctx.call nested too deep
    │   └── CallCycleError                ctx.call went back to a plugin on the stack
    ├── ProviderError                 a model backend failed
    │   ├── ProviderTimeoutError          (retryable)
    │   ├── ProviderRateLimitedError      (retryable, carries retry_after)
    │   ├── ProviderUnavailableError      (retryable)
    │   ├── ProviderResponseError         malformed or truncated reply
    │   │   └── ProviderRejectedError         the backend refused the request itself (400/404/422…)
    │   ├── ProviderUnsupportedError      the backend cannot do this (e.g. no log-probs)
    │   ├── ContextLengthExceededError    the prompt does not fit the model's context window
    │   └── ProviderAuthenticationError   the backend refused *our* credentials (401/403)
    ├── PolicyError                   a policy refused or gave up
    │   ├── DeadlineExceededError         the total deadline passed
    │   ├── RetriesExhaustedError         every attempt failed
    │   ├── CircuitOpenError              breaker open / half-open trials taken
    │   ├── BulkheadFullError             concurrency and queue full
    │   ├── QueueTimeoutError             waited too long for a slot
    │   ├── RateLimitExceededError        tenant quota for the window used up
    │   ├── BudgetExceededError           spend limit reached
    │   ├── FallbacksExhaustedError       every link of a fallback chain failed
    │   ├── NoRouteError                  no rule or intent matched the request
    │   └── RecordFailedError             a required record (audit) could not be written
    ├── AuthError
    │   ├── AuthenticationError
    │   └── PermissionDeniedError         a plugin or key used what it did not declare
    └── StorageError                  a store (API keys, audit log) failed or is unreachable (retryable)

Vendor exceptions are translated at the provider boundary (``raise ... from exc``),
never subclassed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

__all__ = [
    "HTTP_STATUS",
    "AuthError",
    "AuthenticationError",
    "BrickworkError",
    "BudgetExceededError",
    "BulkheadFullError",
    "CallCycleError",
    "CallDepthExceededError",
    "CircuitOpenError",
    "ConfigFileError",
    "ConfigurationError",
    "ContextLengthExceededError",
    "ContractError",
    "DeadlineExceededError",
    "FallbacksExhaustedError",
    "IdempotencyConflictError",
    "IdempotencyKeyReusedError",
    "InputValidationError",
    "InternalError",
    "InvalidRequestError",
    "KeyNotFoundError",
    "MethodNotAllowedError",
    "ModelNotFoundError",
    "ModelNotInstalledError",
    "ModelVerificationError",
    "NoRouteError",
    "OutputValidationError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PluginFailedError",
    "PluginNotFoundError",
    "PluginValidationError",
    "PolicyError",
    "ProviderAuthenticationError",
    "ProviderError",
    "ProviderRateLimitedError",
    "ProviderRejectedError",
    "ProviderResponseError",
    "ProviderTimeoutError",
    "ProviderUnavailableError",
    "ProviderUnsupportedError",
    "ProviderValidationError",
    "QueueTimeoutError",
    "RateLimitExceededError",
    "RealProviderForbiddenError",
    "RecordFailedError",
    "RetriesExhaustedError",
    "RouteNotFoundError",
    "StorageError",
    "UnsupportedMediaTypeError",
    "error_codes",
    "http_status",
]


class BrickworkError(Exception):
    """Root of every error Brickwork raises on purpose.

    Attributes:
        code: stable machine code, part of the public API.
        retryable: whether the retry policy may try again.
        plugin: the plugin ref the error concerns, when known.
        retry_after: seconds after which a retry may succeed, when known.
        details: structured extra data (JSON-serialisable).
    """

    code: ClassVar[str] = "brickwork_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        plugin: str | None = None,
        retry_after: float | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.plugin = plugin
        self.retry_after = retry_after
        self.details: dict[str, Any] = details or {}
        #: What the failed request had already spent (USD, tokens): model calls made
        #: before the failure are paid for. Set by the orchestrator; not in the body.
        self.cost = 0.0
        self.tokens = 0

    def to_dict(self) -> dict[str, Any]:
        """The error as the JSON body every adapter returns."""
        body: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "plugin": self.plugin,
            "retry_after": self.retry_after,
        }
        if self.details:
            body["details"] = self.details
        return body

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


# --- configuration -----------------------------------------------------------


class ConfigurationError(BrickworkError):
    code = "configuration_error"


class PluginValidationError(ConfigurationError):
    code = "plugin_invalid"


class ProviderValidationError(ConfigurationError):
    code = "provider_invalid"


class ConfigFileError(ConfigurationError):
    code = "config_invalid"


class RealProviderForbiddenError(ConfigurationError):
    code = "real_provider_forbidden"


class ModelNotFoundError(ConfigurationError):
    """A model name that is not in the provider's catalog (the message lists it)."""

    code = "model_not_found"


class ModelNotInstalledError(ConfigurationError):
    """A local model's data package is not installed (the message says what to install)."""

    code = "model_not_installed"


class ModelVerificationError(ConfigurationError):
    """A local model file (or one of its chunks) is not byte-for-byte the official one.

    ``details`` holds ``expected`` and ``found`` (sha256 hex) and the ``path``.
    """

    code = "model_verification_failed"


# --- contract ----------------------------------------------------------------


class ContractError(BrickworkError):
    code = "contract_error"


class InvalidRequestError(ContractError):
    code = "invalid_request"


class PayloadTooLargeError(InvalidRequestError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(InvalidRequestError):
    code = "unsupported_media_type"


class RouteNotFoundError(InvalidRequestError):
    code = "not_found"


class MethodNotAllowedError(InvalidRequestError):
    code = "method_not_allowed"


class IdempotencyConflictError(InvalidRequestError):
    """A request with the same idempotency key is still running."""

    code = "idempotency_in_progress"


class IdempotencyKeyReusedError(InvalidRequestError):
    """The idempotency key was used before with a different request body."""

    code = "idempotency_key_reused"


class InternalError(BrickworkError):
    """A bug in Brickwork itself: the only error that is a 500 by design."""

    code = "internal_error"


class PluginNotFoundError(ContractError):
    code = "plugin_not_found"


class KeyNotFoundError(ContractError):
    code = "key_not_found"


class InputValidationError(ContractError):
    code = "input_invalid"


class OutputValidationError(ContractError):
    code = "output_invalid"


class PluginFailedError(ContractError):
    code = "plugin_failed"


class CallDepthExceededError(ContractError):
    code = "call_depth_exceeded"


class CallCycleError(ContractError):
    code = "call_cycle"


# --- provider ----------------------------------------------------------------


class ProviderError(BrickworkError):
    code = "provider_error"


class ProviderTimeoutError(ProviderError):
    code = "provider_timeout"
    retryable = True


class ProviderRateLimitedError(ProviderError):
    code = "provider_rate_limited"
    retryable = True


class ProviderUnavailableError(ProviderError):
    code = "provider_unavailable"
    retryable = True


class ProviderResponseError(ProviderError):
    code = "provider_bad_response"


class ProviderRejectedError(ProviderResponseError):
    """The backend answered, and refused the request itself as invalid (HTTP 400,
    404, 409, 413, 422 upstream): an unknown model name, a parameter it does not
    take. The backend is healthy, so breakers do not count it; a pass-through call,
    whose request the client wrote, reports it to the client as its own 4xx.

    ``details`` holds the upstream ``status``.
    """

    code = "provider_rejected_request"


class ProviderUnsupportedError(ProviderError):
    code = "provider_unsupported"


class ContextLengthExceededError(ProviderError):
    """The prompt (with what must follow it) is longer than the model's context window.

    ``details`` holds ``prompt_tokens`` and ``context_window``.
    """

    code = "context_length_exceeded"


class ProviderAuthenticationError(ProviderError):
    """The backend refused the operator's credentials (HTTP 401/403 upstream).

    Not an :class:`AuthenticationError`: the caller authenticated fine; the gateway's
    own key for the backend is wrong, so the caller sees a 502 (an upstream broke),
    never a 401 that would tell them to fix *their* key.
    """

    code = "provider_auth_failed"


# --- policy ------------------------------------------------------------------


class PolicyError(BrickworkError):
    code = "policy_error"


class DeadlineExceededError(PolicyError):
    code = "deadline_exceeded"


class RetriesExhaustedError(PolicyError):
    code = "retries_exhausted"

    def __init__(self, message: str, *, attempts: int, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.attempts = attempts


class CircuitOpenError(PolicyError):
    code = "circuit_open"


class BulkheadFullError(PolicyError):
    code = "bulkhead_full"


class QueueTimeoutError(PolicyError):
    code = "queue_timeout"


class RateLimitExceededError(PolicyError):
    code = "rate_limited"


class BudgetExceededError(PolicyError):
    code = "budget_exceeded"


class FallbacksExhaustedError(PolicyError):
    """Every link of a fallback chain failed; ``errors`` holds each link's error in order."""

    code = "fallbacks_exhausted"

    def __init__(self, message: str, *, errors: Sequence[BrickworkError], **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.errors = list(errors)
        self.details.setdefault("attempts", [e.to_dict() for e in self.errors])
        retry_afters = [e.retry_after for e in self.errors if e.retry_after is not None]
        if self.retry_after is None and retry_afters:
            self.retry_after = min(retry_afters)


class NoRouteError(PolicyError):
    code = "no_route"


class RecordFailedError(PolicyError):
    """An answer is withheld because its audit record could not be written."""

    code = "record_failed"


# --- auth --------------------------------------------------------------------


class AuthError(BrickworkError):
    code = "auth_error"


class AuthenticationError(AuthError):
    code = "unauthenticated"


class PermissionDeniedError(AuthError):
    code = "permission_denied"


# --- storage -----------------------------------------------------------------


class StorageError(BrickworkError):
    """A store could not be read or written (database down, disk full, locked too long)."""

    code = "storage_unavailable"
    retryable = True


#: Error class → HTTP status. Looked up along the MRO, so a subclass without an
#: entry gets its parent's status. Plugin failures are 502 (an upstream broke),
#: never 500: a 500 means a bug in Brickwork itself.
HTTP_STATUS: dict[type[BrickworkError], int] = {
    BrickworkError: 500,
    ConfigurationError: 500,
    ModelNotFoundError: 500,
    ModelNotInstalledError: 500,
    ModelVerificationError: 500,
    ContractError: 400,
    InvalidRequestError: 400,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    RouteNotFoundError: 404,
    MethodNotAllowedError: 405,
    IdempotencyConflictError: 409,
    IdempotencyKeyReusedError: 422,
    InternalError: 500,
    PluginNotFoundError: 404,
    KeyNotFoundError: 404,
    InputValidationError: 422,
    OutputValidationError: 502,
    PluginFailedError: 502,
    CallDepthExceededError: 508,
    CallCycleError: 508,
    ProviderError: 502,
    ProviderTimeoutError: 504,
    ProviderRateLimitedError: 429,
    ProviderUnavailableError: 503,
    ProviderUnsupportedError: 501,
    # Too much input for the model bound to the plugin: the client can send less,
    # so a 4xx (413 Content Too Large), not an upstream failure.
    ContextLengthExceededError: 413,
    ProviderAuthenticationError: 502,
    PolicyError: 503,
    DeadlineExceededError: 504,
    RetriesExhaustedError: 502,
    CircuitOpenError: 503,
    BulkheadFullError: 503,
    QueueTimeoutError: 503,
    RateLimitExceededError: 429,
    BudgetExceededError: 402,
    FallbacksExhaustedError: 502,
    NoRouteError: 422,
    RecordFailedError: 503,
    AuthError: 403,
    AuthenticationError: 401,
    PermissionDeniedError: 403,
    StorageError: 503,
}


def http_status(error: BrickworkError) -> int:
    """The HTTP status for an error, from :data:`HTTP_STATUS` along its MRO."""
    for cls in type(error).__mro__:
        status = HTTP_STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_codes() -> dict[str, type[BrickworkError]]:
    """Every stable code → its class (used by docs and to check codes stay unique)."""
    seen: dict[str, type[BrickworkError]] = {}
    stack: list[type[BrickworkError]] = [BrickworkError]
    while stack:
        cls = stack.pop()
        seen[cls.code] = cls
        stack.extend(cls.__subclasses__())
    return seen
