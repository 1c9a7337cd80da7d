"""Loaded models shared by everything in the process.

Every :class:`~brickwork.providers.local.LocalProvider` (one per orchestrator, and
there may be several in a process) gets its engines from one :class:`EnginePool`,
so a model is loaded once and all its calls wait in one queue: two copies of a
model generating at once on a small host would be slower, and would hide the real
queue from the bulkhead.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
from collections.abc import Callable, Hashable
from typing import Protocol, TypeVar

from brickwork.contracts.provider import Embeddings, EmbedRequest, Usage
from brickwork.providers.e5 import E5Embedder
from brickwork.providers.local._catalog import ModelSpec
from brickwork.providers.local._store import ModelStore
from brickwork.providers.local._worker import SerialWorker, WorkerStats

__all__ = ["E5Engine", "Engine", "EnginePool", "shared_pool"]


class Engine(Protocol):
    spec: ModelSpec
    worker: SerialWorker

    @property
    def loaded(self) -> bool: ...

    def stats(self) -> WorkerStats: ...

    def count_tokens(self, text: str) -> int: ...

    def close(self, timeout: float | None = ...) -> None: ...


E = TypeVar("E", bound=Engine)


class E5Engine:
    """``e5-small`` behind its own worker thread: embedding is CPU-bound too, and its
    queue is as visible as a chat model's. The weights file is verified once."""

    def __init__(self, spec: ModelSpec, store: ModelStore, threads: int) -> None:
        self.spec = spec
        self.store = store
        self.embedder = E5Embedder(threads=threads)
        self.worker = SerialWorker(f"brickwork-{spec.id}")
        self._verified = False
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self.embedder._model is not None

    def stats(self) -> WorkerStats:
        return self.worker.stats()

    def _ready(self) -> E5Embedder:
        with self._lock:
            if not self._verified:
                self.store.ensure(self.spec)
                self._verified = True
        return self.embedder

    async def embed(self, request: EmbedRequest) -> Embeddings:
        def job(_cancel: threading.Event) -> Embeddings:
            embedder = self._ready()
            vectors = embedder.embed(request.texts, request.purpose)
            tokens = sum(embedder.count_tokens(text) for text in request.texts)
            return Embeddings(vectors=vectors, model=request.model, usage=Usage(input_tokens=tokens, calls=1))

        return await self.worker.run(job)

    def count_tokens(self, text: str) -> int:
        return self._ready().count_tokens(text)

    def close(self, timeout: float | None = 10.0) -> None:
        self.worker.close(timeout)


class EnginePool:
    """Engines by key, counted by how many providers hold them; the last release
    closes one (its worker thread ends, its weights are freed)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[Hashable, Engine] = {}
        self._holders: dict[Hashable, int] = {}

    def acquire(self, key: Hashable, make: Callable[[], E]) -> E:
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                engine = make()
                self._engines[key] = engine
                self._holders[key] = 0
            self._holders[key] += 1
            return engine  # type: ignore[return-value]  # ``make`` built this key's engine

    async def release(self, key: Hashable) -> None:
        with self._lock:
            if key not in self._holders:
                return
            self._holders[key] -= 1
            if self._holders[key] > 0:
                return
            del self._holders[key]
            engine = self._engines.pop(key)
        await asyncio.to_thread(engine.close)

    def get(self, key: Hashable) -> Engine | None:
        """The engine under ``key`` if one is loaded or loading (without holding it)."""
        with self._lock:
            return self._engines.get(key)

    def engines(self) -> list[Engine]:
        with self._lock:
            return list(self._engines.values())

    def close_all(self, timeout: float = 2.0) -> None:
        """Stop every engine (blocking). Called at interpreter exit so no worker
        thread is still inside llama.cpp while Python tears the process down."""
        with self._lock:
            engines = list(self._engines.values())
            self._engines.clear()
            self._holders.clear()
        for engine in engines:
            engine.close(timeout)


# The one piece of process-wide state here, on purpose: loaded weights and their
# queue belong to the process, not to any one provider or orchestrator. It holds no
# configuration; pass ``pool=`` to LocalProvider to use another (tests do).
_shared: EnginePool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> EnginePool:
    """The process's pool (created on first use; closed at exit)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = EnginePool()
            atexit.register(_shared.close_all)
        return _shared
