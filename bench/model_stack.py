"""What ``ctx.model``'s policy stack costs per model call, against calling the provider.

One process, a fake provider (no I/O), the orchestrator with no recorder: (a) a
plugin that calls the provider itself — the floor; (b) one ``ctx.model.complete``
with no model policies (no retry, breaker or budget: permission, attempt limit
and metering only); (c) with the default policies (retry, breaker per provider);
(d) with a budget and a fallback model as well; (e) a ``ctx.model.stream`` of the
same reply under (c)'s policies. Prints µs of CPU per request and the added µs
over (a), best of ``--repeat`` rounds.

    .venv/bin/python bench/model_stack.py [--requests 3000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from brickwork import Context, Orchestrator, Plugin, PluginInput, PluginOutput, Policy, Registry
from brickwork.contracts.policy import BudgetPolicy, FallbackPolicy
from brickwork.contracts.provider import CompletionRequest, Message
from brickwork.runtime.models import Providers
from brickwork.testing import FakeProvider

PROVIDER = FakeProvider("fake")


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


def plugin(name: str, policy: Policy, how: str) -> type[Plugin[In, Out]]:
    class Calls(Plugin[In, Out]):
        version = "1.0.0"
        description = "One model call."
        model = "fake:m"
        permissions = frozenset({"model"})

        async def run(self, input: In, ctx: Context) -> Out:
            if how == "direct":
                request = CompletionRequest(model="m", messages=[Message(role="user", content=input.text)])
                return Out(text=(await PROVIDER.complete(request)).text)
            if how == "stream":
                return Out(text="".join([c.delta async for c in ctx.model.stream(input.text)]))
            return Out(text=(await ctx.model.complete(input.text)).text)

    Calls.name = name
    Calls.policy = policy
    return Calls


CASES: dict[str, tuple[Policy, str]] = {
    "(a) the provider, called directly": (Policy(retry=None, breaker=None, bulkhead=None), "direct"),
    "(b) ctx.model, no model policies": (Policy(retry=None, breaker=None, bulkhead=None), "call"),
    "(c) ctx.model, default policies": (Policy(bulkhead=None), "call"),
    "(d) ... with budget and fallback": (
        Policy(bulkhead=None, budget=BudgetPolicy(limit=1e9), fallback=FallbackPolicy(models=("fake:n",))),
        "call",
    ),
    "(e) ctx.model.stream, default": (Policy(bulkhead=None), "stream"),
}


async def measure(requests: int, repeat: int) -> dict[str, float]:
    registry = Registry()
    names: dict[str, str] = {}
    for i, (label, (policy, how)) in enumerate(CASES.items()):
        names[label] = f"case{i}"
        registry.add(plugin(f"case{i}", policy, how))
    providers = Providers()
    providers.add(PROVIDER)
    orchestrator = Orchestrator(registry, providers=providers, recorders=[])
    best: dict[str, float] = {}
    for label, name in names.items():
        request: dict[str, Any] = {"plugin": name, "input": {"text": "hello there"}}
        for _ in range(300):
            await orchestrator.handle(request)
        for _ in range(repeat):
            started = time.process_time()
            for _ in range(requests):
                await orchestrator.handle(request)
            cost = (time.process_time() - started) / requests * 1e6
            best[label] = min(best.get(label, cost), cost)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    best = asyncio.run(measure(args.requests, args.repeat))
    floor = best["(a) the provider, called directly"]
    print("| case | CPU µs/request | added µs |")
    print("|---|---|---|")
    for label, cost in best.items():
        print(f"| {label} | {cost:.1f} | {cost - floor:+.1f} |")


if __name__ == "__main__":
    main()
