"""What an operator may tune about the HTTP gateway (the runtime has its own config)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["GatewaySettings"]


class GatewaySettings(BaseModel):
    """Gateway settings; every field has a safe default.

    Attributes:
        max_body_bytes: request bodies above this are refused (413) while being
            read, before any of them is parsed.
        auth_cache_ttl: seconds an authenticated key is trusted without asking the
            key store again. A key revoked through this gateway's admin API is
            forgotten at once; one revoked elsewhere within this many seconds.
        idempotency_ttl: seconds a completed response is replayed for its key.
        idempotency_wait: seconds a duplicate waits for the first request with the
            same key before it gets a 409.
        public_metrics: ``/metrics`` without a key (for a scraper on a private
            network); otherwise an admin key is needed.
        docs: serve ``/docs`` (the OpenAPI document is always at ``/openapi.json``).
        default_max_tokens: ``max_tokens`` sent upstream when a chat request has none.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(default=1_048_576, ge=1)
    auth_cache_ttl: float = Field(default=2.0, ge=0)
    idempotency_ttl: float = Field(default=86_400.0, gt=0)
    idempotency_wait: float = Field(default=30.0, ge=0)
    public_metrics: bool = True
    docs: bool = True
    default_max_tokens: int = Field(default=4096, ge=1)
