"""Fixtures: a fake upstream, and the whole gateway stack on it (see gateway_stack)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx2
import pytest
from gateway_stack import CALLS, UPSTREAM_KEY, Stack, make_orchestrator

from brickwork.gateway import Gateway, GatewaySettings
from brickwork.observability.metrics import MetricsRecorder
from brickwork.runtime.models import allow_real_providers
from brickwork.runtime.recording import MemoryRecorder
from brickwork.storage.audit import SQLiteAuditLog
from brickwork.storage.keys import SQLiteKeyStore
from brickwork.testing.upstream import FakeUpstream


@pytest.fixture
def loopback_providers(_no_real_providers: None) -> Iterator[None]:
    """The OpenAI provider here talks to a fake server on 127.0.0.1: allowed."""
    token = allow_real_providers.set(True)
    try:
        yield
    finally:
        allow_real_providers.reset(token)


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(api_key=UPSTREAM_KEY) as server:
        yield server


@pytest.fixture
def settings() -> GatewaySettings:
    return GatewaySettings(max_body_bytes=64 * 1024, idempotency_wait=2.0)


@pytest.fixture
async def stack(
    tmp_path: Path, upstream: FakeUpstream, settings: GatewaySettings, loopback_providers: None
) -> AsyncIterator[Stack]:
    CALLS.clear()
    memory = MemoryRecorder()
    orchestrator = make_orchestrator(upstream.openai_url, recorders=[memory])
    keys = SQLiteKeyStore(tmp_path / "keys.db", cache_ttl=0)
    audit = SQLiteAuditLog(tmp_path / "audit.db")
    gateway = Gateway(orchestrator, keys=keys, audit=audit, metrics=MetricsRecorder(), settings=settings)
    await gateway.start()
    transport = httpx2.ASGITransport(app=gateway.app())
    async with httpx2.AsyncClient(transport=transport, base_url="http://gateway") as client:
        yield Stack(gateway, client, keys, audit, memory, upstream, tmp_path)
    await gateway.aclose()
