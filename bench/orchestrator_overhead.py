"""What the orchestrator costs per request, against calling the plugin directly.

One run, one process, loopback-free: (a) ``await plugin.run(input, ctx)`` with the
input already validated — the floor; (b) ``Orchestrator.handle`` with the plugin's
policies off; (c) with the default policies (retry, breaker, bulkhead, timeout);
(d) with rate limit and cache (bypassed) on as well. Prints µs per request and the
ratio to (a)'s CPU time, best of ``--repeat`` rounds.

    .venv/bin/python bench/orchestrator_overhead.py [--requests 5000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from brickwork import (
    Context,
    Orchestrator,
    Plugin,
    PluginInput,
    PluginOutput,
    Policy,
    RateLimitPolicy,
    Registry,
)
from brickwork.contracts.policy import CachePolicy
from brickwork.runtime.recording import MemoryRecorder


class EchoIn(PluginInput):
    text: str


class EchoOut(PluginOutput):
    text: str


def echo(name: str, policy: Policy) -> type[Plugin[EchoIn, EchoOut]]:
    class Echo(Plugin[EchoIn, EchoOut]):
        description = "echo"

        async def run(self, input: EchoIn, ctx: Context) -> EchoOut:
            return EchoOut(text=input.text)

    Echo.name, Echo.version, Echo.policy = name, "1.0.0", policy
    return Echo


BARE = Policy(retry=None, breaker=None, bulkhead=None)
FULL = Policy(rate_limit=RateLimitPolicy(requests=10**9, tokens=10**12, window=60), cache=CachePolicy(ttl=60))


async def measure(n: int, call: Callable[[int], Awaitable[Any]]) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(n):
        await call(i)
    return (time.process_time() - cpu0) / n * 1e6, (time.perf_counter() - wall0) / n * 1e6


async def main(requests: int, repeat: int) -> None:
    registry = Registry()
    for name, policy in (("bare", BARE), ("default", Policy()), ("full", FULL)):
        registry.add(echo(name, policy))
    runtime = Orchestrator(registry, recorders=[MemoryRecorder(100)])
    plugin = registry.resolve("bare").instance
    data = EchoIn(text="hello")

    async def direct(i: int) -> Any:
        return await plugin.run(data, None)  # type: ignore[arg-type]

    def via(name: str) -> Callable[[int], Awaitable[Any]]:
        async def call(i: int) -> Any:
            return await runtime.handle({"plugin": name, "input": {"text": "hello"}, "cache_bypass": True})

        return call

    cases = {
        "(a) plugin.run directly": direct,
        "(b) handle, policies off": via("bare"),
        "(c) handle, default policies": via("default"),
        "(d) + rate limit, cache (bypassed)": via("full"),
    }
    best: dict[str, tuple[float, float]] = {}
    for _ in range(repeat):
        for label, call in cases.items():
            cpu, wall = await measure(requests, call)
            if label not in best or cpu < best[label][0]:
                best[label] = (cpu, wall)
    floor = best["(a) plugin.run directly"][0]
    print(f"{'case':40} {'CPU µs/req':>11} {'wall µs/req':>12} {'CPU ratio':>10}")
    for label, (cpu, wall) in best.items():
        print(f"{label:40} {cpu:11.1f} {wall:12.1f} {cpu / floor:9.1f}×")
    overhead = best["(c) handle, default policies"][0] - floor
    print(f"\norchestrator overhead with default policies: {overhead:.1f} µs CPU per request")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.requests, args.repeat))
