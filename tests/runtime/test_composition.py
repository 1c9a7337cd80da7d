"""``ctx.call``: one plugin calling another through the orchestrator."""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable
from typing import Any

import pytest
from pydantic import Field

from brickwork.contracts.errors import (
    CallCycleError,
    CallDepthExceededError,
    DeadlineExceededError,
    PermissionDeniedError,
    PluginFailedError,
    RateLimitExceededError,
    http_status,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import CachePolicy, Policy, RateLimitPolicy, TimeoutPolicy
from brickwork.contracts.provider import Usage
from brickwork.runtime.models import ModelPrice
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.testing import FakeClock, FakeProvider

Build = Callable[..., Orchestrator]


class TextIn(PluginInput):
    text: str = Field(min_length=1)


class TextOut(PluginOutput):
    text: str


class Upper(Plugin[TextIn, TextOut]):
    """The callee: its own model, cache and rate limit."""

    name = "upper"
    version = "1.0.0"
    description = "Upper-cases text with its model."
    model = "fake:up"
    permissions = frozenset({"model"})
    policy = Policy(cache=CachePolicy(ttl=60), rate_limit=RateLimitPolicy(requests=3, window=60))

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        self.runs += 1
        completion = await ctx.model.complete(input.text)
        return TextOut(text=completion.text.upper())


class Shout(Plugin[TextIn, TextOut]):
    """The caller: calls ``upper`` once per word and joins the answers."""

    name = "shout"
    version = "1.0.0"
    description = "Shouts every word."
    permissions = frozenset({"call:upp*"})

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        parts = []
        for word in input.text.split():
            envelope = await ctx.call("upper", {"text": word})
            parts.append(envelope.output["text"])
        return TextOut(text=" ".join(parts) + "!")


def runs(orch: Orchestrator, name: str) -> int:
    plugin = orch.registry.resolve(name).instance
    assert isinstance(plugin, Upper)
    return plugin.runs


async def test_call_goes_through_the_callee_with_its_own_policies(
    build: Build, recorder: MemoryRecorder
) -> None:
    provider = FakeProvider("fake").enqueue("hi", "there")
    orch = build(Upper, Shout, providers=[provider])

    envelope = await orch.handle({"plugin": "shout", "input": "hi there hi"})

    assert envelope.output == {"text": "HI THERE HI!"}
    assert runs(orch, "upper") == 2  # the third word was a hit in upper's own cache
    assert [(r.plugin, r.depth, r.cache_hit) for r in recorder.records] == [
        ("upper", 1, False),
        ("upper", 1, False),
        ("upper", 1, True),
        ("shout", 0, False),
    ]
    assert {r.trace_id for r in recorder.records} == {envelope.trace_id}


async def test_callee_rate_limit_applies_to_nested_calls(build: Build) -> None:
    orch = build(Upper, Shout, providers=[FakeProvider("fake")])

    with pytest.raises(RateLimitExceededError) as caught:
        await orch.handle({"plugin": "shout", "input": "a b c d"})

    assert caught.value.plugin == "upper"  # quotas are per plugin name, across versions


async def test_usage_cost_and_models_of_the_callee_roll_up(build: Build) -> None:
    class ShoutWithModel(Shout):
        name = "shout-m"
        model = "fake:own"
        permissions = frozenset({"model", "call:upper"})

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            own = await ctx.model.complete(input.text)
            called = await ctx.call("upper", {"text": own.text})
            return TextOut(text=called.output["text"])

    provider = FakeProvider("fake").enqueue("one two", "three")
    prices = {
        "fake:own": ModelPrice(input=1_000, output=1_000),
        "fake:up": ModelPrice(input=0, output=10_000),
    }
    orch = build(Upper, ShoutWithModel, providers=[provider], prices=prices)

    envelope = await orch.handle({"plugin": "shout-m", "input": "x"})

    # own call: 1 in + 2 out at $0.001; upper's call: 2 in + 1 out, output at $0.01.
    assert envelope.output == {"text": "THREE"}
    assert envelope.usage == Usage(input_tokens=3, output_tokens=3, calls=2)
    assert envelope.cost == pytest.approx(0.003 + 0.01)
    assert envelope.models == ["fake:own", "fake:up"]


async def test_call_without_the_call_permission_is_denied(build: Build, recorder: MemoryRecorder) -> None:
    class Nosy(Shout):
        name = "nosy"
        permissions = frozenset({"call:lower"})

    orch = build(Upper, Nosy, providers=[FakeProvider("fake")])

    with pytest.raises(PermissionDeniedError, match="call:upper") as caught:
        await orch.handle({"plugin": "nosy", "input": "a"})

    assert http_status(caught.value) == 403
    assert runs(orch, "upper") == 0
    assert [r.plugin for r in recorder.records] == ["nosy"]  # upper was never dispatched


async def test_a_call_with_bad_input_is_the_callers_failure(build: Build) -> None:
    # The user's input to ``sloppy`` is fine; ``sloppy`` built a bad input for
    # ``upper``. The user must not be told their input is invalid (422).
    class Sloppy(Shout):
        name = "sloppy"

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            envelope = await ctx.call("upper", {"txt": input.text})
            return TextOut(text=envelope.output["text"])

    orch = build(Upper, Sloppy, providers=[FakeProvider("fake")])

    with pytest.raises(PluginFailedError) as caught:
        await orch.handle({"plugin": "sloppy", "input": "a"})

    assert caught.value.plugin == "sloppy@1.0.0"
    assert "upper" in caught.value.message
    assert caught.value.details["call"]["code"] == "input_invalid"
    assert http_status(caught.value) == 502


async def test_a_call_to_a_missing_plugin_is_the_callers_failure(build: Build) -> None:
    class Lost(Shout):
        name = "lost"
        permissions = frozenset({"call:*"})

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            envelope = await ctx.call("nowhere", input)
            return TextOut(text=envelope.output["text"])

    orch = build(Lost)

    with pytest.raises(PluginFailedError) as caught:
        await orch.handle({"plugin": "lost", "input": "a"})

    assert caught.value.details["call"]["code"] == "plugin_not_found"


# --- cycles and depth ----------------------------------------------------------------


def relay(name: str, target: str, *, version: str = "1.0.0") -> type[Plugin[Any, Any]]:
    """A plugin that passes its input on to ``target`` and returns the answer."""

    async def run(self: object, input: TextIn, ctx: Context) -> TextOut:
        envelope = await ctx.call(target, input)
        return TextOut(text=f"{name}>{envelope.output['text']}")

    def body(ns: dict[str, Any]) -> None:
        ns.update(
            name=name,
            version=version,
            description=f"Relays to {target}.",
            permissions=frozenset({"call:*"}),
            run=run,
        )

    return types.new_class(f"Relay_{name}", (Plugin[TextIn, TextOut],), {}, body)


class Leaf(Plugin[TextIn, TextOut]):
    name = "leaf"
    version = "1.0.0"
    description = "Ends a chain."

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        return TextOut(text=input.text)


async def test_calls_nest_up_to_the_depth_limit(build: Build) -> None:
    orch = build(Leaf, relay("r2", "leaf"), relay("r1", "r2"), max_call_depth=3)

    envelope = await orch.handle({"plugin": "r1", "input": "x"})

    assert envelope.output == {"text": "r1>r2>x"}


async def test_one_level_deeper_is_call_depth_exceeded(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(Leaf, relay("r3", "leaf"), relay("r2", "r3"), relay("r1", "r2"), max_call_depth=3)

    with pytest.raises(CallDepthExceededError) as caught:
        await orch.handle({"plugin": "r1", "input": "x"})

    assert "r1@1.0.0 → r2@1.0.0 → r3@1.0.0 → leaf@1.0.0" in caught.value.message
    assert http_status(caught.value) == 508
    assert [r.outcome for r in recorder.records] == ["call_depth_exceeded"] * 4


async def test_a_cycle_is_refused(build: Build) -> None:
    orch = build(relay("ping", "pong"), relay("pong", "ping"))

    with pytest.raises(CallCycleError) as caught:
        await orch.handle({"plugin": "ping", "input": "x"})

    assert "ping@1.0.0 → pong@1.0.0 → ping@1.0.0" in caught.value.message
    assert http_status(caught.value) == 508


async def test_a_plugin_calling_itself_is_a_cycle(build: Build) -> None:
    orch = build(relay("narcissus", "narcissus"))

    with pytest.raises(CallCycleError):
        await orch.handle({"plugin": "narcissus", "input": "x"})


async def test_calling_another_version_of_yourself_is_allowed(build: Build) -> None:
    old = relay("echo", "leaf", version="1.0.0")
    new = relay("echo", "echo@1.0.0", version="2.0.0")
    orch = build(Leaf, old, new)

    envelope = await orch.handle({"plugin": "echo@2.0.0", "input": "x"})

    assert envelope.output == {"text": "echo>echo>x"}


# --- the deadline is shared -----------------------------------------------------------


async def test_a_callee_cannot_outlive_its_callers_deadline(build: Build, clock: FakeClock) -> None:
    class Hang(Plugin[TextIn, TextOut]):
        name = "hang"
        version = "1.0.0"
        description = "Never answers."
        policy = Policy(timeout=TimeoutPolicy(total=60))

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            await asyncio.Event().wait()
            raise AssertionError("unreachable")

    class Caller(Plugin[TextIn, TextOut]):
        name = "caller"
        version = "1.0.0"
        description = "Calls hang with 10s to spare."
        permissions = frozenset({"call:hang"})
        policy = Policy(timeout=TimeoutPolicy(total=10))

        async def run(self, input: TextIn, ctx: Context) -> TextOut:
            assert ctx.remaining() == pytest.approx(10)
            return TextOut(text=(await ctx.call("hang", input)).output["text"])

    orch = build(Hang, Caller)
    task = asyncio.create_task(orch.handle({"plugin": "caller", "input": "x"}))
    await clock.settle()

    clock.advance(10)
    await clock.settle()

    assert task.done()
    with pytest.raises(DeadlineExceededError):
        task.result()
