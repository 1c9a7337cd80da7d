"""Exact response cache: tenant + plugin@version + prompt version + canonical input."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel

from brickwork.contracts.clock import Clock
from brickwork.contracts.policy import CachePolicy
from brickwork.state.base import StateBackend

__all__ = ["ResponseCache", "cache_key", "canonical_json"]


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no spaces: equal inputs give equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(tenant: str, plugin_ref: str, prompt_version: str | None, data: BaseModel) -> str:
    material = canonical_json([tenant, plugin_ref, prompt_version or "", data.model_dump(mode="json")])
    return "cache:" + hashlib.sha256(material.encode()).hexdigest()


class ResponseCache:
    """Stores a run's output and accounting, for replay on an equal request."""

    def __init__(self, policy: CachePolicy, state: StateBackend, clock: Clock) -> None:
        self.policy = policy
        self.state = state
        self.clock = clock

    async def get(self, key: str) -> dict[str, Any] | None:
        raw = await self.state.cache_get(key, now=self.clock.time())
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    async def put(self, key: str, value: dict[str, Any]) -> None:
        await self.state.cache_set(
            key, canonical_json(value).encode(), ttl=self.policy.ttl, now=self.clock.time()
        )
