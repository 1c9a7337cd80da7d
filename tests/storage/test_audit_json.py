"""The audit record's fast canonical JSON is exactly ``json.dumps``'s canonical text."""

from __future__ import annotations

import json
import math
import random

import pytest

from brickwork.contracts.provider import Usage
from brickwork.contracts.record import CallRecord
from brickwork.contracts.request import Attempt, RouteDecision
from brickwork.storage._audit_json import _fast, canonical_json, record_json


def _reference(record: CallRecord) -> str:
    return json.dumps(
        record.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


TEXTS = [
    "",
    "plain",
    'quote " and \\ backslash',
    "tab\tnew\nline",
    "ünïcødé ✓ 😀",
    "\x00\x1f ctl",
    "\u2028\u2029",
]
FLOATS = [
    0.0,
    -0.0,
    1.5,
    1e-7,
    1e16,
    1764260000.123456,
    123456789.0,
    0.1 + 0.2,
    5e-324,
    1.7976931348623157e308,
]


def _random_record(rng: random.Random) -> CallRecord:
    def text() -> str:
        return rng.choice(TEXTS) + str(rng.randint(0, 99))

    return CallRecord(
        trace_id=text(),
        tenant=text(),
        time=rng.choice(FLOATS),
        depth=rng.randint(0, 8),
        route=rng.choice(
            [
                None,
                RouteDecision(method="explicit", ref=text()),
                RouteDecision(method="metadata", ref=text(), rule=text()),
            ]
        ),
        plugin=rng.choice([None, text()]),
        version=rng.choice([None, "1.0.0"]),
        prompt_version=rng.choice([None, text()]),
        models=[text() for _ in range(rng.randint(0, 3))],
        cache_hit=rng.random() < 0.5,
        usage=Usage(
            input_tokens=rng.randint(0, 10**6), output_tokens=rng.randint(0, 10**6), calls=rng.randint(0, 3)
        ),
        cost=rng.choice([*FLOATS, 0]),
        latency_ms=rng.choice(FLOATS),
        outcome=rng.choice(["ok", "provider_timeout"]),
        error=rng.choice([None, text()]),
        degraded=rng.random() < 0.5,
    )


def test_the_fast_spelling_is_the_canonical_one() -> None:
    rng = random.Random(7)
    for _ in range(2_000):
        record = _random_record(rng)
        assert _fast(record) is not None  # these are all common records
        assert record_json(record) == _reference(record)


@pytest.mark.parametrize(
    "odd",
    [
        {"fallbacks": [Attempt(plugin="a", version="1.0.0", code="plugin_failed", message="boom")]},
        {"guard_verdicts": [{"guard": "pii", "verdict": "pass", "score": 0.5}]},
        {
            "route": RouteDecision(
                method="intent", ref="sentiment", scores={"sentiment": 0.9, "summarize": 0.1}
            )
        },
        {"depth": True},
        {"models": ("a:b",)},
    ],
)
def test_odd_records_take_the_general_path_and_still_match(odd: dict[str, object]) -> None:
    fields: dict[str, object] = {"trace_id": "t", "tenant": "acme", "time": 1.0, "depth": 0, **odd}
    record = CallRecord(**fields)  # type: ignore[arg-type]
    assert _fast(record) is None
    assert record_json(record) == _reference(record)


def test_an_int_where_a_float_is_expected_is_spelled_as_json_spells_it() -> None:
    record = CallRecord(trace_id="t", tenant="acme", time=1, depth=0, cost=0, latency_ms=12)
    assert record_json(record) == _reference(record)


def test_a_value_json_refuses_is_still_refused() -> None:
    record = CallRecord(trace_id="t", tenant="acme", time=1.0, depth=0, cost=math.inf)
    with pytest.raises(ValueError, match="not JSON compliant"):
        record_json(record)
    record = CallRecord(trace_id="t", tenant="acme", time=1.0, depth=0, error=object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not JSON serializable"):
        record_json(record)
    assert canonical_json({"b": 1, "a": [1.0, None]}) == '{"a":[1.0,null],"b":1}'
