"""Step 8: exactly one record per request, whatever happened to it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest
from pydantic import Field

from brickwork.contracts.errors import (
    BrickworkError,
    InputValidationError,
    InvalidRequestError,
    PluginFailedError,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import CachePolicy, Policy
from brickwork.contracts.provider import Usage
from brickwork.contracts.record import CallRecord
from brickwork.contracts.request import Request, RouteDecision
from brickwork.runtime.models import ModelPrice
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import LogRecorder, MemoryRecorder
from brickwork.runtime.routing import Router
from brickwork.testing import FakeClock, FakeProvider

Build = Callable[..., Orchestrator]


class TextIn(PluginInput):
    text: str = Field(min_length=1)


class TextOut(PluginOutput):
    text: str


class Scribe(Plugin[TextIn, TextOut]):
    """Asks its model; fails on "fail"; waits forever on "wait"."""

    name = "scribe"
    version = "3.1.0"
    description = "Writes with a model."
    model = "fake:pen"
    permissions = frozenset({"model"})
    policy = Policy(cache=CachePolicy(ttl=60), breaker=None, retry=None)

    async def run(self, input: TextIn, ctx: Context) -> TextOut:
        completion = await ctx.model.complete(input.text)
        if input.text == "fail":
            raise RuntimeError("spent tokens, then broke")
        if input.text == "wait":
            await asyncio.Event().wait()
        return TextOut(text=completion.text)


PRICES = {"fake:pen": ModelPrice(input=1_000, output=1_000)}


async def test_a_successful_request_leaves_one_complete_record(
    build: Build, recorder: MemoryRecorder, clock: FakeClock
) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake").enqueue("two words")], prices=PRICES)

    envelope = await orch.handle({"plugin": "scribe", "input": "hello", "tenant": "acme"})

    [record] = recorder.records
    assert record.outcome == "ok"
    assert record.error is None
    assert record.trace_id == envelope.trace_id
    assert record.tenant == "acme"
    assert record.time == clock.time()
    assert record.depth == 0
    assert record.route == RouteDecision(method="explicit", ref="scribe")
    assert (record.plugin, record.version) == ("scribe", "3.1.0")
    assert record.models == ["fake:pen"]
    assert record.usage == Usage(input_tokens=1, output_tokens=2, calls=1)
    assert record.cost == pytest.approx(0.003)
    assert not record.cache_hit
    assert record.latency_ms == envelope.latency_ms


async def test_a_cache_hit_is_recorded_as_one(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake")], prices=PRICES)

    await orch.handle({"plugin": "scribe", "input": "hello"})
    await orch.handle({"plugin": "scribe", "input": "hello"})

    assert [(r.cache_hit, r.usage.calls) for r in recorder.records] == [(False, 1), (True, 0)]


async def test_a_failed_request_records_its_code_plugin_and_spend(
    build: Build, recorder: MemoryRecorder
) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake").enqueue("a b c")], prices=PRICES)

    with pytest.raises(PluginFailedError) as caught:
        await orch.handle({"plugin": "scribe", "input": "fail"})

    [record] = recorder.records
    assert record.outcome == "plugin_failed"
    assert record.error == caught.value.message
    assert (record.plugin, record.version) == ("scribe", "3.1.0")
    # The model call before the crash was paid for: the audit must show it.
    assert record.usage == Usage(input_tokens=1, output_tokens=3, calls=1)
    assert record.cost == pytest.approx(0.004)
    assert record.models == ["fake:pen"]


async def test_bad_input_is_recorded_with_its_code(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake")])

    with pytest.raises(InputValidationError):
        await orch.handle({"plugin": "scribe", "input": {"text": ""}})

    [record] = recorder.records
    assert record.outcome == "input_invalid"
    assert (record.plugin, record.version) == ("scribe", "3.1.0")
    assert record.usage.calls == 0


async def test_a_malformed_request_is_recorded_too(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(Scribe)

    with pytest.raises(InvalidRequestError):
        await orch.handle({"plugin": "scribe", "input": "x", "tenant": "acme", "priority": "high"})

    [record] = recorder.records
    assert (record.outcome, record.tenant, record.route) == ("invalid_request", "acme", None)
    assert record.error is not None
    assert "priority" in record.error


async def test_an_unknown_plugin_is_recorded_with_its_route(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(Scribe)

    with pytest.raises(BrickworkError):
        await orch.handle({"plugin": "ghost", "input": "x"})

    [record] = recorder.records
    assert record.outcome == "plugin_not_found"
    assert record.route == RouteDecision(method="explicit", ref="ghost")
    assert record.plugin is None


async def test_a_cancelled_request_is_recorded_as_cancelled(
    build: Build, recorder: MemoryRecorder, clock: FakeClock
) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake")])
    task = asyncio.create_task(orch.handle({"plugin": "scribe", "input": "wait"}))
    await clock.settle()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    [record] = recorder.records
    assert record.outcome == "cancelled"
    assert (record.plugin, record.version) == ("scribe", "3.1.0")


async def test_each_request_of_many_is_recorded_once(build: Build, recorder: MemoryRecorder) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake")])
    inputs = ["a", "b", "fail", "", "a", "c"]

    results = await asyncio.gather(
        *(orch.handle({"plugin": "scribe", "input": {"text": t}}) for t in inputs), return_exceptions=True
    )

    traces = [r.trace_id for r in recorder.records]
    assert len(traces) == len(inputs) == len(set(traces))
    outcomes = sorted(r.outcome for r in recorder.records)
    assert outcomes == ["input_invalid", "ok", "ok", "ok", "ok", "plugin_failed"]
    answered = {r.trace_id for r in results if not isinstance(r, BaseException)}
    assert answered <= set(traces)


async def test_a_broken_recorder_neither_fails_the_request_nor_starves_the_others(
    build: Build, recorder: MemoryRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:
        async def record(self, record: CallRecord) -> None:
            raise OSError("disk full")

    orch = build(Scribe, providers=[FakeProvider("fake")])
    orch.recorders.insert(0, Broken())

    with caplog.at_level(logging.ERROR, logger="brickwork.runtime.orchestrator"):
        envelope = await orch.handle({"plugin": "scribe", "input": "hello"})

    assert envelope.output == {"text": "fake reply"}
    assert len(recorder.records) == 1
    assert "disk full" in caplog.text


async def test_a_raw_exception_outside_the_plugin_is_still_recorded(
    build: Build, recorder: MemoryRecorder
) -> None:
    class BrokenStrategy:
        async def route(self, request: Request) -> RouteDecision | None:
            raise KeyError("bug in a routing strategy")

    orch = build(Scribe, router=Router(strategies=[BrokenStrategy()]))

    with pytest.raises(KeyError):
        await orch.handle({"input": "hello"})

    [record] = recorder.records
    assert record.outcome == "internal_error"
    assert record.error is not None
    assert "KeyError" in record.error


async def test_log_recorder_writes_one_line_without_the_input(
    build: Build, caplog: pytest.LogCaptureFixture
) -> None:
    orch = build(Scribe, providers=[FakeProvider("fake")])
    orch.recorders.append(LogRecorder())

    with caplog.at_level(logging.INFO, logger="brickwork.calls"):
        await orch.handle({"plugin": "scribe", "input": "my secret diary"})

    [line] = [r for r in caplog.records if r.name == "brickwork.calls"]
    data = line.brickwork  # type: ignore[attr-defined]
    assert data["plugin"] == "scribe"
    assert data["outcome"] == "ok"
    assert "secret" not in repr(data)


class _BrokenAudit:
    required = True

    def __init__(self) -> None:
        self.calls = 0

    async def record(self, record: CallRecord) -> None:
        self.calls += 1
        raise OSError("disk full")


class _BrokenMetrics(_BrokenAudit):
    required = False


async def test_an_answer_is_withheld_when_a_required_record_fails() -> None:
    from brickwork.contracts.errors import RecordFailedError, http_status
    from brickwork.plugins.sentiment import SentimentRules
    from brickwork.runtime.orchestrator import Orchestrator
    from brickwork.runtime.registry import Registry

    registry = Registry()
    registry.add(SentimentRules)
    audit, metrics = _BrokenAudit(), _BrokenMetrics()
    ok = Orchestrator(registry, recorders=[metrics])
    assert (await ok.handle({"plugin": "sentiment", "input": "good"})).output["label"] == "positive"
    strict = Orchestrator(registry, recorders=[metrics, audit])
    with pytest.raises(RecordFailedError) as caught:
        await strict.handle({"plugin": "sentiment", "input": "good"})
    assert http_status(caught.value) == 503
    assert isinstance(caught.value.__cause__, OSError)
    with pytest.raises(RecordFailedError):  # an error answer needs its record too
        await strict.handle({"plugin": "sentiment", "input": {"nope": 1}})
    assert audit.calls == 2
