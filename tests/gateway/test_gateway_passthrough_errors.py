"""A pass-through request the upstream refuses is the client's 4xx, and says nothing
about the upstream's health: no 502, and no breaker opened for everyone."""

from __future__ import annotations

import pytest
from gateway_stack import Stack, auth

from brickwork.testing.upstream import Fault


@pytest.mark.parametrize(("status", "expected"), [(400, 400), (404, 404), (422, 400)])
async def test_what_the_upstream_refuses_in_a_passthrough_request_is_the_clients_4xx(
    stack: Stack, status: int, expected: int
) -> None:
    raw = await stack.key(["openai:*"])
    stack.upstream.enqueue(Fault(status=status, message="unknown parameter: tempreature"))
    reply = await stack.client.post(
        "/v1/chat/completions",
        json={"model": "openai:fake-model", "messages": [{"role": "user", "content": "hi"}]},
        headers=auth(raw),
    )
    assert reply.status_code == expected
    error = reply.json()["error"]
    assert "unknown parameter: tempreature" in error["message"]
    assert error["code"] == ("plugin_not_found" if expected == 404 else "invalid_request")


async def test_many_refused_passthrough_requests_do_not_open_the_breaker(stack: Stack) -> None:
    raw = await stack.key(["openai:*"])
    body = {"model": "openai:fake-model", "messages": [{"role": "user", "content": "hi"}]}
    for _ in range(30):  # well past the default breaker's minimum of calls
        stack.upstream.enqueue(Fault(status=400, message="bad parameter"))
        refused = await stack.client.post("/v1/chat/completions", json=body, headers=auth(raw))
        assert refused.status_code == 400
    ok = await stack.client.post("/v1/chat/completions", json=body, headers=auth(raw))
    assert ok.status_code == 200, ok.text
