"""Idempotency keys: a retried request gets the first answer, not a second call.

* Same key, same body, first request finished with a 2xx: its response is replayed
  (``idempotent-replayed: true``) and the plugin is not called again.
* Same key, different body: 422 ``idempotency_key_reused``.
* Same key while the first request still runs: the duplicate waits for it (up to
  ``wait`` seconds, then 409 ``idempotency_in_progress``), then replays its answer,
  or runs itself if the first one failed (failures are not stored: a retry after a
  failure is what a client wants).

Keys are scoped by API key, so two keys (or tenants) never share an answer.
Finished responses live in the orchestrator's state backend for ``ttl`` seconds
(the in-memory state keeps the most recent ``max_cache_entries`` of them, in a
bound of their own: response-cache traffic never evicts them).
Requests in flight are tracked in this process only: with several replicas behind
a load balancer, two concurrent duplicates that reach different replicas can both
run. Closing that gap needs an atomic claim in the state backend (``SET NX PX``
in Redis).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydantic import BaseModel

from brickwork.contracts.clock import Clock
from brickwork.gateway.errors import IdempotencyConflictError, IdempotencyKeyReusedError
from brickwork.state.base import StateBackend

__all__ = ["Idempotency", "StoredResponse"]


class StoredResponse(BaseModel):
    fingerprint: str
    status: int
    body: bytes
    media_type: str = "application/json"
    headers: dict[str, str] = {}


@dataclass
class _InFlight:
    fingerprint: str
    done: asyncio.Event


class Idempotency:
    def __init__(self, state: StateBackend, clock: Clock, *, ttl: float, wait: float) -> None:
        self.state = state
        self.clock = clock
        self.ttl = ttl
        self.wait = wait
        self._in_flight: dict[str, _InFlight] = {}

    @staticmethod
    def fingerprint(method: str, path: str, body: bytes) -> str:
        return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.encode(), body)).hexdigest()

    async def run(
        self,
        scope: str,
        key: str,
        fingerprint: str,
        call: Callable[[], Awaitable[StoredResponse]],
    ) -> tuple[StoredResponse, bool]:
        """The stored response for ``key`` (and ``True``), or ``call()``'s (and ``False``)."""
        # Hashed: the idempotency key is the client's string, kept out of state keys.
        slot = "idem:" + hashlib.sha256(f"{scope}\n{key}".encode()).hexdigest()
        deadline = self.clock.now() + self.wait
        while True:
            stored = await self._stored(slot, fingerprint)
            if stored is not None:
                return stored, True
            running = self._in_flight.get(slot)
            if running is None:
                break
            if running.fingerprint != fingerprint:
                raise _reused()
            remaining = deadline - self.clock.now()
            if remaining <= 0:
                raise IdempotencyConflictError(
                    "a request with this Idempotency-Key is still running; retry later",
                    retry_after=1.0,
                )
            try:
                async with self.clock.timeout(remaining):
                    await running.done.wait()
            except TimeoutError:
                continue  # the loop raises the 409 above
        mine = self._in_flight[slot] = _InFlight(fingerprint, asyncio.Event())
        try:
            response = await call()
            if 200 <= response.status < 300:
                await self.state.cache_set(
                    slot, response.model_dump_json().encode(), ttl=self.ttl, now=self.clock.time()
                )
            return response, False
        finally:
            del self._in_flight[slot]
            mine.done.set()

    async def _stored(self, slot: str, fingerprint: str) -> StoredResponse | None:
        raw = await self.state.cache_get(slot, now=self.clock.time())
        if raw is None:
            return None
        stored = StoredResponse.model_validate_json(raw)
        if stored.fingerprint != fingerprint:
            raise _reused()
        return stored


def _reused() -> IdempotencyKeyReusedError:
    return IdempotencyKeyReusedError(
        "this Idempotency-Key was used with a different request body; use a new key for a new request"
    )
