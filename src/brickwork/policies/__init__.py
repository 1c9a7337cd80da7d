"""Per-plugin policies, applied by the runtime as wrappers around runs and model calls."""

from brickwork.policies.breaker import CircuitBreaker, outcome_of
from brickwork.policies.budget import Budget, BudgetHold
from brickwork.policies.bulkhead import Bulkhead
from brickwork.policies.cache import ResponseCache, cache_key, canonical_json
from brickwork.policies.ratelimit import RateLimiter, RatePermit
from brickwork.policies.retry import Retry, backoff
from brickwork.policies.timeout import Deadline

__all__ = [
    "Budget",
    "BudgetHold",
    "Bulkhead",
    "CircuitBreaker",
    "Deadline",
    "RateLimiter",
    "RatePermit",
    "ResponseCache",
    "Retry",
    "backoff",
    "cache_key",
    "canonical_json",
    "outcome_of",
]
