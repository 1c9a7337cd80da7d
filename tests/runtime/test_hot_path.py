"""What the request path's shortcuts must not change: trace ids, the attempt timer,
cached answers that no longer fit, the tenant of a malformed request, and a
breaker that keeps latencies only for a p95 objective."""

from __future__ import annotations

import asyncio
import os
import re
import time
from collections.abc import Callable
from typing import Any

import pytest

from brickwork.contracts.errors import DeadlineExceededError, InvalidRequestError, ProviderTimeoutError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import BreakerPolicy, CachePolicy, Policy, TimeoutPolicy
from brickwork.contracts.provider import Completion, CompletionRequest
from brickwork.runtime.orchestrator import Orchestrator, new_trace_id
from brickwork.runtime.recording import MemoryRecorder
from brickwork.state.algorithms import BreakerMachine
from brickwork.testing import FakeClock, FunctionProvider

Build = Callable[..., Orchestrator]


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


class Counted(PluginOutput):
    count: int


def _echo(output: type[PluginOutput] = Out, **attrs: Any) -> type[Plugin[In, Any]]:
    class Echo(Plugin[In, output]):  # type: ignore[valid-type]
        name = "echo"
        version = "1.0.0"
        description = "echo"
        runs = 0

        async def run(self, input: In, ctx: Context) -> Any:
            type(self).runs += 1
            if output is Out:
                return Out(text=input.text)
            return output(count=len(input.text))

    for key, value in attrs.items():
        setattr(Echo, key, value)
    return Echo


def test_trace_ids_are_32_hex_digits_and_differ() -> None:
    ids = {new_trace_id() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


def test_trace_ids_start_with_the_time_so_later_ones_sort_later() -> None:
    # (So that the audit log's trace_id index takes a batch into one B-tree page.)
    first = new_trace_id()
    time.sleep(0.002)
    second = new_trace_id()
    assert first < second
    assert abs(int(first[:12], 16) - time.time_ns() // 1_000_000) < 60_000


def test_a_forked_child_does_not_repeat_its_parents_trace_ids() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next id, to the parent
        os.write(write, new_trace_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child != new_trace_id()


async def test_a_cached_answer_that_no_longer_fits_the_contract_is_a_miss(build: Build) -> None:
    policy = Policy(cache=CachePolicy(ttl=60))
    first = _echo(Out, policy=policy)
    orch = build(first)
    await orch.handle({"plugin": "echo", "input": "hello"})
    # The same plugin@version, redeployed with another output model: the stored
    # answer cannot be given as this version's output; the plugin runs again.
    orch.registry.remove("echo@1.0.0")
    changed = _echo(Counted, policy=policy)
    orch.registry.add(changed)
    envelope = await orch.handle({"plugin": "echo", "input": "hello"})
    assert envelope.output == {"count": 5}
    assert not envelope.cache_hit
    assert changed.runs == 1


async def test_a_malformed_request_is_recorded_under_the_principals_tenant(
    build: Build, recorder: MemoryRecorder
) -> None:
    class Key:
        tenant = "acme"

        def allows(self, plugin: str) -> bool:
            return True

    orch = build(_echo())
    with pytest.raises(InvalidRequestError):
        await orch.handle({"plugin": "echo", "input": "x", "tenant": "victim", "bogus": 1}, principal=Key())
    assert recorder.records[-1].tenant == "acme"


async def test_without_an_attempt_limit_a_slow_model_ends_at_the_runs_deadline(build: Build) -> None:
    async def slow(request: CompletionRequest) -> Completion:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    class Asks(Plugin[In, Out]):
        name = "asks"
        version = "1.0.0"
        description = "asks the model"
        model = "fn:slow"
        permissions = frozenset({"model"})
        policy = Policy(retry=None, timeout=TimeoutPolicy(total=0.05))

        async def run(self, input: In, ctx: Context) -> Out:
            return Out(text=(await ctx.model.complete(input.text)).text)

    orch = build(Asks, providers=[FunctionProvider(slow, name="fn")])
    orch.clock = _real_clock()
    with pytest.raises(DeadlineExceededError):
        await orch.handle({"plugin": "asks", "input": "hi"})


async def test_an_attempt_limit_still_times_each_model_call(build: Build) -> None:
    async def slow(request: CompletionRequest) -> Completion:
        await asyncio.sleep(10)
        raise AssertionError("not reached")

    class Asks(Plugin[In, Out]):
        name = "asks"
        version = "1.0.0"
        description = "asks the model"
        model = "fn:slow"
        permissions = frozenset({"model"})
        policy = Policy(retry=None, timeout=TimeoutPolicy(attempt=0.02, total=5))

        async def run(self, input: In, ctx: Context) -> Out:
            return Out(text=(await ctx.model.complete(input.text)).text)

    orch = build(Asks, providers=[FunctionProvider(slow, name="fn")])
    orch.clock = _real_clock()
    with pytest.raises(ProviderTimeoutError):
        await orch.handle({"plugin": "asks", "input": "hi"})


def _real_clock() -> Any:
    from brickwork.contracts.clock import SystemClock

    return SystemClock()


def test_the_breaker_keeps_latencies_only_for_a_p95_objective() -> None:
    plain = BreakerPolicy(min_calls=5)
    slo = BreakerPolicy(min_calls=5, latency_p95=0.5)
    machine = BreakerMachine()
    for i in range(10):
        permit = machine.acquire(float(i), plain)
        machine.record(float(i), plain, "success", 0.1 * i, permit.generation)
    assert machine.latencies == []  # nothing kept without an objective
    assert machine.snapshot(10.0, plain).p95 == pytest.approx(0.9)  # still reported
    # An objective added later sees the window's calls at once, and trips on them.
    permit = machine.acquire(10.0, slo)
    assert machine.record(10.0, slo, "success", 0.95, permit.generation) == "open"


def test_a_breaker_dropping_its_objective_forgets_the_latencies() -> None:
    slo = BreakerPolicy(min_calls=50, latency_p95=5)
    plain = BreakerPolicy(min_calls=50)
    machine = BreakerMachine()
    clock = FakeClock()
    for _ in range(3):
        permit = machine.acquire(clock.time(), slo)
        machine.record(clock.time(), slo, "success", 0.2, permit.generation)
    assert len(machine.latencies) == 3
    permit = machine.acquire(clock.time(), plain)
    machine.record(clock.time(), plain, "success", 0.2, permit.generation)
    assert machine.latencies == []
    # and pruning the window afterwards does not trip over the missing list
    assert machine.snapshot(clock.time() + 3600, plain).calls == 0


async def test_a_model_call_outside_the_runs_task_still_ends_at_the_deadline() -> None:
    # A plugin that shields its model call (or runs it in a task of its own) is not
    # covered by the run's timer: that call keeps a timer of its own.
    from brickwork.contracts.clock import SystemClock
    from brickwork.runtime.models import Providers
    from brickwork.runtime.registry import Registry

    ended: list[str] = []

    async def slow(request: CompletionRequest) -> Completion:
        try:
            await asyncio.sleep(2)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise
        ended.append("finished")
        return Completion(text="late", model=request.model)

    class Shields(Plugin[In, Out]):
        name = "shields"
        version = "1.0.0"
        description = "shields its model call"
        model = "fn:slow"
        permissions = frozenset({"model"})
        policy = Policy(retry=None, timeout=TimeoutPolicy(total=0.05))

        async def run(self, input: In, ctx: Context) -> Out:
            return Out(text=(await asyncio.shield(ctx.model.complete(input.text))).text)

    registry = Registry()
    registry.add(Shields)
    providers = Providers()
    providers.add(FunctionProvider(slow, name="fn"))
    orch = Orchestrator(registry, providers=providers, clock=SystemClock())
    with pytest.raises(DeadlineExceededError):
        await orch.handle({"plugin": "shields", "input": "hi"})
    for _ in range(50):
        if ended:
            break
        await asyncio.sleep(0.01)
    assert ended == ["cancelled"]
