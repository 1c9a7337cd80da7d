"""``bench/model_stack.py`` runs: every case answers through the orchestrator and is
measured (so the benchmark the README quotes cannot rot)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "model_stack.py"


async def test_the_model_stack_benchmark_measures_each_case() -> None:
    spec = importlib.util.spec_from_file_location("bench_model_stack", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        best = await module.measure(requests=20, repeat=1)
    finally:
        del sys.modules[spec.name]
    assert list(best) == list(module.CASES)
    assert all(cost > 0 for cost in best.values())
    assert module.PROVIDER.calls  # the fake provider did answer
