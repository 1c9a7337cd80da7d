"""Concurrent calls to one local model: queued first come first served, never two at
once on the context, visible while they wait, and cancellation frees the model.

The real SmolLM2 runs under an instrumented ``Llama`` that records when each
generation starts and ends, on which thread, and how many tokens it produced.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from brickwork.contracts.provider import CompletionRequest, Message, ScoreRequest
from brickwork.providers.local import EnginePool, EngineSettings, LocalProvider, load_llama

SMALL = "smollm2-135m"
STORY = [Message(role="user", content="Write a very long story about a dragon who learns to bake bread.")]


@dataclass
class Run:
    label: str
    thread: int
    started: float
    ended: float = 0.0
    chunks: int = 0


class Instrumented:
    """A ``Llama`` whose generations are recorded; everything else passes through."""

    _own = frozenset({"_llama", "runs", "active", "overlaps", "_lock"})

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self.runs: list[Run] = []
        self.active = 0
        self.overlaps = 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self._own:
            object.__setattr__(self, name, value)
        else:  # Brickwork keeps the Llama's own bookkeeping (n_tokens) true
            setattr(self._llama, name, value)

    def _enter(self, label: str) -> Run:
        with self._lock:
            self.active += 1
            if self.active > 1:
                self.overlaps += 1
        run = Run(label, threading.get_ident(), time.perf_counter())
        self.runs.append(run)
        return run

    def _exit(self, run: Run) -> None:
        run.ended = time.perf_counter()
        with self._lock:
            self.active -= 1

    def create_completion(self, **kwargs: Any) -> Any:
        label = self._llama.detokenize(kwargs["prompt"][-20:]).decode(errors="replace")
        run = self._enter(label)
        if not kwargs.get("stream"):
            try:
                return self._llama.create_completion(**kwargs)
            finally:
                self._exit(run)
        inner = self._llama.create_completion(**kwargs)

        def chunks() -> Iterator[Any]:
            try:
                for chunk in inner:
                    run.chunks += 1
                    yield chunk
            finally:
                inner.close()
                self._exit(run)

        return chunks()


@pytest.fixture(scope="module")
def llamas() -> list[Instrumented]:
    return []


@pytest.fixture(scope="module")
def provider(llamas: list[Instrumented]) -> Iterator[LocalProvider]:
    def loader(path: Path, settings: EngineSettings) -> Instrumented:
        llama = Instrumented(load_llama(path, settings))
        llamas.append(llama)
        return llama

    pool = EnginePool()
    yield LocalProvider(pool=pool, loader=loader, progress=False)
    pool.close_all()


def ask(n: int, max_tokens: int = 6) -> CompletionRequest:
    question = f"Request number {n}: say hello."
    return CompletionRequest(
        model=SMALL, messages=[Message(role="user", content=question)], max_tokens=max_tokens
    )


async def until(condition: Any, limit: float = 10.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        await asyncio.sleep(0.002)


async def test_concurrent_calls_are_queued_in_order_and_never_overlap(
    provider: LocalProvider, llamas: list[Instrumented]
) -> None:
    await provider.complete(ask(0, 1))  # loaded: the burst below measures queueing only
    llama = llamas[0]
    llama.runs.clear()
    n = 6
    tasks = [asyncio.create_task(provider.complete(ask(i))) for i in range(1, n + 1)]
    depths: list[int] = []
    running: list[int] = []
    while not all(t.done() for t in tasks):
        depths.append(provider.queue_depth(SMALL))
        running.append(provider.in_flight(SMALL))
        await asyncio.sleep(0.005)
    results = await asyncio.gather(*tasks)

    assert all(r.text for r in results)
    assert max(depths) >= n - 2  # the queue was visible while the burst waited
    assert set(running) <= {0, 1}
    assert 1 in running
    assert provider.queue_depth(SMALL) == 0
    assert provider.in_flight(SMALL) == 0
    assert llama.overlaps == 0
    assert len({run.thread for run in llama.runs}) == 1
    assert threading.get_ident() not in {run.thread for run in llama.runs}
    # First come, first served: generations ran in the order the calls were made.
    assert [f"number {i}" in run.label for i, run in enumerate(llama.runs, start=1)] == [True] * n
    for before, after in zip(llama.runs, llama.runs[1:], strict=False):
        assert after.started >= before.ended
    load = provider.load(SMALL)
    assert load.loaded
    assert load.waiting == 0
    assert load.running == 0


async def test_mixed_calls_share_one_queue(provider: LocalProvider, llamas: list[Instrumented]) -> None:
    stream = provider.stream(ask(1, 4))
    results = await asyncio.gather(
        provider.complete(ask(2)),
        provider.score(ScoreRequest(model=SMALL, messages=ask(3).messages, candidates=["hello", "bye"])),
        asyncio.create_task(_drain(stream)),
        provider.complete(ask(4)),
    )
    assert results[0].text
    assert results[3].text
    assert results[2]
    assert llamas[0].overlaps == 0
    assert provider.queue_depth(SMALL) == 0


async def _drain(stream: Any) -> str:
    return "".join([chunk.delta async for chunk in stream])


async def test_closing_a_stream_stops_generation_and_frees_the_model(
    provider: LocalProvider, llamas: list[Instrumented]
) -> None:
    await provider.complete(ask(0, 1))
    llama = llamas[0]
    before = provider.load(SMALL)
    waiting = asyncio.create_task(provider.complete(ask(9)))  # queued behind the stream

    stream = provider.stream(CompletionRequest(model=SMALL, messages=STORY, max_tokens=400))
    received = [await stream.__anext__() for _ in range(3)]
    assert all(chunk.delta for chunk in received)
    started = time.perf_counter()
    await stream.aclose()  # type: ignore[attr-defined]
    closed_in = time.perf_counter() - started

    story = next(run for run in llama.runs if "dragon" in run.label)
    assert story.ended > 0  # the generation had ended when aclose returned
    assert story.chunks < 60  # stopped, not run to 400 tokens
    assert closed_in < 1.0
    assert provider.load(SMALL).cancelled == before.cancelled + 1
    assert (await waiting).text  # the next call in line got the model
    assert provider.in_flight(SMALL) == 0
    assert provider.queue_depth(SMALL) == 0


async def test_cancelling_a_running_completion_frees_the_model_promptly(
    provider: LocalProvider, llamas: list[Instrumented]
) -> None:
    await provider.complete(ask(0, 1))
    llama = llamas[0]
    task = asyncio.create_task(
        provider.complete(CompletionRequest(model=SMALL, messages=STORY, max_tokens=400))
    )
    await until(lambda: provider.in_flight(SMALL) == 1)
    await asyncio.sleep(0.1)  # a few tokens in
    started = time.perf_counter()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await until(lambda: provider.in_flight(SMALL) == 0, limit=2.0)
    assert time.perf_counter() - started < 1.0  # 400 tokens would take seconds
    story = [run for run in llama.runs if "dragon" in run.label][-1]
    assert story.ended - story.started < 1.5
    assert (await provider.complete(ask(5))).text


async def test_a_call_cancelled_while_queued_never_runs(
    provider: LocalProvider, llamas: list[Instrumented]
) -> None:
    await provider.complete(ask(0, 1))
    llama = llamas[0]
    first = asyncio.create_task(provider.complete(ask(1, 8)))
    doomed = asyncio.create_task(provider.complete(ask(77)))
    await until(lambda: provider.queue_depth(SMALL) == 1)
    doomed.cancel()
    await asyncio.gather(doomed, return_exceptions=True)
    assert provider.queue_depth(SMALL) == 0
    await first
    assert not any("number 77" in run.label for run in llama.runs)


async def test_cancelling_a_stream_reader_frees_the_model(
    provider: LocalProvider, llamas: list[Instrumented]
) -> None:
    """A timeout around a stream cancels its reader mid-generation, as BoundModel does."""
    await provider.complete(ask(0, 1))
    llama = llamas[0]
    received: list[str] = []

    async def read() -> None:
        # The timeout is armed once the first token is in, so that it hits mid-stream
        # however slowly this machine reaches the first token.
        async with asyncio.timeout(None) as limit:
            async for chunk in provider.stream(
                CompletionRequest(model=SMALL, messages=STORY, max_tokens=400)
            ):
                received.append(chunk.delta)
                if len(received) == 1:
                    limit.reschedule(asyncio.get_running_loop().time() + 0.1)

    with pytest.raises(TimeoutError):
        await read()
    assert received  # it was streaming when the timeout hit
    assert provider.in_flight(SMALL) == 0  # already free: the reader waited for the stop
    story = [run for run in llama.runs if "dragon" in run.label][-1]
    assert story.ended > 0
    assert story.chunks < 60
