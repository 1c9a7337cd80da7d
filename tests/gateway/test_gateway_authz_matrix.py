"""Every route × every kind of key × every way of naming a plugin: zero unexpected allows.

The oracle is independent of the gateway: a request may succeed only if its key
is valid and *every* plugin (or pass-through model) the request would dispatch —
after routing, label and version selection, fallback and nested calls — matches
one of the key's patterns. A denied request must also leave no trace of the
forbidden plugin having run (no call counted, no upstream request).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import pytest
from gateway_stack import CALLS, Stack, auth

pytestmark = pytest.mark.timeout(120)

SCOPED = ["echo*", "flaky", "caller", "embedder", "openai:fake-*"]
ALL = ["*"]
ADMIN_NARROW = ["echo"]


@dataclass(frozen=True)
class Target:
    """A way of naming what runs, and what would then be dispatched."""

    name: str
    routes: tuple[str, ...]
    dispatched: frozenset[str]
    ref: str | None = None
    model: str | None = None
    text: str = "hello"
    metadata: tuple[tuple[str, str], ...] = ()
    never: bool = False  # no key may run it this way


TARGETS = [
    Target("explicit", ("invoke", "chat", "chat-stream"), frozenset({"echo"}), ref="echo"),
    Target("explicit-forbidden", ("invoke", "chat", "chat-stream"), frozenset({"secret"}), ref="secret"),
    Target("label", ("invoke", "chat", "chat-stream"), frozenset({"echo"}), ref="echo@prod"),
    Target("version", ("invoke", "chat", "chat-stream"), frozenset({"echo"}), ref="echo@2.0.0"),
    Target("version-shorthand", ("invoke", "chat"), frozenset({"echo"}), ref="echo@2"),
    Target("metadata-rule", ("route",), frozenset({"rules"}), metadata=(("team", "rules"),)),
    Target("metadata-rule-secret", ("route",), frozenset({"secret"}), metadata=(("team", "secret"),)),
    Target("intent", ("route",), frozenset({"secret"}), text="this is classified"),
    Target("default-route", ("route",), frozenset({"echo"}), text="plain"),
    Target("fallback", ("invoke", "chat", "chat-stream"), frozenset({"flaky", "rules"}), ref="flaky"),
    Target("nested-call", ("invoke", "chat"), frozenset({"caller", "secret"}), ref="caller"),
    Target("embed-plugin", ("embeddings",), frozenset({"embedder"}), ref="embedder"),
    Target(
        "passthrough",
        ("chat", "chat-stream", "embeddings"),
        frozenset({"openai:fake-model"}),
        model="openai:fake-model",
    ),
    Target(
        "passthrough-forbidden",
        ("chat", "chat-stream", "embeddings"),
        frozenset({"openai:gpt-4o"}),
        model="openai:gpt-4o",
    ),
    # The pass-through plugin named directly has no model bound: nobody may run it so.
    Target(
        "passthrough-plugin-by-name",
        ("invoke", "chat"),
        frozenset({"passthrough-openai"}),
        ref="passthrough-openai",
        never=True,
    ),
]


def allowed(patterns: list[str] | None, dispatched: frozenset[str]) -> bool:
    if patterns is None:
        return False
    return all(any(fnmatchcase(d, p) for p in patterns) for d in dispatched)


async def call(stack: Stack, route: str, target: Target, headers: dict[str, str]) -> tuple[int, Any]:
    client = stack.client
    name = target.model or target.ref or ""
    messages = [{"role": "user", "content": target.text}]
    if route == "invoke":
        r = await client.post(
            f"/v1/plugins/{target.ref}/invoke", json={"input": target.text}, headers=headers
        )
    elif route == "route":
        body = {"input": target.text, "metadata": dict(target.metadata)}
        r = await client.post("/v1/route", json=body, headers=headers)
    elif route == "chat":
        r = await client.post(
            "/v1/chat/completions", json={"model": name, "messages": messages}, headers=headers
        )
    elif route == "chat-stream":
        body = {"model": name, "messages": messages, "stream": True}
        r = await client.post("/v1/chat/completions", json=body, headers=headers)
        if r.status_code == 200:
            assert "data: [DONE]" in r.text, r.text  # a completed stream, not an error event
    elif route == "embeddings":
        r = await client.post("/v1/embeddings", json={"model": name, "input": [target.text]}, headers=headers)
    else:
        raise AssertionError(route)
    body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
    return r.status_code, body


async def make_keys(stack: Stack) -> dict[str, tuple[dict[str, str], list[str] | None, bool]]:
    """Key kind → (headers, patterns if the key is valid, is admin)."""
    expired = await stack.key(ALL, expires_at=time.time() + 0.5)
    revoked_raw = await stack.key(ALL)
    await stack.keys.revoke(revoked_raw.split("_")[1])
    keys = {
        "none": ({}, None, False),
        "malformed-header": ({"Authorization": "Token abc"}, None, False),
        "malformed-key": (auth("not-a-key"), None, False),
        "unknown": (auth("bw_0123456789abcdef_" + "A" * 43), None, False),
        "wrong-secret": (auth(revoked_raw[:-4] + "AAAA"), None, False),
        "expired": (auth(expired), None, False),
        "revoked": (auth(revoked_raw), None, False),
        "scoped": (auth(await stack.key(SCOPED)), SCOPED, False),
        "all-non-admin": (auth(await stack.key(ALL)), ALL, False),
        "admin-narrow": (auth(await stack.key(ADMIN_NARROW, admin=True)), ADMIN_NARROW, True),
    }
    await asyncio.sleep(0.6)  # let the short-lived key expire
    return keys


async def test_authorisation_matrix_has_zero_unexpected_allows(stack: Stack) -> None:
    keys = await make_keys(stack)
    unexpected_allows: list[str] = []
    unexpected_denials: list[str] = []
    cases = 0
    for kind, (headers, patterns, _) in keys.items():
        for target in TARGETS:
            for route in target.routes:
                cases += 1
                before = dict(CALLS)
                upstream_before = len(stack.upstream.requests)
                status, body = await call(stack, route, target, headers)
                label = f"{kind} × {route} × {target.name}: {status}"
                expect = allowed(patterns, target.dispatched) and not target.never
                if status == 200 and not expect:
                    unexpected_allows.append(f"{label} {body}")
                if expect and status != 200:
                    unexpected_denials.append(f"{label} {body}")
                if not expect:
                    code = body["error"]["code"]
                    if code == "fallbacks_exhausted":
                        # The key may use the primary, which failed; the fallback it may
                        # not use was skipped (never run) and is listed as refused.
                        attempts = [a["code"] for a in body["error"]["details"]["attempts"]]
                        assert status == 502, label
                        assert "permission_denied" in attempts, label
                    else:
                        assert status in (401, 403), f"{label} {body}"
                        assert code == ("unauthenticated" if patterns is None else "permission_denied"), label
                    # nothing forbidden ran: no count for a plugin outside the key, no upstream call
                    for plugin in ("secret", "rules"):
                        if not allowed(patterns, frozenset({plugin})):
                            assert CALLS.get(plugin, 0) == before.get(plugin, 0), label
                    if target.model is not None:
                        assert len(stack.upstream.requests) == upstream_before, label
    assert unexpected_allows == []
    assert unexpected_denials == []
    assert cases >= 250


async def test_listings_show_only_what_the_key_may_use(stack: Stack) -> None:
    keys = await make_keys(stack)
    for kind, (headers, patterns, admin) in keys.items():
        plugins = await stack.client.get("/v1/plugins", headers=headers)
        models = await stack.client.get("/v1/models", headers=headers)
        if patterns is None:
            assert plugins.status_code == models.status_code == 401, kind
            continue
        names = {p["name"] for p in plugins.json()["plugins"]}
        ids = {m["id"].split("@")[0] for m in models.json()["data"]}
        for name in names | ids:
            if name.startswith("passthrough-"):
                assert admin, kind  # operators see the pass-through plugin's health
            else:
                assert allowed(patterns, frozenset({name})), (kind, name)
        assert not any(i.startswith("passthrough-") for i in ids)


async def test_admin_endpoints_need_an_admin_key(stack: Stack) -> None:
    keys = await make_keys(stack)
    for kind, (headers, patterns, admin) in keys.items():
        listed = await stack.client.get("/v1/admin/keys", headers=headers)
        label = await stack.client.put(
            "/v1/admin/plugins/echo/labels/prod", json={"version": "1.0.0"}, headers=headers
        )
        create = await stack.client.post(
            "/v1/admin/keys", json={"tenant": "x", "plugins": ["*"], "admin": True}, headers=headers
        )
        expected = 200 if admin else (401 if patterns is None else 403)
        assert (listed.status_code, label.status_code) == (expected, expected), kind
        assert create.status_code == (201 if admin else expected), kind
