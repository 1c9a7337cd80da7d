"""Prometheus metrics per plugin and version, from call records and live health.

Counters and histograms come from :class:`~brickwork.contracts.record.CallRecord`
(one per call, nested ``ctx.call`` included). Gauges — breaker state, bulkhead
in flight and queued — come from :meth:`Orchestrator.health
<brickwork.runtime.orchestrator.Orchestrator.health>`. That method is async (it
asks the state backend, which may do I/O), while Prometheus collects synchronously,
so the gauges are served from a snapshot that :meth:`MetricsRecorder.refresh`
takes. An HTTP handler for ``/metrics`` should ``await recorder.refresh()``
before :meth:`MetricsRecorder.render`, so scrapes see live values; recording
also refreshes it in the background when it is older than ``refresh_interval``.

Labels are ``plugin``, ``version``, and ``outcome`` (``ok`` or a stable error
code) or ``status`` (``ok``/``error``) or ``type`` (token direction). Never a
tenant or a key: the series count must not grow with customers, and a label is
readable by anyone who can read the metrics.

| metric | labels |
|---|---|
| ``brickwork_requests_total`` | plugin, version, outcome |
| ``brickwork_request_duration_seconds`` (histogram) | plugin, version, status |
| ``brickwork_tokens_total`` | plugin, version, type=input/output |
| ``brickwork_cost_usd_total`` | plugin, version |
| ``brickwork_cache_hits_total`` | plugin, version |
| ``brickwork_rate_limited_total`` | plugin, version |
| ``brickwork_degraded_total`` | plugin, version |
| ``brickwork_breaker_state`` (0 closed, 1 half-open, 2 open) | plugin, version |
| ``brickwork_bulkhead_in_flight``, ``brickwork_bulkhead_queued`` | plugin, version |
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from brickwork.contracts.clock import SystemClock
from brickwork.contracts.record import CallRecord

if TYPE_CHECKING:
    from brickwork.contracts.clock import Clock
    from brickwork.runtime.orchestrator import Orchestrator

__all__ = ["BREAKER_STATES", "LATENCY_BUCKETS", "MetricsRecorder"]

log = logging.getLogger(__name__)

#: Seconds: from a cache hit (milliseconds) to a long generation (minutes).
LATENCY_BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    30.0,
    60.0,
    120.0,
    300.0,
)

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}

_UNKNOWN = "unknown"  # a call refused before any plugin was chosen
_OVERFLOW = "other"  # past ``max_series`` plugin versions


@dataclass(frozen=True)
class _Gauges:
    plugin: str
    version: str
    breaker: int | None
    in_flight: int
    queued: int


class MetricsRecorder:
    """A recorder (not required) with its own registry, so several can coexist.

    Args:
        max_series: plugin@version pairs to label individually; calls of any
            further pair are counted under ``plugin="other", version="other"``.
        refresh_interval: seconds after which recording refreshes the gauge snapshot.
    """

    required = False

    def __init__(
        self,
        *,
        registry: CollectorRegistry | None = None,
        buckets: Iterable[float] = LATENCY_BUCKETS,
        max_series: int = 1_000,
        refresh_interval: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self.max_series = max_series
        self.refresh_interval = refresh_interval
        self.clock: Clock = clock or SystemClock()
        labels = ("plugin", "version")
        r = self.registry
        self.requests = Counter(
            "brickwork_requests", "Calls, by outcome (ok or an error code).", (*labels, "outcome"), registry=r
        )
        self.latency = Histogram(
            "brickwork_request_duration_seconds",
            "Call latency in seconds, ok or error.",
            (*labels, "status"),
            buckets=tuple(buckets),
            registry=r,
        )
        self.tokens = Counter(
            "brickwork_tokens", "Model tokens, by type (input or output).", (*labels, "type"), registry=r
        )
        self.cost = Counter("brickwork_cost_usd", "Model cost in US dollars.", labels, registry=r)
        self.cache_hits = Counter(
            "brickwork_cache_hits", "Calls answered from the cache.", labels, registry=r
        )
        self.rate_limited = Counter(
            "brickwork_rate_limited", "Calls refused by a rate limit.", labels, registry=r
        )
        self.degraded = Counter(
            "brickwork_degraded", "Calls answered by a fallback, not the first choice.", labels, registry=r
        )
        self._series: set[tuple[str, str]] = set()
        self._children: dict[tuple[Any, tuple[str, ...]], Any] = {}
        self._orchestrator: Orchestrator | None = None
        self._snapshot: list[_Gauges] = []
        self._refreshed_at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self.registry.register(_HealthCollector(self))

    # --- recording ----------------------------------------------------------------

    async def record(self, record: CallRecord) -> None:
        plugin, version = self._labels(record)
        child = self._child
        outcome = record.outcome
        child(self.requests, plugin, version, outcome).inc()
        status = "ok" if outcome == "ok" else "error"
        child(self.latency, plugin, version, status).observe(max(0.0, record.latency_ms) / 1000)
        usage = record.usage
        if usage.input_tokens > 0:
            child(self.tokens, plugin, version, "input").inc(usage.input_tokens)
        if usage.output_tokens > 0:
            child(self.tokens, plugin, version, "output").inc(usage.output_tokens)
        if record.cost > 0:
            child(self.cost, plugin, version).inc(record.cost)
        if record.cache_hit:
            child(self.cache_hits, plugin, version).inc()
        if outcome == "rate_limited":
            child(self.rate_limited, plugin, version).inc()
        if record.degraded:
            child(self.degraded, plugin, version).inc()
        self._maybe_refresh()

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once: ``labels()`` costs more than the
        increment itself. (A child is created, and exported, only when first used.)"""
        key = (metric, labels)
        found = self._children.get(key)
        if found is None:
            found = metric.labels(*labels)
            if len(self._children) < 16 * self.max_series:
                self._children[key] = found
        return found

    def _labels(self, record: CallRecord) -> tuple[str, str]:
        if record.plugin is None:
            return _UNKNOWN, _UNKNOWN
        pair = (record.plugin, record.version or _UNKNOWN)
        if pair in self._series:
            return pair
        if len(self._series) >= self.max_series:
            return _OVERFLOW, _OVERFLOW
        self._series.add(pair)
        return pair

    # --- live gauges --------------------------------------------------------------

    def attach(self, orchestrator: Orchestrator) -> None:
        """Serve breaker and bulkhead gauges for ``orchestrator``'s plugins."""
        self._orchestrator = orchestrator
        self._snapshot = []
        self._refreshed_at = None

    async def refresh(self) -> None:
        """Take a new snapshot of every registered plugin version's health.

        A version whose health cannot be read now (state backend down) keeps its
        last values; the failure is logged, not raised, so a scrape still answers.
        """
        orchestrator = self._orchestrator
        if orchestrator is None:
            return
        previous = {(g.plugin, g.version): g for g in self._snapshot}
        gauges: list[_Gauges] = []
        for entry in list(orchestrator.registry.entries()):
            name, version = entry.name, str(entry.version)
            try:
                health = await orchestrator.health(entry)
            except Exception:
                log.warning("metrics: could not read the health of %s", entry.ref, exc_info=True)
                if (name, version) in previous:
                    gauges.append(previous[(name, version)])
                continue
            breaker = None if health.breaker is None else BREAKER_STATES[health.breaker.mode]
            gauges.append(_Gauges(name, version, breaker, health.in_flight, health.queued))
        self._snapshot = gauges
        self._refreshed_at = self.clock.now()

    def _maybe_refresh(self) -> None:
        if self._orchestrator is None or (self._refreshing is not None and not self._refreshing.done()):
            return
        if self._refreshed_at is not None and self.clock.now() - self._refreshed_at < self.refresh_interval:
            return
        self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except Exception:  # a bug, not an outage (refresh handles those): never fail a call for it
            log.exception("metrics: could not refresh plugin health")

    def gauges(self) -> list[_Gauges]:
        return list(self._snapshot)

    # --- exposition ---------------------------------------------------------------

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition: ``(body, content_type)``."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _HealthCollector(Collector):
    def __init__(self, recorder: MetricsRecorder) -> None:
        self.recorder = recorder

    def describe(self) -> Iterable[Metric]:
        return []  # collected from a snapshot that may change shape; nothing to pre-declare

    def collect(self) -> Iterator[Metric]:
        labels = ["plugin", "version"]
        breaker = GaugeMetricFamily(
            "brickwork_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.", labels=labels
        )
        in_flight = GaugeMetricFamily(
            "brickwork_bulkhead_in_flight", "Calls running in the bulkhead.", labels=labels
        )
        queued = GaugeMetricFamily("brickwork_bulkhead_queued", "Calls waiting for a slot.", labels=labels)
        for g in self.recorder.gauges():
            if g.breaker is not None:
                breaker.add_metric([g.plugin, g.version], g.breaker)
            in_flight.add_metric([g.plugin, g.version], g.in_flight)
            queued.add_metric([g.plugin, g.version], g.queued)
        yield breaker
        yield in_flight
        yield queued
