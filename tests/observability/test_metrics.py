"""Prometheus metrics: exact counts per plugin version, live health gauges, no tenant labels."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client.parser import text_string_to_metric_families

from brickwork.contracts.errors import CircuitOpenError, PluginFailedError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.policy import BreakerPolicy, BulkheadPolicy, Policy
from brickwork.contracts.provider import Usage
from brickwork.contracts.record import CallRecord
from brickwork.observability import MetricsRecorder
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry


def rec(plugin: str | None, version: str | None, outcome: str = "ok", **fields: object) -> CallRecord:
    record = CallRecord(
        trace_id="t", tenant="tenant-acme-7731", time=0.0, depth=0, plugin=plugin, version=version
    )
    record.outcome = outcome
    for name, value in fields.items():
        setattr(record, name, value)
    return record


async def test_counters_and_histograms_are_exact_after_a_known_sequence() -> None:
    metrics = MetricsRecorder()
    sequence = [
        rec(
            "sentiment", "1.0.0", latency_ms=120.0, usage=Usage(input_tokens=10, output_tokens=5), cost=0.002
        ),
        rec("sentiment", "1.0.0", latency_ms=3.0, cache_hit=True),
        rec("sentiment", "1.0.0", "rate_limited", latency_ms=0.5),
        rec(
            "sentiment", "1.0.0", latency_ms=2_000.0, usage=Usage(input_tokens=7, output_tokens=1), cost=0.003
        ),
        rec("sentiment", "2.0.0", latency_ms=40.0, degraded=True, cost=0.01),
        rec(None, None, "invalid_request"),
    ]
    for record in sequence:
        await metrics.record(record)
    value = metrics.registry.get_sample_value
    a, b = {"plugin": "sentiment", "version": "1.0.0"}, {"plugin": "sentiment", "version": "2.0.0"}
    assert value("brickwork_requests_total", a | {"outcome": "ok"}) == 3
    assert value("brickwork_requests_total", a | {"outcome": "rate_limited"}) == 1
    assert value("brickwork_requests_total", b | {"outcome": "ok"}) == 1
    assert (
        value(
            "brickwork_requests_total",
            {"plugin": "unknown", "version": "unknown", "outcome": "invalid_request"},
        )
        == 1
    )
    assert value("brickwork_rate_limited_total", a) == 1
    assert value("brickwork_rate_limited_total", b) is None
    assert value("brickwork_tokens_total", a | {"type": "input"}) == 17
    assert value("brickwork_tokens_total", a | {"type": "output"}) == 6
    assert value("brickwork_cost_usd_total", a) == pytest.approx(0.005)
    assert value("brickwork_cost_usd_total", b) == pytest.approx(0.01)
    assert value("brickwork_cache_hits_total", a) == 1
    assert value("brickwork_degraded_total", b) == 1
    assert value("brickwork_degraded_total", a) is None
    ok = a | {"status": "ok"}
    assert value("brickwork_request_duration_seconds_count", ok) == 3
    assert value("brickwork_request_duration_seconds_sum", ok) == pytest.approx(2.123)
    assert value("brickwork_request_duration_seconds_bucket", ok | {"le": "0.005"}) == 1
    assert value("brickwork_request_duration_seconds_bucket", ok | {"le": "0.25"}) == 2
    assert value("brickwork_request_duration_seconds_bucket", ok | {"le": "2.5"}) == 3
    assert value("brickwork_request_duration_seconds_count", a | {"status": "error"}) == 1


async def test_exposition_has_no_tenant_or_key_label() -> None:
    metrics = MetricsRecorder()
    await metrics.record(rec("sentiment", "1.0.0", usage=Usage(input_tokens=1, output_tokens=1), cost=0.1))
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    assert b"tenant-acme-7731" not in body
    labels = {
        name
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
        for name in sample.labels
    }
    assert labels <= {"plugin", "version", "outcome", "status", "type", "le"}


async def test_label_sets_are_capped() -> None:
    metrics = MetricsRecorder(max_series=2)
    for version in ("1.0.0", "2.0.0", "3.0.0", "4.0.0"):
        await metrics.record(rec("p", version))
    value = metrics.registry.get_sample_value
    assert value("brickwork_requests_total", {"plugin": "p", "version": "2.0.0", "outcome": "ok"}) == 1
    assert value("brickwork_requests_total", {"plugin": "p", "version": "3.0.0", "outcome": "ok"}) is None
    assert value("brickwork_requests_total", {"plugin": "other", "version": "other", "outcome": "ok"}) == 2


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


class Flaky(Plugin[In, Out]):
    name = "flaky"
    version = "1.0.0"
    description = "Fails on 'fail'."
    policy = Policy(retry=None, breaker=BreakerPolicy(min_calls=2, failure_ratio=0.5, open_for=60))

    async def run(self, input: In, ctx: Context) -> Out:
        if input.text == "fail":
            raise RuntimeError("boom")
        return Out(text=input.text)


class Slow(Plugin[In, Out]):
    name = "slow"
    version = "1.0.0"
    description = "Waits for a gate."
    policy = Policy(retry=None, bulkhead=BulkheadPolicy(max_concurrency=1, max_queue=5))
    gate: asyncio.Event

    async def run(self, input: In, ctx: Context) -> Out:
        await self.gate.wait()
        return Out(text=input.text)


async def test_gauges_show_breaker_state_and_bulkhead_occupancy() -> None:
    registry = Registry()
    registry.add(Flaky)
    registry.add(Slow)
    metrics = MetricsRecorder()
    orch = Orchestrator(registry, recorders=[metrics])
    metrics.attach(orch)
    Slow.gate = asyncio.Event()
    value = metrics.registry.get_sample_value
    flaky, slow = {"plugin": "flaky", "version": "1.0.0"}, {"plugin": "slow", "version": "1.0.0"}
    try:
        await metrics.refresh()
        assert value("brickwork_breaker_state", flaky) == 0
        for _ in range(2):
            with pytest.raises(PluginFailedError):
                await orch.handle({"plugin": "flaky", "input": "fail"})
        with pytest.raises(CircuitOpenError):
            await orch.handle({"plugin": "flaky", "input": "ok"})
        calls = [asyncio.create_task(orch.handle({"plugin": "slow", "input": str(i)})) for i in range(3)]
        await asyncio.sleep(0.05)
        await metrics.refresh()
        assert value("brickwork_breaker_state", flaky) == 2
        assert value("brickwork_bulkhead_in_flight", slow) == 1
        assert value("brickwork_bulkhead_queued", slow) == 2
        Slow.gate.set()
        await asyncio.gather(*calls)
        await metrics.refresh()
        assert value("brickwork_bulkhead_in_flight", slow) == 0
        assert value("brickwork_bulkhead_queued", slow) == 0
        assert value("brickwork_requests_total", slow | {"outcome": "ok"}) == 3
        assert value("brickwork_requests_total", flaky | {"outcome": "circuit_open"}) == 1
    finally:
        await orch.aclose()


async def test_recording_refreshes_the_gauges_in_the_background() -> None:
    registry = Registry()
    registry.add(Flaky)
    metrics = MetricsRecorder(refresh_interval=60)
    orch = Orchestrator(registry, recorders=[metrics])
    metrics.attach(orch)
    try:
        assert (
            metrics.registry.get_sample_value(
                "brickwork_breaker_state", {"plugin": "flaky", "version": "1.0.0"}
            )
            is None
        )
        await orch.handle({"plugin": "flaky", "input": "ok"})
        for _ in range(5):
            await asyncio.sleep(0)
        assert (
            metrics.registry.get_sample_value(
                "brickwork_bulkhead_in_flight", {"plugin": "flaky", "version": "1.0.0"}
            )
            == 0
        )
        assert (
            metrics.registry.get_sample_value(
                "brickwork_breaker_state", {"plugin": "flaky", "version": "1.0.0"}
            )
            == 0
        )
    finally:
        await orch.aclose()


async def test_a_health_read_that_fails_keeps_the_last_values(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry()
    registry.add(Flaky)
    metrics = MetricsRecorder()
    orch = Orchestrator(registry, recorders=[metrics])
    metrics.attach(orch)
    labels = {"plugin": "flaky", "version": "1.0.0"}
    try:
        await metrics.refresh()

        async def down(entry: object) -> None:
            raise ConnectionError("state backend down")

        monkeypatch.setattr(orch, "health", down)
        await metrics.refresh()  # logged, not raised
        assert metrics.registry.get_sample_value("brickwork_breaker_state", labels) == 0
        assert b"brickwork_bulkhead_in_flight" in metrics.render()[0]
    finally:
        await orch.aclose()
