"""Generation speed through Brickwork against raw llama-cpp-python, in the same run.

The model is loaded once; both paths use that one ``Llama`` (same weights, same
context, same threads): (a) ``Llama.create_chat_completion`` called directly, and
(b) ``Orchestrator.handle`` running a minimal plugin that calls
``ctx.model.complete`` on ``local:<model>`` with the default policies (timeout,
retry, breaker, bulkhead), which goes through the provider's queue and worker
thread. Same prompt, temperature 0, fixed ``max_tokens``; rounds interleaved
(a b, b a, ...) so drift on a shared host hits both alike. Prints tokens/s of each
call, the median per path, their ratio and Brickwork's overhead (from the ratio
of the two calls of each round, which a busy host's drift mostly cancels).
Target: ≤ 3 %.

    .venv/bin/python bench/local_model.py [--model local:smollm2-135m] [--tokens 128] [--rounds 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from brickwork import Context, Orchestrator, Plugin, PluginInput, PluginOutput, Policy, Registry
from brickwork.contracts.provider import ModelId
from brickwork.providers.local import (
    SMALL_MODEL,
    EnginePool,
    EngineSettings,
    LocalProvider,
    load_llama,
)
from brickwork.runtime.models import Providers
from brickwork.runtime.recording import MemoryRecorder

PROMPT = "Write a long, detailed story about a lighthouse keeper who befriends a whale."


class StoryIn(PluginInput):
    prompt: str
    max_tokens: int


class StoryOut(PluginOutput):
    text: str


def story_plugin(model: str) -> type[Plugin[StoryIn, StoryOut]]:
    class Story(Plugin[StoryIn, StoryOut]):
        name = "story"
        version = "1.0.0"
        description = "Writes a story with a local model (benchmark plugin)."
        permissions = frozenset({"model"})
        policy = Policy()

        async def run(self, input: StoryIn, ctx: Context) -> StoryOut:
            completion = await ctx.model.complete(input.prompt, max_tokens=input.max_tokens)
            return StoryOut(text=completion.text)

    Story.model = model
    return Story


async def main(model: str, tokens: int, rounds: int, threads: int | None) -> int:
    held: list[Any] = []

    def loader(path: Path, settings: EngineSettings) -> Any:
        llama = load_llama(path, settings)
        held.append(llama)
        return llama

    provider = LocalProvider(threads=threads, pool=EnginePool(), loader=loader)
    name = ModelId.parse(model).model
    registry = Registry()
    registry.add(story_plugin(model))
    providers = Providers()
    providers.add(provider)
    runtime = Orchestrator(registry, providers=providers, recorders=[MemoryRecorder(100)])
    request = {"plugin": "story", "input": {"prompt": PROMPT, "max_tokens": tokens}}

    started = time.perf_counter()
    provider.count_tokens(name, "warm up")  # verifies the file and loads the model, once
    print(
        f"model {model} ({provider.store.spec(name).title}), threads {provider.threads}, "
        f"loaded in {time.perf_counter() - started:.2f}s; {tokens} tokens × {rounds} rounds per path",
        flush=True,
    )
    llama = held[0]
    messages = [{"role": "user", "content": PROMPT}]

    def raw() -> tuple[int, str]:
        reply = llama.create_chat_completion(messages, max_tokens=tokens, temperature=0.0)
        return int(reply["usage"]["completion_tokens"]), str(reply["choices"][0]["message"]["content"])

    async def brickwork() -> tuple[int, str]:
        envelope = await runtime.handle(request)
        return envelope.usage.output_tokens, str(envelope.output["text"])

    async def timed(path: str) -> tuple[float, int, str]:
        t0 = time.perf_counter()
        count, text = raw() if path == "raw" else await brickwork()
        return count / (time.perf_counter() - t0), count, text

    await timed("raw")  # warm: prompt in the context, caches touched, for both paths alike
    await timed("brickwork")
    speeds: dict[str, list[float]] = {"raw": [], "brickwork": []}
    texts: dict[str, set[str]] = {"raw": set(), "brickwork": set()}
    counts: set[int] = set()
    for r in range(rounds):
        order = ("raw", "brickwork") if r % 2 == 0 else ("brickwork", "raw")
        for path in order:
            speed, count, text = await timed(path)
            speeds[path].append(speed)
            texts[path].add(text)
            counts.add(count)
        a, b = speeds["raw"][-1], speeds["brickwork"][-1]
        print(f"round {r + 1}: raw {a:6.1f} tok/s   brickwork {b:6.1f} tok/s   ratio {b / a:.3f}", flush=True)
    await provider.aclose()

    raw_tps = statistics.median(speeds["raw"])
    bw_tps = statistics.median(speeds["brickwork"])
    # Each round's two calls ran back to back: their ratio cancels most of the drift
    # a shared host adds, so the overhead is read from the median of those ratios.
    paired = statistics.median(b / a for a, b in zip(speeds["raw"], speeds["brickwork"], strict=True))
    overhead = (1 / paired - 1) * 100
    same = texts["raw"] == texts["brickwork"] and len(texts["raw"]) == 1
    print()
    print(f"{'path':34} {'median tok/s':>12} {'best tok/s':>11}")
    print(f"{'(a) raw create_chat_completion':34} {raw_tps:12.1f} {max(speeds['raw']):11.1f}")
    print(f"{'(b) Orchestrator → ctx.model':34} {bw_tps:12.1f} {max(speeds['brickwork']):11.1f}")
    print(f"ratio brickwork/raw: {bw_tps / raw_tps:.3f} (medians), {paired:.3f} (median of paired rounds)")
    print(f"overhead: {overhead:+.1f} % per token, from paired rounds (target ≤ 3 %)")
    print(f"tokens per call: {sorted(counts)}; identical output on both paths: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=SMALL_MODEL, help="local model id (default %(default)s)")
    parser.add_argument("--tokens", type=int, default=128, help="max_tokens per call")
    parser.add_argument("--rounds", type=int, default=8, help="calls per path, interleaved")
    parser.add_argument(
        "--threads", type=int, default=None, help="llama.cpp threads (default $BRICKWORK_THREADS or 1)"
    )
    args = parser.parse_args()
    if not args.model.startswith("local:"):
        parser.error("--model must be a local model id, e.g. local:qwen2.5-0.5b")
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(asyncio.run(main(args.model, args.tokens, args.rounds, args.threads)))
