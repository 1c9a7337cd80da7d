"""The record of one call, and the interface of what receives it.

The orchestrator gives one :class:`CallRecord` per handled request (step 8) to
every :class:`Recorder`: metrics, logs and the hash-chained audit log are
recorders, and the orchestrator knows only this interface. Both are contracts so
that the stores and the observability code name them without importing the
runtime.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Protocol

from brickwork.contracts.provider import Usage
from brickwork.contracts.request import Attempt, RouteDecision

__all__ = ["CallRecord", "Recorder"]


@dataclass
class CallRecord:
    trace_id: str
    tenant: str
    time: float
    depth: int
    route: RouteDecision | None = None
    plugin: str | None = None
    version: str | None = None
    prompt_version: str | None = None
    models: list[str] = field(default_factory=list)
    cache_hit: bool = False
    #: One entry per guard verdict (guard, verdict, reason, score; never the matched
    #: text). Always empty today: the guard chain that fills it is the guards issue's (#15).
    guard_verdicts: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    latency_ms: float = 0.0
    outcome: str = "ok"  # "ok" or the error code
    error: str | None = None
    fallbacks: list[Attempt] = field(default_factory=list)
    degraded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data. Built field by field: ``dataclasses.asdict`` deep-copies
        every value and cost more than writing the record to the audit log."""
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["models"] = list(self.models)
        data["guard_verdicts"] = [dict(v) for v in self.guard_verdicts]
        data["route"] = self.route.model_dump() if self.route else None
        data["usage"] = self.usage.model_dump()
        data["fallbacks"] = [a.model_dump() for a in self.fallbacks]
        return data


_FIELD_NAMES = tuple(f.name for f in fields(CallRecord))


class Recorder(Protocol):
    """A sink for call records.

    A recorder with a true ``required`` attribute (an audit log) must succeed
    before an answer is returned: if it fails, the caller gets
    :class:`~brickwork.contracts.errors.RecordFailedError` instead of an answer
    that the record would be missing for. Other recorders' failures are logged.
    """

    async def record(self, record: CallRecord) -> None: ...
