"""A call record's canonical JSON, the text the audit chain hashes, written fast.

The canonical spelling is ``json.dumps(record.to_dict(), sort_keys=True,
separators=(",", ":"), ensure_ascii=False, allow_nan=False)``. Every request
writes one record, so the common record (plain values, no fallbacks, guard
verdicts or route scores) is spelled directly, field by field, in that same
order and with that same escaping; anything else goes through ``json``. The two
are the same text (``tests/storage/test_audit_json.py`` checks it), so a chain
written by either verifies with the other.
"""

from __future__ import annotations

import json
import math
from typing import Any

from brickwork.contracts.provider import Usage
from brickwork.contracts.record import CallRecord
from brickwork.contracts.request import RouteDecision

__all__ = ["canonical_json", "record_json"]

#: One encoder for every record: ``json.dumps`` with options builds a new one each call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)

#: The string escaping ``ensure_ascii=False`` uses (quotes included).
_string = json.encoder.encode_basestring


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value that the chain hashes."""
    return _ENCODER.encode(value)


def record_json(record: CallRecord) -> str:
    """``canonical_json(record.to_dict())``, without building the dict for a common record."""
    fast = _fast(record)
    return fast if fast is not None else canonical_json(record.to_dict())


def _text(value: object) -> str | None:
    """A string or null, or ``None`` when it is neither (the slow path decides)."""
    if value is None:
        return "null"
    if type(value) is str:
        return _string(value)
    return None


def _number(value: object) -> str | None:
    kind = type(value)
    if kind is float:
        assert isinstance(value, float)
        return float.__repr__(value) if math.isfinite(value) else None  # the slow path raises
    if kind is int:
        return int.__repr__(value)
    return None


def _fast(record: CallRecord) -> str | None:
    if type(record) is not CallRecord or record.fallbacks or record.guard_verdicts:
        return None
    if type(record.cache_hit) is not bool or type(record.degraded) is not bool:
        return None
    cost, latency, time, depth = (
        _number(record.cost),
        _number(record.latency_ms),
        _number(record.time),
        _number(record.depth),
    )
    if cost is None or latency is None or time is None or depth is None or type(record.depth) is not int:
        return None
    texts = [
        _text(value)
        for value in (
            record.error,
            record.outcome,
            record.plugin,
            record.prompt_version,
            record.tenant,
            record.trace_id,
            record.version,
        )
    ]
    if None in texts or record.outcome is None or record.tenant is None or record.trace_id is None:
        return None
    error, outcome, plugin, prompt_version, tenant, trace_id, version = texts
    if type(record.models) is not list or any(type(m) is not str for m in record.models):
        return None
    models = ",".join(_string(m) for m in record.models)
    route = _route(record.route)
    usage = _usage(record.usage)
    if route is None or usage is None:
        return None
    return (
        f'{{"cache_hit":{"true" if record.cache_hit else "false"},"cost":{cost},'
        f'"degraded":{"true" if record.degraded else "false"},"depth":{depth},"error":{error},'
        f'"fallbacks":[],"guard_verdicts":[],"latency_ms":{latency},"models":[{models}],'
        f'"outcome":{outcome},"plugin":{plugin},"prompt_version":{prompt_version},"route":{route},'
        f'"tenant":{tenant},"time":{time},"trace_id":{trace_id},"usage":{usage},"version":{version}}}'
    )


def _route(route: RouteDecision | None) -> str | None:
    if route is None:
        return "null"
    if type(route) is not RouteDecision or route.scores or route.__pydantic_extra__:
        return None
    method, ref, rule = _text(route.method), _text(route.ref), _text(route.rule)
    if method is None or ref is None or rule is None:
        return None
    return f'{{"method":{method},"ref":{ref},"rule":{rule},"scores":{{}}}}'


def _usage(usage: Usage) -> str | None:
    if type(usage) is not Usage:
        return None
    calls, tokens_in, tokens_out = usage.calls, usage.input_tokens, usage.output_tokens
    if type(calls) is not int or type(tokens_in) is not int or type(tokens_out) is not int:
        return None
    return f'{{"calls":{calls},"input_tokens":{tokens_in},"output_tokens":{tokens_out}}}'
