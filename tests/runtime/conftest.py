"""Fixtures for the runtime tests: a fake clock, and a factory for a wired orchestrator.

Test plugins live in the test modules themselves, next to the behaviour they drive.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pytest

from brickwork.contracts.plugin import Plugin
from brickwork.contracts.provider import Provider
from brickwork.runtime.models import ModelPrice, Providers
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import PluginSettings, Registry
from brickwork.runtime.routing import Router
from brickwork.testing import FakeClock

Build = Callable[..., Orchestrator]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recorder() -> MemoryRecorder:
    return MemoryRecorder()


@pytest.fixture
def build(clock: FakeClock, recorder: MemoryRecorder) -> Build:
    """``build(*plugin_classes, providers=[...], prices={...}, router=..., ...)`` → Orchestrator.

    Plugins are registered in the order given (fallback targets first); every
    orchestrator shares the test's fake clock (set ``clock.autojump`` for sequential
    code such as retries) and memory recorder.
    """

    def make(
        *plugins: type[Plugin[Any, Any]],
        providers: Iterable[Provider] = (),
        prices: Mapping[str, ModelPrice] | None = None,
        router: Router | None = None,
        settings: Mapping[str, PluginSettings] | None = None,
        max_call_depth: int = 8,
    ) -> Orchestrator:
        registry = Registry(settings)
        for cls in plugins:
            registry.add(cls)
        table = Providers(prices=dict(prices or {}))
        for provider in providers:
            table.add(provider)
        return Orchestrator(
            registry,
            providers=table,
            clock=clock,
            router=router,
            recorders=[recorder],
            max_call_depth=max_call_depth,
            rng=random.Random(7),
        )

    return make
