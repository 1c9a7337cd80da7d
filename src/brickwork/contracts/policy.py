"""Declared operational policy of a plugin.

A plugin class declares its default :class:`Policy`; a config file may override any
field (deep merge, see :meth:`Policy.merged`). The runtime applies it — plugin code
never retries, limits or caches by itself. Every section is optional; ``None``
means the policy is off.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "DEFAULT_FALLBACK_ON",
    "BreakerPolicy",
    "BudgetPolicy",
    "BulkheadPolicy",
    "CachePolicy",
    "FallbackPolicy",
    "Policy",
    "RateLimitPolicy",
    "RetryPolicy",
    "TimeoutPolicy",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutPolicy(_Section):
    """Per model-call attempt, and a total deadline for the whole plugin run."""

    attempt: float | None = Field(default=None, gt=0, description="seconds per model call")
    total: float = Field(default=60.0, gt=0, description="seconds for the whole run")


class RetryPolicy(_Section):
    """Exponential backoff with full jitter, on retryable errors only."""

    max_attempts: int = Field(default=3, ge=1, le=20)
    base_delay: float = Field(default=0.2, ge=0)
    max_delay: float = Field(default=10.0, ge=0)
    respect_retry_after: bool = True
    max_retry_after: float = Field(
        default=30.0, ge=0, description="a Retry-After longer than this is not waited for"
    )


class BreakerPolicy(_Section):
    """Trips on a failure ratio or on a p95 latency objective over a sliding window."""

    window: float = Field(default=60.0, gt=0, description="seconds of outcomes considered")
    min_calls: int = Field(default=10, ge=1, description="no verdict on fewer calls")
    failure_ratio: float = Field(default=0.5, gt=0, le=1)
    latency_p95: float | None = Field(
        default=None, gt=0, description="seconds; trips when the window's p95 is above it"
    )
    open_for: float = Field(default=30.0, gt=0, description="seconds open before trials")
    half_open_trials: int = Field(default=3, ge=1, description="exact number of trial calls")
    per_model: bool = Field(
        default=True,
        description=(
            "also a breaker per plugin + provider around each model call, so an open one sends "
            "`ctx.model` to the next model of its chain; off for a plugin whose run is one call "
            "to one provider (a pass-through), where the plugin's breaker already counts those calls"
        ),
    )


class BulkheadPolicy(_Section):
    """Max concurrent runs, with a bounded queue and a queue timeout."""

    max_concurrency: int = Field(default=8, ge=1)
    max_queue: int = Field(default=32, ge=0)
    queue_timeout: float = Field(default=10.0, gt=0)


class RateLimitPolicy(_Section):
    """Requests and/or tokens per sliding window, per plugin × tenant."""

    window: float = Field(default=60.0, gt=0)
    requests: int | None = Field(default=None, ge=1)
    tokens: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _some_limit(self) -> RateLimitPolicy:
        if self.requests is None and self.tokens is None:
            raise ValueError("rate_limit needs `requests` or `tokens`")
        return self


#: Error codes that move a request on to the next link of a fallback chain.
#: Bad input and the tenant's own quota are not among them: another version would
#: fail the same input, and falling back must not be a way around a quota.
DEFAULT_FALLBACK_ON: tuple[str, ...] = (
    "provider_timeout",
    "provider_rate_limited",
    "provider_unavailable",
    "provider_bad_response",
    "provider_rejected_request",
    "provider_unsupported",
    "provider_auth_failed",
    "context_length_exceeded",
    "provider_error",
    "retries_exhausted",
    "circuit_open",
    "budget_exceeded",
    "deadline_exceeded",
    "plugin_failed",
    "output_invalid",
    "bulkhead_full",
    "queue_timeout",
    "fallbacks_exhausted",
)


class FallbackPolicy(_Section):
    """Other models for ``ctx.model``, other implementations for the whole plugin."""

    models: tuple[str, ...] = ()
    plugins: tuple[str, ...] = Field(
        default=(), description="refs of plugins with the same contract, tried in order"
    )
    on: tuple[str, ...] = DEFAULT_FALLBACK_ON


class CachePolicy(_Section):
    """Exact cache keyed by tenant + plugin@version + prompt version + canonical input."""

    ttl: float = Field(default=300.0, gt=0)


class BudgetPolicy(_Section):
    """Spend limit in USD per period per plugin (× tenant when ``per_tenant``)."""

    limit: float = Field(gt=0, description="USD per period")
    period: float = Field(default=86_400.0, gt=0, description="seconds")
    per_tenant: bool = True
    on_state_error: Literal["open", "closed"] = Field(
        default="closed",
        description="when spend cannot be checked: `open` lets the call through, `closed` refuses",
    )


class Policy(_Section):
    """Everything the runtime applies around one plugin."""

    timeout: TimeoutPolicy = TimeoutPolicy()
    retry: RetryPolicy | None = RetryPolicy()
    breaker: BreakerPolicy | None = BreakerPolicy()
    bulkhead: BulkheadPolicy | None = BulkheadPolicy()
    rate_limit: RateLimitPolicy | None = None
    fallback: FallbackPolicy = FallbackPolicy()
    cache: CachePolicy | None = None
    budget: BudgetPolicy | None = None

    def merged(self, override: dict[str, Any] | None) -> Policy:
        """This policy with ``override`` deep-merged on top, validated again.

        A section set to ``None`` in the override turns that policy off.
        """
        if not override:
            return self
        return Policy.model_validate(_deep_merge(self.model_dump(), override))

    def summary(self) -> str:
        """One line for tables: what is on, with its main number."""
        parts = [f"timeout {self.timeout.total:g}s"]
        if self.retry:
            parts.append(f"retry ×{self.retry.max_attempts}")
        if self.breaker:
            parts.append(f"breaker {self.breaker.failure_ratio:.0%}")
        if self.bulkhead:
            parts.append(f"bulkhead {self.bulkhead.max_concurrency}+{self.bulkhead.max_queue}")
        if self.rate_limit:
            rl = self.rate_limit
            what = [
                f"{rl.requests} req" if rl.requests else "",
                f"{rl.tokens} tok" if rl.tokens else "",
            ]
            parts.append(f"rate {' '.join(w for w in what if w)}/{rl.window:g}s")
        if self.cache:
            parts.append(f"cache {self.cache.ttl:g}s")
        if self.budget:
            parts.append(f"budget ${self.budget.limit:g}/{self.budget.period:g}s")
        if self.fallback.plugins or self.fallback.models:
            parts.append("fallback → " + ", ".join((*self.fallback.models, *self.fallback.plugins)))
        return ", ".join(parts)


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out
