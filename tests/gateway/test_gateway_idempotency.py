"""Idempotency keys on invoke: one plugin run per key and body."""

from __future__ import annotations

import asyncio

from gateway_stack import CALLS, Stack, auth


async def test_same_key_and_body_replays_without_running_the_plugin_again(stack: Stack) -> None:
    raw = await stack.key(["echo", "slow"])
    headers = {**auth(raw), "Idempotency-Key": "order-17"}
    first = await stack.client.post("/v1/plugins/echo/invoke", json={"input": "hi"}, headers=headers)
    # the same body, spelled differently (spaces, key order): still the same request
    second = await stack.client.post(
        "/v1/plugins/echo/invoke",
        content=b'{ "metadata": {},  "input": "hi" }',
        headers={**headers, "content-type": "application/json"},
    )
    assert first.status_code == second.status_code == 200
    assert second.content == first.content  # the same envelope, trace id included
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert CALLS["echo@1"] == 1
    assert len(stack.memory.records) == 1  # one run, one record


async def test_same_key_different_body_is_rejected(stack: Stack) -> None:
    raw = await stack.key(["echo"])
    headers = {**auth(raw), "Idempotency-Key": "k1"}
    assert (
        await stack.client.post("/v1/plugins/echo/invoke", json={"input": "a"}, headers=headers)
    ).status_code == 200
    other = await stack.client.post("/v1/plugins/echo/invoke", json={"input": "b"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["error"]["code"] == "idempotency_key_reused"
    elsewhere = await stack.client.post("/v1/plugins/echo@2/invoke", json={"input": "a"}, headers=headers)
    assert elsewhere.status_code == 422  # another plugin is another request
    assert CALLS == {"echo@1": 1}


async def test_concurrent_duplicates_wait_for_the_first_and_share_its_answer(stack: Stack) -> None:
    raw = await stack.key(["slow"])
    headers = {**auth(raw), "Idempotency-Key": "dup"}
    body = {"input": {"text": "once", "seconds": 0.3}}
    responses = await asyncio.gather(
        *(stack.client.post("/v1/plugins/slow/invoke", json=body, headers=headers) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [200] * 5
    assert len({r.json()["trace_id"] for r in responses}) == 1
    assert CALLS["slow"] == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4


async def test_a_duplicate_that_waits_too_long_gets_409(stack: Stack) -> None:
    raw = await stack.key(["slow"])
    headers = {**auth(raw), "Idempotency-Key": "long"}
    body = {"input": {"text": "slow", "seconds": 3.0}}  # longer than idempotency_wait (2 s)
    first = asyncio.create_task(stack.client.post("/v1/plugins/slow/invoke", json=body, headers=headers))
    await asyncio.sleep(0.1)
    second = await stack.client.post("/v1/plugins/slow/invoke", json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["error"]["code"] == "idempotency_in_progress"
    assert "retry-after" not in second.headers  # a 409 is retried by clients at once
    assert (await first).status_code == 200
    assert CALLS["slow"] == 1


async def test_failures_are_not_replayed_and_keys_are_per_api_key(stack: Stack) -> None:
    raw = await stack.key(["shape"])
    headers = {**auth(raw), "Idempotency-Key": "retry-me"}
    bad = {"input": {"width": 1}}
    assert (await stack.client.post("/v1/plugins/shape/invoke", json=bad, headers=headers)).status_code == 422
    again = await stack.client.post("/v1/plugins/shape/invoke", json=bad, headers=headers)
    assert again.status_code == 422
    assert "idempotent-replayed" not in again.headers
    good = {"input": {"width": 2, "height": 3}}
    other_key = await stack.key(["shape"], tenant="acme")
    a = await stack.client.post(
        "/v1/plugins/shape/invoke", json=good, headers={**auth(other_key), "Idempotency-Key": "same"}
    )
    b = await stack.client.post(
        "/v1/plugins/shape/invoke", json=good, headers={**headers, "Idempotency-Key": "same"}
    )
    assert a.status_code == b.status_code == 200
    assert a.json()["trace_id"] != b.json()["trace_id"]  # another key never sees this key's answer


async def test_bad_idempotency_keys_are_400(stack: Stack) -> None:
    raw = await stack.key(["echo"])
    response = await stack.client.post(
        "/v1/plugins/echo/invoke", json={"input": "a"}, headers={**auth(raw), "Idempotency-Key": "x" * 257}
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]["message"]
