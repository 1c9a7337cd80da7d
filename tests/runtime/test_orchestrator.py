"""The pipeline of one request: envelope, typed errors for bad input and bad plugins,
the deadline, and the response cache."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

import pytest
from pydantic import Field

from brickwork.contracts.errors import (
    DeadlineExceededError,
    InputValidationError,
    InvalidRequestError,
    OutputValidationError,
    PluginFailedError,
    PluginNotFoundError,
    http_status,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput, Prompt
from brickwork.contracts.policy import CachePolicy, Policy, TimeoutPolicy
from brickwork.contracts.request import Request
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.testing import FakeClock

Build = Callable[..., Orchestrator]


class EchoIn(PluginInput):
    text: str = Field(min_length=1)
    repeat: int = Field(default=1, ge=1, le=5)


class EchoOut(PluginOutput):
    text: str


class Echo(Plugin[EchoIn, EchoOut]):
    name = "echo"
    version = "1.2.0"
    description = "Repeats its text."
    prompts = {"main": Prompt(version="3", template="Say {{ text }}")}  # noqa: RUF012 - class data
    policy = Policy(cache=CachePolicy(ttl=60))

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, input: EchoIn, ctx: Context) -> EchoOut:
        self.runs += 1
        return EchoOut(text=input.text * input.repeat)


class CountIn(PluginInput):
    items: list[int]


class Count(Plugin[CountIn, EchoOut]):
    name = "count"
    version = "1.0.0"
    description = "Counts items (structured input, no text field)."

    async def run(self, input: CountIn, ctx: Context) -> EchoOut:
        return EchoOut(text=str(len(input.items)))


class Misbehaving(Plugin[EchoIn, EchoOut]):
    """Does what its input text says, all of it wrong."""

    name = "misbehaving"
    version = "1.0.0"
    description = "Breaks its contract on request."
    policy = Policy(breaker=None, timeout=TimeoutPolicy(total=5))

    async def run(self, input: EchoIn, ctx: Context) -> EchoOut:
        match input.text:
            case "value-error":
                raise ValueError("boom: secret internals")
            case "dict-wrong-field":
                return {"txt": "x"}  # type: ignore[return-value]
            case "string":
                return "just text"  # type: ignore[return-value]
            case "other-model":
                return CountIn(items=[1])  # type: ignore[return-value]
            case "mutated":
                out = EchoOut(text="ok")
                out.text = 42  # type: ignore[assignment]  # no validation on assignment
                return out
            case "hang":
                await asyncio.Event().wait()
            case "own-timeout":
                raise TimeoutError("an inner wait_for gave up")
            case "stray-cancel":
                # Awaiting a future that someone else cancelled: the request itself
                # was never cancelled, so the caller must get a plugin error.
                future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                future.cancel()
                await future
        return EchoOut(text="ok")


def echo_runs(orch: Orchestrator) -> int:
    plugin = orch.registry.resolve("echo").instance
    assert isinstance(plugin, Echo)
    return plugin.runs


# --- the envelope ------------------------------------------------------------------


async def test_envelope_names_what_answered_and_how(build: Build) -> None:
    orch = build(Echo)

    envelope = await orch.handle({"plugin": "echo", "input": {"text": "ab", "repeat": 2}})

    assert envelope.output == {"text": "abab"}
    assert (envelope.plugin, envelope.version) == ("echo", "1.2.0")
    assert envelope.prompt_version == "main@3"
    assert envelope.route.method == "explicit"
    assert envelope.route.ref == "echo"
    assert re.fullmatch(r"[0-9a-f]{32}", envelope.trace_id)
    assert not envelope.cache_hit
    assert not envelope.degraded
    assert envelope.fallbacks == []
    assert envelope.latency_ms >= 0


async def test_plain_text_input_fills_the_text_field(build: Build) -> None:
    orch = build(Echo)

    envelope = await orch.handle(Request(plugin="echo@1.2.0", input="hi"))

    assert envelope.output == {"text": "hi"}


async def test_each_request_gets_its_own_trace_id(build: Build) -> None:
    orch = build(Echo)

    a = await orch.handle({"plugin": "echo", "input": "a"})
    b = await orch.handle({"plugin": "echo", "input": "b"})

    assert a.trace_id != b.trace_id


def test_run_sync_answers_outside_an_event_loop(build: Build) -> None:
    orch = build(Echo)

    assert orch.run_sync({"plugin": "echo", "input": "sync"}).output == {"text": "sync"}


# --- bad input -----------------------------------------------------------------------


async def test_bad_input_is_a_typed_error_listing_every_problem(build: Build) -> None:
    orch = build(Echo)

    with pytest.raises(InputValidationError) as caught:
        await orch.handle({"plugin": "echo", "input": {"text": "", "repeat": 9, "colour": "red"}})

    error = caught.value
    assert http_status(error) == 422
    assert error.plugin == "echo@1.2.0"
    locs = sorted(p["loc"] for p in error.details["errors"])
    assert locs == ["colour", "repeat", "text"]
    assert "echo@1.2.0" in error.message
    assert echo_runs(orch) == 0


async def test_plain_text_for_a_structured_plugin_is_refused(build: Build) -> None:
    orch = build(Count)

    with pytest.raises(InputValidationError, match="structured input"):
        await orch.handle({"plugin": "count", "input": "one two"})


async def test_malformed_request_is_invalid_request(build: Build) -> None:
    orch = build(Echo)

    with pytest.raises(InvalidRequestError) as caught:
        await orch.handle({"plugin": "echo", "input": "x", "unexpected": True})

    assert http_status(caught.value) == 400
    assert caught.value.details["errors"][0]["loc"] == "unexpected"


@pytest.mark.parametrize("ref", ["Echo", "echo@", "echo@1.x.0"])
async def test_malformed_plugin_ref_is_invalid_request(build: Build, ref: str) -> None:
    orch = build(Echo)

    with pytest.raises(InvalidRequestError):
        await orch.handle({"plugin": ref, "input": "x"})


@pytest.mark.parametrize("ref", ["nope", "echo@9.9.9", "echo@canary"])
async def test_unknown_plugin_or_version_is_not_found(build: Build, ref: str) -> None:
    orch = build(Echo)

    with pytest.raises(PluginNotFoundError) as caught:
        await orch.handle({"plugin": ref, "input": "x"})

    assert http_status(caught.value) == 404


# --- bad plugins ---------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["dict-wrong-field", "string", "other-model", "mutated"])
async def test_output_that_breaks_the_contract_is_output_invalid(build: Build, mode: str) -> None:
    orch = build(Misbehaving)

    with pytest.raises(OutputValidationError) as caught:
        await orch.handle({"plugin": "misbehaving", "input": mode})

    assert http_status(caught.value) == 502
    assert caught.value.plugin == "misbehaving@1.0.0"


async def test_plugin_exception_becomes_plugin_failed(build: Build) -> None:
    orch = build(Misbehaving)

    with pytest.raises(PluginFailedError) as caught:
        await orch.handle({"plugin": "misbehaving", "input": "value-error"})

    assert http_status(caught.value) == 502
    assert "ValueError" in caught.value.message
    assert isinstance(caught.value.__cause__, ValueError)


async def test_plugin_raising_timeout_error_before_its_deadline_is_plugin_failed(build: Build) -> None:
    orch = build(Misbehaving)

    with pytest.raises(PluginFailedError, match="TimeoutError"):
        await orch.handle({"plugin": "misbehaving", "input": "own-timeout"})


async def test_stray_cancelled_error_inside_a_plugin_is_plugin_failed(build: Build) -> None:
    orch = build(Misbehaving)

    with pytest.raises(PluginFailedError, match="CancelledError"):
        await orch.handle({"plugin": "misbehaving", "input": "stray-cancel"})

    # The request's task was not cancelled; it can go on awaiting.
    current = asyncio.current_task()
    assert current is not None
    assert current.cancelling() == 0


# --- the deadline --------------------------------------------------------------------


async def test_plugin_that_hangs_past_its_total_timeout_gets_deadline_exceeded(
    build: Build, clock: FakeClock
) -> None:
    orch = build(Misbehaving)
    task = asyncio.create_task(orch.handle({"plugin": "misbehaving", "input": "hang"}))
    await clock.settle()

    clock.advance(4.9)
    await clock.settle()
    assert not task.done()

    clock.advance(0.1)
    await clock.settle()
    assert task.done()
    with pytest.raises(DeadlineExceededError, match="within 5s") as caught:
        task.result()
    assert http_status(caught.value) == 504


async def test_deadline_with_the_real_clock(build: Build) -> None:
    class Sleepy(Misbehaving):
        name = "sleepy"
        policy = Policy(breaker=None, timeout=TimeoutPolicy(total=0.05))

    registry = Registry()
    registry.add(Sleepy)
    orch = Orchestrator(registry)

    with pytest.raises(DeadlineExceededError):
        await orch.handle({"plugin": "sleepy", "input": "hang"})


# --- the cache -----------------------------------------------------------------------


async def test_second_identical_request_is_a_cache_hit(build: Build) -> None:
    orch = build(Echo)
    request = {"plugin": "echo", "input": {"text": "hi", "repeat": 2}}

    first = await orch.handle(request)
    second = await orch.handle(request)

    assert not first.cache_hit
    assert second.cache_hit
    assert second.output == first.output
    assert (second.plugin, second.version, second.prompt_version) == ("echo", "1.2.0", "main@3")
    assert echo_runs(orch) == 1


async def test_equal_input_in_another_key_order_or_form_hits(build: Build) -> None:
    orch = build(Echo)

    await orch.handle({"plugin": "echo", "input": {"text": "hi", "repeat": 1}})
    by_text = await orch.handle({"plugin": "echo", "input": "hi"})

    assert by_text.cache_hit
    assert echo_runs(orch) == 1


async def test_cache_bypass_runs_again_and_refreshes(build: Build) -> None:
    orch = build(Echo)

    await orch.handle({"plugin": "echo", "input": "hi"})
    bypassed = await orch.handle({"plugin": "echo", "input": "hi", "cache_bypass": True})
    after = await orch.handle({"plugin": "echo", "input": "hi"})

    assert not bypassed.cache_hit
    assert after.cache_hit
    assert echo_runs(orch) == 2


async def test_another_tenant_or_input_misses(build: Build) -> None:
    orch = build(Echo)

    await orch.handle({"plugin": "echo", "input": "hi", "tenant": "acme"})
    other_tenant = await orch.handle({"plugin": "echo", "input": "hi", "tenant": "globex"})
    other_input = await orch.handle({"plugin": "echo", "input": "ho", "tenant": "acme"})

    assert not other_tenant.cache_hit
    assert not other_input.cache_hit
    assert echo_runs(orch) == 3


async def test_cache_entry_expires_after_its_ttl(build: Build, clock: FakeClock) -> None:
    orch = build(Echo)

    await orch.handle({"plugin": "echo", "input": "hi"})
    clock.advance(59)
    assert (await orch.handle({"plugin": "echo", "input": "hi"})).cache_hit
    clock.advance(2)
    assert not (await orch.handle({"plugin": "echo", "input": "hi"})).cache_hit
    assert echo_runs(orch) == 2


async def test_a_new_prompt_version_does_not_reuse_old_answers(build: Build) -> None:
    class EchoV2(Echo):
        version = "1.3.0"
        prompts = {"main": Prompt(version="4", template="Say {{ text }}!")}  # noqa: RUF012

    orch = build(Echo, EchoV2)

    await orch.handle({"plugin": "echo@1.2.0", "input": "hi"})
    newer = await orch.handle({"plugin": "echo@1.3.0", "input": "hi"})

    assert not newer.cache_hit
    assert newer.prompt_version == "main@4"


async def test_failures_are_not_cached(build: Build) -> None:
    class Flaky(Plugin[EchoIn, EchoOut]):
        name = "flaky"
        version = "1.0.0"
        description = "Fails once, then answers."
        policy = Policy(cache=CachePolicy(ttl=60), breaker=None)

        def __init__(self) -> None:
            self.runs = 0

        async def run(self, input: EchoIn, ctx: Context) -> EchoOut:
            self.runs += 1
            if self.runs == 1:
                raise RuntimeError("first run fails")
            return EchoOut(text=input.text)

    orch = build(Flaky)

    with pytest.raises(PluginFailedError):
        await orch.handle({"plugin": "flaky", "input": "x"})
    second = await orch.handle({"plugin": "flaky", "input": "x"})

    assert not second.cache_hit
    assert second.output == {"text": "x"}
