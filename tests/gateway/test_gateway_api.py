"""Brickwork's own API over ASGI: listing, invoking by every kind of ref, routing,
health, metrics, and a clear 4xx for every kind of bad request."""

from __future__ import annotations

import json

from gateway_stack import CALLS, Stack, TextIn, TextOut, auth

from brickwork.contracts.plugin import Context, Plugin


async def test_invoke_by_name_label_and_version_returns_the_envelope(stack: Stack) -> None:
    raw = await stack.key(["echo"])
    cases = {
        "echo": "1.0.0",
        "echo@prod": "1.0.0",
        "echo@canary": "2.0.0",
        "echo@2.0.0": "2.0.0",
        "echo@2": "2.0.0",
    }
    for ref, version in cases.items():
        response = await stack.client.post(
            f"/v1/plugins/{ref}/invoke", json={"input": "hi"}, headers=auth(raw)
        )
        assert response.status_code == 200, response.text
        envelope = response.json()
        assert (envelope["plugin"], envelope["version"]) == ("echo", version)
        assert envelope["output"] == {"text": "hi" if version == "1.0.0" else "HI"}
        assert envelope["route"] == {"method": "explicit", "ref": ref, "rule": None, "scores": {}}
        assert response.headers["x-brickwork-trace-id"] == envelope["trace_id"]
    # every call has its committed audit record, with the key's tenant
    report = await stack.audit.verify()
    assert report.ok
    assert report.count == len(cases)
    assert {r.tenant for r in stack.memory.records} == {"acme"}


async def test_structured_input_and_the_body_fields(stack: Stack) -> None:
    raw = await stack.key(["shape", "echo"])
    response = await stack.client.post(
        "/v1/plugins/shape/invoke",
        json={"input": {"width": 3, "height": 4}, "metadata": {"team": "x"}, "cache_bypass": True},
        headers=auth(raw),
    )
    assert response.status_code == 200
    assert response.json()["output"] == {"area": 12}
    # the tenant comes from the key, never from the body
    spoof = await stack.client.post(
        "/v1/plugins/echo/invoke", json={"input": "x", "tenant": "other"}, headers=auth(raw)
    )
    assert spoof.status_code == 400
    assert spoof.json()["error"]["code"] == "invalid_request"
    assert "tenant" in spoof.json()["error"]["message"]


async def test_route_by_metadata_rule_intent_and_default(stack: Stack) -> None:
    raw = await stack.key(["*"])
    by_rule = await stack.client.post(
        "/v1/route", json={"input": "a", "metadata": {"team": "rules"}}, headers=auth(raw)
    )
    assert by_rule.status_code == 200
    assert by_rule.json()["route"]["method"] == "metadata"
    assert by_rule.json()["plugin"] == "rules"
    by_intent = await stack.client.post("/v1/route", json={"input": "classified stuff"}, headers=auth(raw))
    assert by_intent.json()["route"] == {
        "method": "intent",
        "ref": "secret",
        "rule": None,
        "scores": {"secret": 0.93},
    }
    by_default = await stack.client.post("/v1/route", json={"input": "hello"}, headers=auth(raw))
    assert by_default.json()["route"]["method"] == "default"
    assert by_default.json()["plugin"] == "echo"


async def test_list_plugins_shows_versions_labels_schemas_and_health(stack: Stack) -> None:
    raw = await stack.key(["echo", "llm"])
    response = await stack.client.get("/v1/plugins", headers=auth(raw))
    assert response.status_code == 200
    plugins = {p["name"]: p for p in response.json()["plugins"]}
    assert set(plugins) == {"echo", "llm"}  # only what the key may use
    echo = plugins["echo"]
    assert echo["labels"] == {"canary": "2.0.0", "prod": "1.0.0"}
    assert echo["default_version"] == "1.0.0"
    assert [v["version"] for v in echo["versions"]] == ["1.0.0", "2.0.0"]
    v1 = echo["versions"][0]
    assert v1["input_schema"]["properties"]["text"]["type"] == "string"
    assert v1["output_schema"]["required"] == ["text"]
    assert v1["health"]["breaker"]["state"] == "closed"
    assert v1["health"]["in_flight"] == 0
    one = await stack.client.get("/v1/plugins/llm", headers=auth(raw))
    assert one.status_code == 200
    assert one.json()["versions"][0]["model"] == "openai:fake-model"
    assert (await stack.client.get("/v1/plugins/secret", headers=auth(raw))).status_code == 403
    assert (await stack.client.get("/v1/plugins/nope", headers=auth(raw))).status_code == 404


async def test_bad_requests_are_clear_4xx_never_500(stack: Stack) -> None:
    raw = await stack.key(["*"])
    h = auth(raw)
    post = stack.client.post
    cases = [
        (await post("/v1/plugins/echo/invoke", content=b"{not json", headers=h), 400, "not valid JSON"),
        (await post("/v1/plugins/echo/invoke", content=b"", headers=h), 400, "empty"),
        (await post("/v1/plugins/echo/invoke", json=[1, 2], headers=h), 400, "object"),
        (await post("/v1/plugins/echo/invoke", json={"input": 5}, headers=h), 400, "input"),
        (
            await post("/v1/plugins/echo/invoke", json={"input": "x", "metadata": {"a": 1}}, headers=h),
            400,
            "metadata.a",
        ),
        (
            await post("/v1/plugins/shape/invoke", json={"input": {"width": "wide", "height": 1}}, headers=h),
            422,
            "width",
        ),
        (
            await post("/v1/plugins/shape/invoke", json={"input": "plain text"}, headers=h),
            422,
            "structured input",
        ),
        (
            await post("/v1/plugins/nope/invoke", json={"input": "x"}, headers=h),
            404,
            "no plugin named 'nope'",
        ),
        (
            await post("/v1/plugins/echo@9.9.9/invoke", json={"input": "x"}, headers=h),
            404,
            "versions: 1.0.0, 2.0.0",
        ),
        (await post("/v1/plugins/Bad!Name/invoke", json={"input": "x"}, headers=h), 400, "bad plugin name"),
        (await post("/v1/plugins/echo/invoke", content=b"x" * (64 * 1024 + 1), headers=h), 413, "limit"),
        (
            await post(
                "/v1/plugins/echo/invoke", content=b"input=x", headers={**h, "content-type": "text/plain"}
            ),
            415,
            "application/json",
        ),
        (await stack.client.get("/v1/plugins/echo/invoke", headers=h), 405, "GET is not allowed"),
        (await stack.client.get("/v2/nothing", headers=h), 404, "no route"),
    ]
    for response, status, fragment in cases:
        assert response.status_code == status, (response.request.url, response.text)
        error = response.json()["error"]
        assert set(error) >= {"code", "message", "plugin", "retry_after"}
        assert fragment in error["message"], error


async def test_oversized_body_is_refused_while_streaming_without_a_length(stack: Stack) -> None:
    raw = await stack.key(["*"])

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 1024

    response = await stack.client.post("/v1/plugins/echo/invoke", content=chunks(), headers=auth(raw))
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


async def test_rate_limited_answers_429_with_retry_after(stack: Stack) -> None:
    raw = await stack.key(["limited"])
    statuses = []
    for _ in range(3):
        response = await stack.client.post(
            "/v1/plugins/limited/invoke", json={"input": "x"}, headers=auth(raw)
        )
        statuses.append(response.status_code)
    assert statuses == [200, 200, 429]
    assert int(response.headers["retry-after"]) >= 1
    assert response.json()["error"]["code"] == "rate_limited"
    assert response.json()["error"]["retry_after"] > 0


async def test_a_key_rate_limit_holds_over_all_its_plugins(stack: Stack) -> None:
    raw = await stack.key(["echo", "shape"], rate_limit={"requests": 2, "window": 60})
    a = await stack.client.post("/v1/plugins/echo/invoke", json={"input": "x"}, headers=auth(raw))
    b = await stack.client.post(
        "/v1/plugins/shape/invoke", json={"input": {"width": 1, "height": 1}}, headers=auth(raw)
    )
    c = await stack.client.post("/v1/plugins/echo/invoke", json={"input": "x"}, headers=auth(raw))
    assert (a.status_code, b.status_code, c.status_code) == (200, 200, 429)
    assert "retry-after" in c.headers
    other = await stack.key(["echo"])  # another key has its own window
    assert (
        await stack.client.post("/v1/plugins/echo/invoke", json={"input": "x"}, headers=auth(other))
    ).status_code == 200


async def test_health_readiness_and_metrics(stack: Stack) -> None:
    assert (await stack.client.get("/healthz")).json() == {"status": "ok"}
    ready = await stack.client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    raw = await stack.key(["echo"])
    await stack.client.post("/v1/plugins/echo/invoke", json={"input": "x"}, headers=auth(raw))
    metrics = await stack.client.get("/metrics")
    assert metrics.status_code == 200
    assert 'brickwork_requests_total{outcome="ok",plugin="echo",version="1.0.0"} 1.0' in metrics.text
    assert 'brickwork_breaker_state{plugin="echo",version="1.0.0"} 0.0' in metrics.text
    stack.gateway.drain()
    draining = await stack.client.get("/readyz")
    assert draining.status_code == 503
    assert draining.json()["status"] == "draining"


async def test_openapi_document_has_each_plugins_contract(stack: Stack) -> None:
    response = await stack.client.get("/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"] == "3.1.0"
    shape = doc["paths"]["/v1/plugins/shape/invoke"]["post"]
    body = shape["requestBody"]["content"]["application/json"]["schema"]
    ref = body["properties"]["input"]["$ref"].rsplit("/", 1)[-1]
    assert set(doc["components"]["schemas"][ref]["properties"]) == {"width", "height"}
    for path in ("/v1/chat/completions", "/v1/embeddings", "/v1/models", "/v1/route", "/v1/admin/keys"):
        assert path in doc["paths"]
    assert "passthrough-openai" not in json.dumps(doc["paths"])
    docs = await stack.client.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    # a plugin added at run time is in the next document
    stack.gateway.orchestrator.registry.add(Extra)
    again = (await stack.client.get("/openapi.json")).json()
    assert "/v1/plugins/extra/invoke" in again["paths"]
    assert CALLS == {}  # listing and documenting run no plugin


class Extra(Plugin[TextIn, TextOut]):
    name = "extra"
    version = "1.0.0"
    description = "Registered while serving."

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        return TextOut(text=input.text)


async def test_a_passthrough_model_the_provider_does_not_have_is_404(stack: Stack) -> None:
    raw = await stack.key(["cat:*"])
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    known = await stack.client.post(
        "/v1/chat/completions", json={"model": "cat:known", **chat}, headers=auth(raw)
    )
    assert known.status_code == 200
    assert known.json()["choices"][0]["message"]["content"] == "meow"
    unknown = await stack.client.post(
        "/v1/chat/completions", json={"model": "cat:nope", **chat}, headers=auth(raw)
    )
    assert unknown.status_code == 404
    assert "the catalog has: known" in unknown.json()["error"]["message"]


async def test_the_routes_that_carry_the_traffic_skip_the_router_and_keep_its_answers(stack: Stack) -> None:
    # POST /v1/chat/completions goes straight to its endpoint; every other method
    # or path on it still gets the router's answers, in the one error shape.
    app = stack.gateway.app()
    assert ("POST", "/v1/chat/completions") in app._fast
    raw = await stack.key(["*"])
    h = auth(raw)
    chat = {"model": "echo", "messages": [{"role": "user", "content": "hi"}]}
    ok = await stack.client.post("/v1/chat/completions", json=chat, headers=h)
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == "hi"
    wrong_method = await stack.client.get("/v1/chat/completions", headers=h)
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == "method_not_allowed"
    not_json = await stack.client.post("/v1/chat/completions", content=b"{", headers=h)
    assert not_json.status_code == 400
    assert not_json.json()["error"]["code"] == "invalid_request"
    unauthenticated = await stack.client.post("/v1/chat/completions", json=chat)
    assert unauthenticated.status_code == 401
