"""``local:<model>``: models that run in this process, shipped as pinned data packages.

- :class:`LocalProvider` — the provider (chat, streaming, JSON-schema output,
  label scoring, embeddings), one shared engine per model per process.
- :class:`ModelStore` — locates the weights inside installed distributions (never
  importing them), assembles chunked models into the cache folder, and refuses any
  file whose sha256 is not the official one.
- :data:`CATALOG` — the known models; ``brickwork models list`` shows them.
"""

from brickwork.providers.local._catalog import CATALOG, REQUIREMENTS_FILE, Catalog, DataFile, ModelSpec
from brickwork.providers.local._engine import EngineSettings, LlamaEngine, Loader, load_llama
from brickwork.providers.local._pool import E5Engine, EnginePool, shared_pool
from brickwork.providers.local._provider import (
    DEFAULT_MODEL,
    EMBEDDING_MODEL,
    SMALL_MODEL,
    THREADS_ENV,
    LocalProvider,
    ModelLoad,
)
from brickwork.providers.local._store import HOME_ENV, ModelStatus, ModelStore, default_cache_dir
from brickwork.providers.local._worker import Job, SerialWorker, WorkerStats

__all__ = [
    "CATALOG",
    "DEFAULT_MODEL",
    "EMBEDDING_MODEL",
    "HOME_ENV",
    "REQUIREMENTS_FILE",
    "SMALL_MODEL",
    "THREADS_ENV",
    "Catalog",
    "DataFile",
    "E5Engine",
    "EnginePool",
    "EngineSettings",
    "Job",
    "LlamaEngine",
    "Loader",
    "LocalProvider",
    "ModelLoad",
    "ModelSpec",
    "ModelStatus",
    "ModelStore",
    "SerialWorker",
    "WorkerStats",
    "default_cache_dir",
    "load_llama",
    "shared_pool",
]
