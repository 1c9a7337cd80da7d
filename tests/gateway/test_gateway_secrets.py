"""No API key, upstream key or token reaches a log line, a metric or an audit record —
not on success, not on failure, not at DEBUG level."""

from __future__ import annotations

import io
import logging

import pytest
from gateway_stack import UPSTREAM_KEY, Stack, auth

from brickwork.observability.logging import configure_logging
from brickwork.testing.upstream import Fault


async def test_no_secret_in_logs_metrics_or_audit(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    stream = io.StringIO()
    handler = configure_logging("DEBUG", json=True, stream=stream)
    caplog.set_level(logging.DEBUG)
    try:
        raw = await stack.key(["echo", "secret", "openai:*"])
        admin = await stack.admin()
        wrong = raw[:-6] + "ZZZZZZ"
        calls = [
            stack.client.post("/v1/plugins/echo/invoke", json={"input": "hi"}, headers=auth(raw)),
            stack.client.post("/v1/plugins/caller/invoke", json={"input": "hi"}, headers=auth(raw)),
            stack.client.post("/v1/plugins/echo/invoke", json={"input": "hi"}, headers=auth(wrong)),
            stack.client.post(
                "/v1/chat/completions",
                json={"model": "openai:fake-model", "messages": [{"role": "user", "content": raw}]},
                headers=auth(raw),
            ),
            stack.client.post("/v1/admin/keys", json={"tenant": "t", "plugins": ["*"]}, headers=auth(admin)),
            stack.client.get("/v1/admin/keys", headers=auth(admin)),
        ]
        stack.upstream.enqueue(Fault(text="fine"))
        for call in calls:
            await call
        stack.upstream.enqueue(Fault(status=401, message=f"bad key {UPSTREAM_KEY}"))
        failed = await stack.client.post(
            "/v1/chat/completions",
            json={"model": "openai:fake-model", "messages": [{"role": "user", "content": "x"}]},
            headers=auth(raw),
        )
        assert failed.status_code == 502
        metrics = (await stack.client.get("/metrics")).text
    finally:
        logging.getLogger().removeHandler(handler)
    audit = io.StringIO()
    await stack.audit.export(audit)
    secrets = [UPSTREAM_KEY, *stack.raw_keys, *(r.split("_", 2)[2] for r in stack.raw_keys)]
    places = {
        "log": stream.getvalue() + caplog.text,
        "metrics": metrics,
        "audit": audit.getvalue(),
        "error body": failed.text,
    }
    assert stream.getvalue()  # something was logged
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a secret reached the {where}"
