from __future__ import annotations

import pytest

from brickwork.contracts import errors as E


def test_codes_are_unique_and_stable() -> None:
    codes = E.error_codes()
    classes = list(codes.values())
    assert len(set(codes)) == len(classes)
    # A sample of codes that clients depend on: renaming one is a breaking change.
    assert codes["rate_limited"] is E.RateLimitExceededError
    assert codes["circuit_open"] is E.CircuitOpenError
    assert codes["input_invalid"] is E.InputValidationError
    assert codes["plugin_invalid"] is E.PluginValidationError


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (E.InputValidationError("x"), 422),
        (E.PluginNotFoundError("x"), 404),
        (E.RateLimitExceededError("x", retry_after=2), 429),
        (E.ProviderRateLimitedError("x"), 429),
        (E.CircuitOpenError("x"), 503),
        (E.BudgetExceededError("x"), 402),
        (E.PluginFailedError("x"), 502),
        (E.DeadlineExceededError("x"), 504),
        (E.AuthenticationError("x"), 401),
        (E.PermissionDeniedError("x"), 403),
    ],
)
def test_each_error_maps_to_one_status(error: E.BrickworkError, status: int) -> None:
    assert E.http_status(error) == status


def test_every_error_class_has_a_status_that_is_not_500_unless_a_bug() -> None:
    for code, cls in E.error_codes().items():
        extra: dict[str, object] = {
            E.RetriesExhaustedError: {"attempts": 1},
            E.FallbacksExhaustedError: {"errors": []},
        }.get(cls, {})
        status = E.http_status(cls("x", **extra))
        assert 400 <= status < 600, code
        if status == 500:  # only developer mistakes and Brickwork's own bugs
            assert issubclass(cls, E.ConfigurationError) or code in {"brickwork_error", "internal_error"}, (
                code
            )


def test_retryability_is_a_class_attribute() -> None:
    assert E.ProviderTimeoutError.retryable
    assert E.ProviderRateLimitedError.retryable
    assert E.ProviderUnavailableError.retryable
    assert not E.ProviderResponseError.retryable
    assert not E.InputValidationError.retryable


def test_error_body_shape() -> None:
    body = E.RateLimitExceededError("slow down", plugin="sentiment@1.0.0", retry_after=1.5).to_dict()
    assert body == {
        "code": "rate_limited",
        "message": "slow down",
        "plugin": "sentiment@1.0.0",
        "retry_after": 1.5,
    }


def test_fallbacks_exhausted_keeps_each_error_and_the_soonest_retry_after() -> None:
    a = E.ProviderRateLimitedError("a", retry_after=5)
    b = E.CircuitOpenError("b", retry_after=2)
    err = E.FallbacksExhaustedError("all failed", errors=[a, b])
    assert err.errors == [a, b]
    assert err.retry_after == 2
    assert [x["code"] for x in err.details["attempts"]] == ["provider_rate_limited", "circuit_open"]
