"""The admin API: keys and labels, for admin keys only."""

from __future__ import annotations

from gateway_stack import Stack, auth


async def test_create_list_use_and_revoke_a_key(stack: Stack) -> None:
    admin = await stack.admin()
    created = await stack.client.post(
        "/v1/admin/keys",
        json={"tenant": "beta", "plugins": ["echo*"], "name": "ci", "expires_in": 3600},
        headers=auth(admin),
    )
    assert created.status_code == 201, created.text
    body = created.json()
    raw, key_id = body["key"], body["id"]
    assert raw.startswith(f"bw_{key_id}_")
    assert body["tenant"] == "beta"
    assert body["expires_at"] > 0
    used = await stack.client.post("/v1/plugins/echo/invoke", json={"input": "x"}, headers=auth(raw))
    assert used.status_code == 200
    listed = await stack.client.get("/v1/admin/keys", headers=auth(admin))
    entries = {k["id"]: k for k in listed.json()["keys"]}
    assert entries[key_id]["plugins"] == ["echo*"]
    assert not entries[key_id]["revoked"]
    assert raw not in listed.text
    assert raw.rsplit("_", 1)[-1] not in listed.text
    revoked = await stack.client.delete(f"/v1/admin/keys/{key_id}", headers=auth(admin))
    assert revoked.json() == {"id": key_id, "revoked": True}
    after = await stack.client.post("/v1/plugins/echo/invoke", json={"input": "x"}, headers=auth(raw))
    assert after.status_code == 401
    assert after.json()["error"]["message"] == "API key revoked"
    missing = await stack.client.delete("/v1/admin/keys/0123456789abcdef", headers=auth(admin))
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "key_not_found"


async def test_bad_key_requests_are_400(stack: Stack) -> None:
    admin = await stack.admin()
    for body in (
        {"tenant": "a", "plugins": []},
        {"tenant": "a", "plugins": ["ok"], "expires_at": 1.0},
        {"tenant": "a", "plugins": ["bad pattern with spaces"]},
        {"tenant": "a", "plugins": ["x"], "rate_limit": {"window": 60}},
        {"tenant": "a", "plugins": ["x"], "expires_at": 9e12, "expires_in": 5},
        {"plugins": ["x"]},
    ):
        response = await stack.client.post("/v1/admin/keys", json=body, headers=auth(admin))
        assert response.status_code == 400, (body, response.text)


async def test_relabel_moves_traffic_and_checks_the_label(stack: Stack) -> None:
    admin = await stack.admin()
    user = await stack.key(["echo"])
    moved = await stack.client.put(
        "/v1/admin/plugins/echo/labels/prod", json={"version": "2.0.0"}, headers=auth(admin)
    )
    assert moved.status_code == 200
    assert moved.json()["labels"]["prod"] == "2.0.0"
    answer = await stack.client.post("/v1/plugins/echo@prod/invoke", json={"input": "a"}, headers=auth(user))
    assert answer.json()["version"] == "2.0.0"
    bad = await stack.client.put(
        "/v1/admin/plugins/echo/labels/1.0.0", json={"version": "2.0.0"}, headers=auth(admin)
    )
    assert bad.status_code == 400
    assert "bad label" in bad.json()["error"]["message"]
    unknown = await stack.client.put(
        "/v1/admin/plugins/echo/labels/beta", json={"version": "7.0.0"}, headers=auth(admin)
    )
    assert unknown.status_code == 404
    removed = await stack.client.delete("/v1/admin/plugins/echo/labels/canary", headers=auth(admin))
    assert removed.status_code == 200
    assert "canary" not in removed.json()["labels"]
    again = await stack.client.delete("/v1/admin/plugins/echo/labels/canary", headers=auth(admin))
    assert again.status_code == 404


async def test_admin_endpoints_refuse_non_admin_keys(stack: Stack) -> None:
    everything = await stack.key(["*"])  # every plugin, but not admin
    calls = [
        stack.client.post("/v1/admin/keys", json={"tenant": "a", "plugins": ["*"]}, headers=auth(everything)),
        stack.client.get("/v1/admin/keys", headers=auth(everything)),
        stack.client.delete("/v1/admin/keys/0123456789abcdef", headers=auth(everything)),
        stack.client.put(
            "/v1/admin/plugins/echo/labels/prod", json={"version": "2.0.0"}, headers=auth(everything)
        ),
        stack.client.delete("/v1/admin/plugins/echo/labels/prod", headers=auth(everything)),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 403
        assert response.json()["error"]["message"] == "this endpoint needs an admin key"
    assert stack.gateway.orchestrator.registry.labels("echo")["prod"] == "1.0.0"
