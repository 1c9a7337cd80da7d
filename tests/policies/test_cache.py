"""Response cache: what goes into the key, and how long an entry lives."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from brickwork.contracts.policy import CachePolicy
from brickwork.policies.cache import ResponseCache, cache_key, canonical_json
from brickwork.state import MemoryState
from brickwork.testing import FakeClock


class Ask(BaseModel):
    text: str
    options: dict[str, Any] = {}


BASE = ("acme", "summarize@2.1.0", "v3", Ask(text="hello"))


def test_equal_requests_share_a_key() -> None:
    assert cache_key(*BASE) == cache_key("acme", "summarize@2.1.0", "v3", Ask(text="hello"))
    assert cache_key(*BASE).startswith("cache:")


@pytest.mark.parametrize(
    "changed",
    [
        ("globex", "summarize@2.1.0", "v3", Ask(text="hello")),
        ("acme", "summarize@2.2.0", "v3", Ask(text="hello")),
        ("acme", "translate@2.1.0", "v3", Ask(text="hello")),
        ("acme", "summarize@2.1.0", "v4", Ask(text="hello")),
        ("acme", "summarize@2.1.0", None, Ask(text="hello")),
        ("acme", "summarize@2.1.0", "v3", Ask(text="hello!")),
        ("acme", "summarize@2.1.0", "v3", Ask(text="hello", options={"lang": "fr"})),
    ],
    ids=["tenant", "version", "plugin", "prompt-version", "no-prompt-version", "input", "nested-input"],
)
def test_each_part_of_the_request_changes_the_key(changed: tuple[str, str, str | None, Ask]) -> None:
    assert cache_key(*changed) != cache_key(*BASE)


def test_key_does_not_depend_on_key_order() -> None:
    a = Ask(text="x", options={"a": 1, "b": {"c": 2, "d": [1, 2]}})
    b = Ask(text="x", options={"b": {"d": [1, 2], "c": 2}, "a": 1})
    assert cache_key("t", "p@1.0.0", "v1", a) == cache_key("t", "p@1.0.0", "v1", b)


def test_list_order_still_matters() -> None:
    a = Ask(text="x", options={"d": [1, 2]})
    b = Ask(text="x", options={"d": [2, 1]})
    assert cache_key("t", "p@1.0.0", "v1", a) != cache_key("t", "p@1.0.0", "v1", b)


def test_parts_cannot_run_into_each_other() -> None:
    # "a" + "b:c" must not collide with "a:b" + "c".
    assert cache_key("a", "b:c", None, Ask(text="x")) != cache_key("a:b", "c", None, Ask(text="x"))


def test_canonical_json_is_compact_sorted_and_keeps_unicode() -> None:
    assert canonical_json({"b": 1, "a": ["é", None]}) == '{"a":["é",null],"b":1}'


async def test_round_trip_and_ttl_on_fake_time() -> None:
    clock = FakeClock()
    cache = ResponseCache(CachePolicy(ttl=300.0), MemoryState(), clock)
    key = cache_key(*BASE)
    value = {"output": {"summary": "hi", "score": 0.5}, "models": ["local:gemma"]}

    assert await cache.get(key) is None
    await cache.put(key, value)
    assert await cache.get(key) == value

    clock.advance(299.999)
    assert await cache.get(key) == value
    clock.advance(0.001)
    assert await cache.get(key) is None


async def test_a_new_put_restarts_the_ttl() -> None:
    clock = FakeClock()
    cache = ResponseCache(CachePolicy(ttl=10.0), MemoryState(), clock)
    await cache.put("k", {"v": 1})
    clock.advance(8.0)
    await cache.put("k", {"v": 2})
    clock.advance(8.0)
    assert await cache.get("k") == {"v": 2}


async def test_a_non_object_entry_is_a_miss() -> None:
    clock = FakeClock()
    state = MemoryState()
    await state.cache_set("k", b"[1, 2]", ttl=10.0, now=clock.time())
    assert await ResponseCache(CachePolicy(), state, clock).get("k") is None
