"""schemathesis against ``/openapi.json``: generated requests for every operation,
valid and invalid, and not one server error (5xx other than the documented
upstream failures), with every response matching its documented schema.

The gateway runs on a real socket in a thread of its own (schemathesis calls it
synchronously), with an admin key that may use every plugin, so the admin API
and every plugin path are reached too.
"""

from __future__ import annotations

import asyncio
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from gateway_stack import UPSTREAM_KEY, make_orchestrator, serving
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from brickwork.gateway import Gateway, GatewaySettings
from brickwork.runtime.models import allow_real_providers
from brickwork.storage.audit import SQLiteAuditLog
from brickwork.storage.keys import SQLiteKeyStore
from brickwork.testing.upstream import FakeUpstream

#: Examples per operation and generation mode (valid and invalid requests).
EXAMPLES = 10


@dataclass
class Served:
    url: str
    key: str
    gateway: Gateway


def _serve(ready: list[Any], started: threading.Event, stop: threading.Event, home: Path) -> None:
    async def main() -> None:
        allow_real_providers.set(True)  # the provider's only upstream is the fake one on loopback
        async with FakeUpstream(api_key=UPSTREAM_KEY) as upstream:
            keys = SQLiteKeyStore(home / "keys.db", cache_ttl=0)
            audit = SQLiteAuditLog(home / "audit.db")
            gateway = Gateway(
                make_orchestrator(upstream.openai_url),
                keys=keys,
                audit=audit,
                settings=GatewaySettings(max_body_bytes=32 * 1024, idempotency_wait=0.5),
            )
            await gateway.start()
            _, raw = await keys.create(tenant="fuzz", plugins=["*"], admin=True)
            async with serving(gateway) as url:
                ready.append(Served(url, raw, gateway))
                started.set()
                while not stop.is_set():  # noqa: ASYNC110 - stopped from another thread
                    await asyncio.sleep(0.05)
            await gateway.aclose()

    asyncio.run(main())


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    ready: list[Served] = []
    started, stop = threading.Event(), threading.Event()
    with tempfile.TemporaryDirectory() as home:
        thread = threading.Thread(target=_serve, args=(ready, started, stop, Path(home)), daemon=True)
        thread.start()
        assert started.wait(30), "the gateway did not start"
        try:
            yield ready[0]
        finally:
            stop.set()
            thread.join(30)


def test_no_server_errors_and_documented_responses(served: Served) -> None:
    # Driven through hypothesis directly (not schemathesis' pytest plugin, whose lazy
    # loading does not work with this pytest), one operation at a time.
    api = schemathesis.openapi.from_url(served.url + "/openapi.json")
    headers = {"Authorization": f"Bearer {served.key}"}
    checks = [
        schemathesis.checks.not_a_server_error,
        schemathesis.checks.status_code_conformance,
        schemathesis.checks.content_type_conformance,
        schemathesis.checks.response_schema_conformance,
    ]
    operations = [result.ok() for result in api.get_all_operations()]
    statuses: dict[int, int] = {}
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],
            )
            def run(case: Any) -> None:
                response = case.call(headers=headers, timeout=20)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                case.validate_response(response, checks=checks)

            try:
                run()
            except Unsatisfiable:
                # Nothing can be invalid about, say, a GET without parameters.
                assert mode is GenerationMode.NEGATIVE, operation.label
    print(f"{len(operations)} operations; responses by status: {dict(sorted(statuses.items()))}")
    assert len(operations) >= 20
    assert not [status for status in statuses if status >= 500], statuses
    assert statuses.get(200, 0) > 0  # the generated requests did reach plugins
