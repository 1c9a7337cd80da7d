"""One loaded llama.cpp model and the only thread that touches its context.

Every method that runs the model is a job on the engine's :class:`SerialWorker`:
completions, streams and scoring are queued first come first served, and never
overlap on the (not thread-safe) context. The weights load on the first job, once,
after the file's sha256 was checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from brickwork.contracts.errors import (
    BrickworkError,
    ContextLengthExceededError,
    ProviderError,
    ProviderResponseError,
    ProviderUnavailableError,
    ProviderUnsupportedError,
)
from brickwork.contracts.provider import (
    Completion,
    CompletionRequest,
    Message,
    ScoreRequest,
    Scores,
    StreamChunk,
    Usage,
)
from brickwork.providers.local._catalog import ModelSpec
from brickwork.providers.local._store import ModelStore
from brickwork.providers.local._worker import SerialWorker, WorkerStats

__all__ = ["EngineSettings", "LlamaEngine", "Loader", "load_llama"]

#: Sampling options a request may pass through ``CompletionRequest.extra``.
SAMPLING_EXTRAS = frozenset(
    {"seed", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty"}
)
#: Compiled JSON-schema grammars kept per engine.
GRAMMAR_CACHE = 64


@dataclass(frozen=True)
class EngineSettings:
    """How a model is loaded. Engines with equal settings are shared."""

    n_ctx: int = 4096
    threads: int = 1
    n_batch: int = 512


#: Builds the ``llama_cpp.Llama`` for a verified file (injectable: tests wrap it).
Loader = Callable[[Path, EngineSettings], Any]


def load_llama(path: Path, settings: EngineSettings) -> Any:
    """The real loader: ``llama_cpp.Llama`` with the model's own chat template, quiet."""
    import llama_cpp  # imported here: nothing loads at import time

    return llama_cpp.Llama(
        model_path=str(path),
        n_ctx=settings.n_ctx,
        n_batch=settings.n_batch,
        n_threads=settings.threads,
        n_threads_batch=settings.threads,
        verbose=False,
    )


@dataclass(frozen=True)
class _Prompt:
    tokens: list[int]
    stop: list[str]
    stopping: Any  # llama_cpp.StoppingCriteriaList | None: the template's stop tokens


class LlamaEngine:
    """A chat model in this process: lazily loaded, one job at a time.

    Args:
        spec: the catalog entry.
        store: locates and verifies the file.
        settings: context size, threads.
        loader: builds the ``Llama`` object (default :func:`load_llama`).
    """

    def __init__(
        self,
        spec: ModelSpec,
        store: ModelStore,
        settings: EngineSettings,
        loader: Loader = load_llama,
    ) -> None:
        self.spec = spec
        self.store = store
        self.settings = settings
        self.loader = loader
        self.worker = SerialWorker(f"brickwork-{spec.id}")
        self._llama: Any = None
        self._formatter: Any = None
        self._load_lock = threading.Lock()
        self._load_queued = False
        self._grammars: OrderedDict[str, Any] = OrderedDict()

    # --- observation -------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._llama is not None

    def stats(self) -> WorkerStats:
        return self.worker.stats()

    # --- the async API -------------------------------------------------------------

    async def complete(self, request: CompletionRequest) -> Completion:
        return await self.worker.run(lambda cancel: self._complete(request, cancel))

    async def score(self, request: ScoreRequest) -> Scores:
        return await self.worker.run(lambda cancel: self._score(request, cancel))

    async def stream(self, request: CompletionRequest) -> AsyncGenerator[StreamChunk, None]:
        """Tokens as they come. Closing the iterator (or cancelling its reader) stops
        the generation within a token and frees the worker before returning."""
        loop = asyncio.get_running_loop()
        items: asyncio.Queue[StreamChunk | None] = asyncio.Queue()

        def emit(chunk: StreamChunk) -> None:  # on the worker thread
            loop.call_soon_threadsafe(items.put_nowait, chunk)

        job = self.worker.submit(lambda cancel: self._stream(request, cancel, emit))
        # The job's result is set on the loop after every chunk it emitted, so this
        # marker is always the last item.
        job.future.add_done_callback(lambda _: items.put_nowait(None))
        try:
            while (chunk := await items.get()) is not None:
                yield chunk
            job.future.result()  # raises what the job raised
        finally:
            if not job.future.done():
                job.cancel()
                await asyncio.wait([job.future])
            if not job.future.cancelled():
                job.future.exception()  # retrieved: it was raised above or is moot

    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` by the model's tokenizer.

        Tokenizing reads only the vocabulary, which llama.cpp never changes, so it
        runs on the caller's thread, beside a generation. Before the model is loaded,
        a caller on an event loop gets a generous estimate (one token per 3 bytes:
        chunks sized with it fit) while the load starts on the worker: hashing and
        loading the weights there must not freeze every other request.
        """
        if self._llama is None:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # no loop to block: load here
            else:
                if not self._load_queued:
                    self._load_queued = True
                    job = self.worker.submit(lambda cancel: self._load())
                    # A failed load is reported by the next real call, not here.
                    job.future.add_done_callback(lambda f: f.cancelled() or f.exception())
                return len(text.encode("utf-8")) // 3 + 1
        llama = self._load()
        return len(llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    def close(self, timeout: float | None = 10.0) -> None:
        """Stop the worker and free the model (blocking: call it off the loop).

        A worker that does not stop within ``timeout`` keeps its model: freeing it
        under a running generation would crash the process.
        """
        if not self.worker.close(timeout):
            return
        with self._load_lock:
            llama, self._llama = self._llama, None
        if llama is not None and hasattr(llama, "close"):
            llama.close()

    # --- on the worker thread ---------------------------------------------------------

    def _load(self) -> Any:
        with self._load_lock:
            if self._llama is None:
                path = self.store.ensure(self.spec)
                try:
                    llama = self.loader(path, self.settings)
                except (ValueError, RuntimeError, OSError) as exc:
                    raise ProviderError(
                        f"llama.cpp could not load {self.spec.id} from {path}: {exc}"
                    ) from exc
                except MemoryError as exc:
                    raise ProviderUnavailableError(f"not enough memory to load {self.spec.id}") from exc
                self._formatter = _chat_formatter(llama, self.spec)
                self._llama = llama
            return self._llama

    def _prompt(self, llama: Any, messages: Sequence[Message]) -> _Prompt:
        result = self._formatter(messages=[{"role": m.role, "content": m.content} for m in messages])
        tokens = llama.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)
        stop = result.stop if isinstance(result.stop, list) else [result.stop] if result.stop else []
        return _Prompt(tokens=list(tokens), stop=stop, stopping=result.stopping_criteria)

    def _check_fits(self, prompt_tokens: int, more: int) -> None:
        window = self.settings.n_ctx
        if prompt_tokens + more > window:
            raise ContextLengthExceededError(
                f"{self.spec.id}: the prompt is {prompt_tokens} tokens"
                + (f" (+{more} to score)" if more > 1 else "")
                + f"; the context window is {window}",
                details={"prompt_tokens": prompt_tokens, "context_window": window},
            )

    def _generation_args(
        self, llama: Any, request: CompletionRequest, prompt: _Prompt, cancel: threading.Event
    ) -> dict[str, Any]:
        import llama_cpp

        def cancelled(_ids: Any, _logits: Any) -> bool:
            return cancel.is_set()

        criteria = llama_cpp.StoppingCriteriaList([cancelled])
        if prompt.stopping is not None:
            criteria.extend(prompt.stopping)
        args: dict[str, Any] = {
            "prompt": prompt.tokens,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "stop": prompt.stop + list(request.stop),
            "stopping_criteria": criteria,
            "model": self.spec.id,
        }
        args.update({k: v for k, v in request.extra.items() if k in SAMPLING_EXTRAS})
        if request.json_schema is not None:
            args["grammar"] = self._grammar(request.json_schema)
        return args

    def _grammar(self, schema: dict[str, Any]) -> Any:
        key = json.dumps(schema, sort_keys=True, separators=(",", ":"))
        grammar = self._grammars.get(key)
        if grammar is None:
            from llama_cpp.llama_grammar import LlamaGrammar

            try:
                grammar = LlamaGrammar.from_json_schema(key, verbose=False)
            except (ValueError, KeyError, TypeError, RuntimeError, NotImplementedError) as exc:
                raise ProviderUnsupportedError(
                    f"{self.spec.id}: llama.cpp cannot turn this JSON schema into a grammar: {exc}"
                ) from exc
            self._grammars[key] = grammar
            if len(self._grammars) > GRAMMAR_CACHE:
                self._grammars.popitem(last=False)
        else:
            self._grammars.move_to_end(key)
        return grammar

    def _complete(self, request: CompletionRequest, cancel: threading.Event) -> Completion:
        llama = self._load()
        prompt = self._prompt(llama, request.messages)
        self._check_fits(len(prompt.tokens), 1)
        args = self._generation_args(llama, request, prompt, cancel)
        with _translated(self.spec.id):
            result = llama.create_completion(**args)
        choice = result["choices"][0]
        usage = result.get("usage") or {}
        completion = Completion(
            text=choice["text"],
            model=request.model,
            usage=Usage(
                input_tokens=int(usage.get("prompt_tokens", len(prompt.tokens))),
                output_tokens=int(usage.get("completion_tokens", 0)),
                calls=1,
            ),
            finish_reason="cancelled" if cancel.is_set() else (choice.get("finish_reason") or "stop"),
        )
        if request.json_schema is not None and not cancel.is_set():
            _check_json(self.spec.id, completion, request.max_tokens)
        return completion

    def _stream(
        self, request: CompletionRequest, cancel: threading.Event, emit: Callable[[StreamChunk], None]
    ) -> None:
        llama = self._load()
        prompt = self._prompt(llama, request.messages)
        self._check_fits(len(prompt.tokens), 1)
        args = self._generation_args(llama, request, prompt, cancel)
        reached = len(prompt.tokens) - 1
        criteria = args["stopping_criteria"]

        def count(ids: Any, _logits: Any) -> bool:
            # Called after the k-th token is sampled with the prompt and the k-1 tokens
            # before it (and once at the end with what was evaluated, never longer).
            nonlocal reached
            reached = max(reached, len(ids))
            return False

        criteria.append(count)
        finish = "length"
        with _translated(self.spec.id):
            chunks = llama.create_completion(stream=True, **args)
            try:
                for chunk in chunks:
                    if cancel.is_set():
                        break
                    choice = chunk["choices"][0]
                    if choice["text"]:
                        emit(StreamChunk(delta=choice["text"]))
                    if choice.get("finish_reason"):
                        finish = choice["finish_reason"]
            finally:
                chunks.close()
        if cancel.is_set():
            return
        sampled = reached - len(prompt.tokens) + 1
        # A reply that stopped on its own ended with an end-of-turn token, sampled but
        # not part of the reply. (A stop string also ends with "stop"; then this count
        # is one token low: llama.cpp's stream does not say which happened.)
        output = max(0, sampled - 1) if finish == "stop" else sampled
        emit(
            StreamChunk(
                delta="",
                finish_reason=finish,
                usage=Usage(input_tokens=len(prompt.tokens), output_tokens=output, calls=1),
            )
        )

    def _score(self, request: ScoreRequest, cancel: threading.Event) -> Scores:
        """Total log-probability of each candidate, end-of-turn included, as the
        assistant's whole reply: the prompt is evaluated once (reusing what the
        context already holds of it), then each candidate's few tokens in one batch."""
        llama = self._load()
        prompt = self._prompt(llama, request.messages)
        tokens = {c: self._continuation(llama, prompt, c) for c in request.candidates}
        self._check_fits(len(prompt.tokens), max(len(t) for t in tokens.values()))
        with _translated(self.spec.id):
            logprobs = _Scorer(llama, self.settings.n_batch).score(prompt.tokens, tokens, cancel)
        return Scores(
            logprobs=logprobs,
            model=request.model,
            usage=Usage(
                input_tokens=len(prompt.tokens),
                output_tokens=sum(len(t) for t in tokens.values()),
                calls=1,
            ),
        )

    def _continuation(self, llama: Any, prompt: _Prompt, candidate: str) -> list[int]:
        tokens = llama.tokenize(candidate.encode("utf-8"), add_bos=False, special=False)
        end = (
            llama.tokenize(prompt.stop[0].encode("utf-8"), add_bos=False, special=True) if prompt.stop else []
        )
        if len(end) != 1:  # no single end-of-turn token: fall back to end-of-sequence
            end = [llama.token_eos()]
        return [*tokens, *end]


class _Scorer:
    """Log-probabilities through llama.cpp's C API (``llama_decode`` with chosen
    logits), keeping ``Llama``'s own record of the context (``input_ids``,
    ``n_tokens``) true, so its next generation reuses the prompt we evaluated."""

    def __init__(self, llama: Any, n_batch: int) -> None:
        import llama_cpp

        self.lib = llama_cpp
        self.llama = llama
        self.ctx = llama.ctx
        self.memory = llama_cpp.llama_get_memory(self.ctx)
        self.n_vocab = llama.n_vocab()
        self.n_batch = n_batch

    def score(
        self, prompt: list[int], candidates: dict[str, list[int]], cancel: threading.Event
    ) -> dict[str, float]:
        llama = self.llama
        held = [int(t) for t in llama.input_ids[: llama.n_tokens]]
        common = 0
        for a, b in zip(held, prompt, strict=False):
            if a != b:
                break
            common += 1
        # Re-evaluate at least the prompt's last token: its logits are the first we need.
        keep = min(common, len(prompt) - 1)
        self._truncate(keep)
        try:
            first = _log_softmax(self._decode(prompt[keep:], keep, all_logits=False)[0])
            llama.input_ids[keep : len(prompt)] = prompt[keep:]
            llama.n_tokens = len(prompt)
            out: dict[str, float] = {}
            for candidate, tokens in candidates.items():
                if cancel.is_set():
                    break
                total = float(first[tokens[0]])
                if len(tokens) > 1:
                    self._truncate(len(prompt))
                    rows = self._decode(tokens[:-1], len(prompt), all_logits=True)
                    total += sum(
                        float(_log_softmax(row)[tok]) for row, tok in zip(rows, tokens[1:], strict=True)
                    )
                out[candidate] = total
            return out
        finally:
            # Leave the prompt minus its last token: logits in the context now belong
            # to a candidate, so the next generation must decode that token again.
            self._truncate(max(0, min(llama.n_tokens, len(prompt)) - 1))

    def _truncate(self, n: int) -> None:
        self.lib.llama_memory_seq_rm(self.memory, 0, n, -1)
        self.llama.n_tokens = min(self.llama.n_tokens, n)

    def _decode(self, tokens: list[int], start: int, *, all_logits: bool) -> list[np.ndarray[Any, Any]]:
        lib = self.lib
        rows: list[np.ndarray[Any, Any]] = []
        for offset in range(0, len(tokens), self.n_batch):
            part = tokens[offset : offset + self.n_batch]
            last_part = offset + self.n_batch >= len(tokens)
            batch = lib.llama_batch_init(len(part), 0, 1)
            try:
                batch.n_tokens = len(part)
                for i, token in enumerate(part):
                    batch.token[i] = token
                    batch.pos[i] = start + offset + i
                    batch.n_seq_id[i] = 1
                    batch.seq_id[i][0] = 0
                    batch.logits[i] = all_logits or (last_part and i == len(part) - 1)
                status = lib.llama_decode(self.ctx, batch)
                if status != 0:
                    raise RuntimeError(f"llama_decode returned {status}")
                wanted = range(len(part)) if all_logits else ([len(part) - 1] if last_part else [])
                for i in wanted:
                    pointer = lib.llama_get_logits_ith(self.ctx, i)
                    rows.append(np.ctypeslib.as_array(pointer, shape=(self.n_vocab,)).astype(np.float64))
            finally:
                lib.llama_batch_free(batch)
        return rows


def _log_softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    shifted = logits - logits.max()
    result: np.ndarray[Any, Any] = shifted - np.log(np.exp(shifted).sum())
    return result


def _chat_formatter(llama: Any, spec: ModelSpec) -> Any:
    """The model's own chat template, exactly as ``Llama.create_chat_completion``
    builds it from the GGUF metadata."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llama.metadata.get("tokenizer.chat_template")
    if not template:
        raise ProviderUnsupportedError(f"{spec.id} has no chat template in its GGUF metadata")
    eos, bos = llama.token_eos(), llama.token_bos()

    def text(token: int) -> str:
        if token == -1:
            return ""
        return bytes(llama.detokenize([token], special=True)).decode("utf-8", errors="replace")

    return Jinja2ChatFormatter(
        template=template, eos_token=text(eos), bos_token=text(bos), stop_token_ids=[eos]
    )


def _check_json(model: str, completion: Completion, max_tokens: int) -> None:
    try:
        json.loads(completion.text)
    except ValueError:
        if completion.finish_reason == "length":
            raise ProviderResponseError(
                f"{model}: structured output was cut off at max_tokens={max_tokens}; allow more tokens",
                details={"max_tokens": max_tokens, "text": completion.text[:200]},
            ) from None
        raise ProviderResponseError(
            f"{model}: the reply is not valid JSON", details={"text": completion.text[:200]}
        ) from None


@contextlib.contextmanager
def _translated(model: str) -> Iterator[None]:
    """Turns llama.cpp's exceptions into Brickwork errors (ours pass through)."""
    try:
        yield
    except BrickworkError:
        raise
    except MemoryError as exc:
        raise ProviderUnavailableError(f"{model}: out of memory") from exc
    except Exception as exc:
        text = str(exc)
        if "exceed context window" in text:
            raise ContextLengthExceededError(f"{model}: {text}") from exc
        raise ProviderError(f"{model}: llama.cpp failed: {type(exc).__name__}: {text}") from exc
