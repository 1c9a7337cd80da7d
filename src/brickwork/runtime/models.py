"""``ctx.model``: a plugin's model chain wrapped in its policies.

For each model call: per-attempt timeout (never past the run's deadline), retry
on retryable errors, a circuit breaker per plugin + provider, the budget reserved
before and settled after, and the next model of the fallback chain when one fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from brickwork.contracts.clock import Clock
from brickwork.contracts.errors import (
    BrickworkError,
    ConfigurationError,
    FallbacksExhaustedError,
    PermissionDeniedError,
    ProviderTimeoutError,
    RealProviderForbiddenError,
)
from brickwork.contracts.policy import BreakerPolicy, Policy
from brickwork.contracts.provider import (
    Completion,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    Message,
    ModelId,
    Provider,
    ScoreRequest,
    Scores,
    StreamChunk,
    Usage,
    estimate_tokens,
)
from brickwork.policies.breaker import CircuitBreaker
from brickwork.policies.budget import Budget, BudgetHold
from brickwork.policies.retry import Retry
from brickwork.policies.timeout import Deadline
from brickwork.state.base import StateBackend

if TYPE_CHECKING:  # imported for types only: tracing loads OpenTelemetry
    from brickwork.observability.tracing import Tracing

__all__ = ["BoundModel", "ModelPrice", "Providers", "allow_real_providers", "model_id"]

T = TypeVar("T")

#: False inside :func:`brickwork.testing.forbid_real_providers`.
allow_real_providers: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "brickwork_allow_real_providers", default=True
)


@dataclass(frozen=True)
class ModelPrice:
    """USD per million tokens."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (usage.input_tokens * self.input + usage.output_tokens * self.output) / 1e6


@dataclass
class Providers:
    """Model providers by name, and the price table."""

    providers: dict[str, Provider] = field(default_factory=dict)
    prices: Mapping[str, ModelPrice] = field(default_factory=dict)

    def add(self, provider: Provider) -> None:
        self.providers[provider.name] = provider

    def get(self, model_id: ModelId) -> Provider:
        provider = self.providers.get(model_id.provider)
        if provider is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise ConfigurationError(
                f"no provider {model_id.provider!r} for model {model_id} (available: {known})"
            )
        if provider.is_real and not allow_real_providers.get():
            raise RealProviderForbiddenError(
                f"real provider call to {model_id} while real providers are forbidden"
            )
        return provider

    def price(self, model_id: ModelId) -> ModelPrice:
        return self.prices.get(str(model_id), self.prices.get(f"{model_id.provider}:*", ModelPrice()))


@dataclass
class CallAccount:
    """What a run's model calls used; the orchestrator puts it in the envelope."""

    usage: Usage = field(default_factory=Usage)
    cost: float = 0.0
    models: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@functools.lru_cache(maxsize=4096)
def model_id(text: str) -> ModelId:
    """``ModelId.parse``, once per distinct id (ids are immutable; a run binds a few)."""
    return ModelId.parse(text)


def _messages(messages: str | Sequence[Message]) -> list[Message]:
    if isinstance(messages, str):
        return [Message(role="user", content=messages)]
    return list(messages)


class BoundModel:
    """The :class:`~brickwork.contracts.plugin.ModelClient` one plugin run gets."""

    def __init__(
        self,
        *,
        plugin: str,
        tenant: str,
        model: str | None,
        policy: Policy,
        embedding_model: str | None = None,
        tracing: Tracing | None = None,
        permissions: frozenset[str],
        providers: Providers,
        state: StateBackend,
        clock: Clock,
        deadline: Deadline,
        account: CallAccount,
        rng: random.Random,
        breakers: Callable[[str, BreakerPolicy, str], CircuitBreaker] | None = None,
        breaker_per_model: bool = True,
    ) -> None:
        self.plugin = plugin
        self.tenant = tenant
        self.chain = [model_id(m) for m in ((model,) if model else ()) + policy.fallback.models]
        self.embedding_chain = [model_id(embedding_model)] if embedding_model else []
        self.tracing = tracing
        self.policy = policy
        self.permissions = permissions
        self.providers = providers
        self.state = state
        self.clock = clock
        self.deadline = deadline
        self.account = account
        self.rng = rng
        #: Where breakers come from (the orchestrator keeps one per key); without it,
        #: a new handle on the state backend's breaker per call.
        self.breakers = breakers
        #: A breaker per plugin + provider around each call (else the plugin's own
        #: breaker, around the whole run, is the only one: see ``Plugin.breaker_per_model``).
        self.breaker_per_model = breaker_per_model
        #: The task a caller already runs the plugin in under ``deadline`` (the
        #: orchestrator sets it): an attempt with no limit of its own made in that
        #: task needs no second timer. (One made elsewhere — a task the plugin
        #: started, a shield — is not reached by that timer, so it gets its own.)
        self.deadline_task: asyncio.Task[Any] | None = None
        self._streams: set[AsyncGenerator[StreamChunk, None]] = set()

    def _check(self, permission: str) -> None:
        if permission not in self.permissions:
            raise PermissionDeniedError(
                f"plugin {self.plugin} did not declare the {permission!r} permission",
                plugin=self.plugin,
            )
        chain = self.embedding_chain if permission == "embed" else self.chain
        if not chain:
            what = "embedding model" if permission == "embed" else "model"
            raise PermissionDeniedError(f"plugin {self.plugin} has no {what} bound", plugin=self.plugin)

    async def complete(
        self,
        messages: str | Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
        json_schema: dict[str, Any] | None = None,
        stop: Sequence[str] = (),
    ) -> Completion:
        self._check("model")
        msgs = _messages(messages)

        def estimate() -> Usage:
            return Usage(input_tokens=estimate_tokens([m.content for m in msgs]), output_tokens=max_tokens)

        def one(model_id: ModelId, provider: Provider) -> Awaitable[Completion]:
            request = CompletionRequest(
                model=model_id.model,
                messages=msgs,
                max_tokens=max_tokens,
                temperature=temperature,
                stop=list(stop),
                json_schema=json_schema,
            )
            return self._metered(model_id, estimate, lambda: provider.complete(request), operation="chat")

        return await self._over_chain(one)

    def stream(
        self,
        messages: str | Sequence[Message],
        *,
        max_tokens: int = 256,
        temperature: float = 0.0,
    ) -> AsyncIterator[StreamChunk]:
        """Stream from the first model whose stream opens; no fallback once tokens flowed.

        Until the first chunk, each model gets what a call gets: its breaker (an
        open one is skipped), the retry policy and the per-attempt limit. After
        that, only the run's deadline times each chunk; how the stream ended counts
        for the breaker (a reader that stopped early is no failure), and its latency
        is the time to the first chunk (a long answer is not a slow model).

        The budget is reserved before the stream opens and settled with what it used.
        A stream the plugin stops reading is closed, and accounted for, when the run
        ends (see :meth:`aclose`); without a usage report from the provider, input
        tokens are estimated and each chunk counts as one output token.
        """
        self._check("model")
        stream = self._stream(messages, max_tokens=max_tokens, temperature=temperature)
        self._streams.add(stream)
        return stream

    async def aclose(self) -> None:
        """Close the streams the plugin left open, settling what they spent.

        (Closing a stream that already ended does nothing; a run's streams are few.)
        """
        while self._streams:
            stream = self._streams.pop()
            # One still being read by a task the plugin left behind cannot be closed
            # from here; its own ``finally`` settles it when that task ends.
            with contextlib.suppress(RuntimeError):
                await stream.aclose()

    async def _stream(
        self, messages: str | Sequence[Message], *, max_tokens: int, temperature: float
    ) -> AsyncGenerator[StreamChunk, None]:
        msgs = _messages(messages)
        errors: list[BrickworkError] = []
        for position, model_id in enumerate(self.chain):
            provider = self.providers.get(model_id)
            request = CompletionRequest(
                model=model_id.model, messages=msgs, max_tokens=max_tokens, temperature=temperature
            )
            estimate = Usage(
                input_tokens=estimate_tokens([m.content for m in msgs]), output_tokens=max_tokens
            )
            price = self.providers.price(model_id)
            usage: Usage | None = None
            received = 0
            started = False
            try:
                # The model's breaker and retries as for a call, until the first chunk:
                # once tokens flowed, the stream is never tried again.
                breaker = self._model_breaker(model_id)
                permit = None if breaker is None else await breaker.acquire()
                opened = self.clock.now()
                latency: float | None = None  # to the first chunk: what the breaker judges
                failure: BaseException | None = None
                stopped = False  # the reader stopped early
                try:
                    hold = await self._reserve(price.cost(estimate))
                    try:
                        chunks, chunk = await self._retried(
                            model_id, functools.partial(self._open_stream, model_id, provider, request)
                        )
                        latency = self.clock.now() - opened
                        try:
                            while chunk is not None:
                                started = True
                                received += 1
                                if chunk.usage is not None:
                                    usage = chunk.usage.model_copy(update={"calls": 1})
                                # Only the wait for each chunk is timed (_next_chunk), never
                                # the ``yield``: a timeout around a yield would fire in the
                                # consumer's code, where it cannot be told from a
                                # cancellation of the whole request.
                                try:
                                    yield chunk
                                except GeneratorExit:
                                    stopped = True
                                    raise
                                chunk = await self._next_chunk(model_id, chunks)
                        finally:
                            if stopped:
                                # The reader is gone: an error closing the provider's
                                # stream now is nobody's to handle, nor the model's fault.
                                with contextlib.suppress(Exception):
                                    await _close(chunks)
                            else:
                                await _close(chunks)
                    finally:
                        # Tokens that flowed were paid for, whether or not the stream ended well.
                        spent = 0.0
                        if started:
                            if usage is None:
                                usage = Usage(input_tokens=estimate.input_tokens, output_tokens=received)
                            usage = usage.model_copy(update={"calls": 1})
                            self._account(model_id, usage, price)
                            spent = price.cost(usage)
                        await self._settle(hold, spent)
                except GeneratorExit:
                    raise  # the reader stopped early: no fault of the model's
                except BaseException as exc:
                    failure = exc
                    raise
                finally:
                    if breaker is not None and permit is not None:
                        await breaker.record(permit, opened, failure, latency=latency)
            except BrickworkError as exc:
                if started or exc.code not in self.policy.fallback.on:
                    raise
                errors.append(exc)
                if position < len(self.chain) - 1:
                    self.account.warnings.append(f"model {model_id} failed ({exc.code}); trying next")
                continue
            return
        raise self._exhausted(errors)

    async def _open_stream(
        self, model_id: ModelId, provider: Provider, request: CompletionRequest
    ) -> tuple[AsyncIterator[StreamChunk], StreamChunk | None]:
        """Open a stream and wait for its first chunk (``None``: it ended without one)."""
        chunks = provider.stream(request).__aiter__()
        try:
            return chunks, await self._next_chunk(model_id, chunks)
        except BaseException:
            with contextlib.suppress(Exception):  # the first error is the one to report
                await _close(chunks)
            raise

    async def _next_chunk(self, model_id: ModelId, chunks: AsyncIterator[StreamChunk]) -> StreamChunk | None:
        """The stream's next chunk, within the run's deadline; ``None`` at its end."""
        try:
            async with self.clock.timeout(self.deadline.remaining()):
                return await chunks.__anext__()
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise ProviderTimeoutError(
                f"stream from {model_id} passed the run's deadline", plugin=self.plugin
            ) from None

    async def embed(
        self, texts: Sequence[str], *, purpose: Literal["query", "passage"] = "query"
    ) -> Embeddings:
        self._check("embed")

        def estimate() -> Usage:
            return Usage(input_tokens=estimate_tokens(texts))

        def one(model_id: ModelId, provider: Provider) -> Awaitable[Embeddings]:
            request = EmbedRequest(model=model_id.model, texts=list(texts), purpose=purpose)
            return self._metered(model_id, estimate, lambda: provider.embed(request), operation="embeddings")

        return await self._over_chain(one, self.embedding_chain)

    async def score(self, messages: str | Sequence[Message], candidates: Sequence[str]) -> Scores:
        self._check("model")
        msgs = _messages(messages)

        def estimate() -> Usage:
            return Usage(
                input_tokens=estimate_tokens([m.content for m in msgs]) * len(candidates),
                output_tokens=estimate_tokens(candidates),
            )

        def one(model_id: ModelId, provider: Provider) -> Awaitable[Scores]:
            request = ScoreRequest(model=model_id.model, messages=msgs, candidates=list(candidates))
            return self._metered(model_id, estimate, lambda: provider.score(request), operation="score")

        return await self._over_chain(one)

    def count_tokens(self, text: str) -> int:
        if not self.chain:
            return estimate_tokens([text])
        model_id = self.chain[0]
        return self.providers.get(model_id).count_tokens(model_id.model, text)

    # --- the policy stack ------------------------------------------------------

    async def _over_chain(
        self, one: Callable[[ModelId, Provider], Awaitable[T]], chain: list[ModelId] | None = None
    ) -> T:
        chain = self.chain if chain is None else chain
        errors: list[BrickworkError] = []
        for position, model_id in enumerate(chain):
            try:
                provider = self.providers.get(model_id)
                return await self._guarded(model_id, functools.partial(one, model_id, provider))
            except BrickworkError as exc:
                if exc.code not in self.policy.fallback.on or len(chain) == 1:
                    raise
                errors.append(exc)
                if position < len(chain) - 1:
                    self.account.warnings.append(f"model {model_id} failed ({exc.code}); trying next")
        raise self._exhausted(errors)

    def _exhausted(self, errors: list[BrickworkError]) -> BrickworkError:
        if len(errors) == 1:
            return errors[0]
        return FallbacksExhaustedError(
            f"all {len(errors)} models failed for {self.plugin}: " + "; ".join(f"{e.code}" for e in errors),
            errors=errors,
            plugin=self.plugin,
        )

    async def _guarded(self, model_id: ModelId, call: Callable[[], Awaitable[T]]) -> T:
        """Breaker (plugin + provider) around retries around one timed attempt."""
        breaker = self._model_breaker(model_id)
        if breaker is None:
            return await self._retried(model_id, call)
        return await breaker.call(functools.partial(self._retried, model_id, call))

    def _model_breaker(self, model_id: ModelId) -> CircuitBreaker | None:
        """This plugin's breaker for ``model_id``'s provider; ``None`` without one."""
        policy = self.policy.breaker
        if policy is None or not self.breaker_per_model:
            return None
        key = f"breaker:model:{self.plugin}:{model_id.provider}"
        label = f"{self.plugin} via {model_id.provider}"
        if self.breakers is not None:
            return self.breakers(key, policy, label)
        return CircuitBreaker(key, policy, self.state, self.clock, label=label)

    def _retried(self, model_id: ModelId, call: Callable[[], Awaitable[T]]) -> Awaitable[T]:
        """The policy's retries around one timed attempt of ``call``."""

        async def attempt(_n: int) -> T:
            if (
                self.deadline_task is not None
                and self.policy.timeout.attempt is None
                and asyncio.current_task() is self.deadline_task
            ):
                # The attempt's limit would be the run's deadline, which is timed
                # already; the run ends with DeadlineExceeded when it passes.
                return await call()
            budget = self.deadline.attempt(self.policy.timeout.attempt)
            try:
                async with self.clock.timeout(budget):
                    return await call()
            except TimeoutError:
                raise ProviderTimeoutError(
                    f"{model_id} did not answer within {budget:.3g}s", plugin=self.plugin
                ) from None

        if self.policy.retry is None:
            return attempt(1)
        return Retry(self.policy.retry, self.clock, self.rng).call(attempt, deadline=self.deadline)

    async def _metered(
        self,
        model_id: ModelId,
        estimate: Callable[[], Usage],
        call: Callable[[], Awaitable[T]],
        *,
        operation: str,
    ) -> T:
        """One call, its cost reserved from the budget first (from ``estimate()``,
        worked out only when there is a budget) and settled with what it used."""
        price = self.providers.price(model_id)
        hold = None if self.policy.budget is None else await self._reserve(price.cost(estimate()))
        actual = 0.0
        try:
            if self.tracing is None:
                result = await call()
            else:
                with self.tracing.model_call(
                    operation=operation, provider=model_id.provider, model=model_id.model
                ) as span:
                    result = await call()
                    _usage_attributes(span, result)
            usage = getattr(result, "usage", None)
            if usage is None:
                usage = Usage(calls=1)
            elif usage.calls < 1:
                usage = Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, calls=1)
            actual = price.cost(usage)
            self._account(model_id, usage, price)
            return result
        finally:
            if hold is not None:
                await self._settle(hold, actual)

    async def _reserve(self, amount: float) -> BudgetHold | None:
        if self.policy.budget is None:
            return None
        # Budgets are per plugin name (× tenant): every version spends from one purse.
        return await Budget(self.policy.budget, self.state, self.clock).reserve(
            self.plugin.partition("@")[0], self.tenant, amount
        )

    async def _settle(self, hold: BudgetHold | None, actual: float) -> None:
        if hold is not None and self.policy.budget is not None:
            await Budget(self.policy.budget, self.state, self.clock).settle(hold, actual)

    def _account(self, model_id: ModelId, usage: Usage, price: ModelPrice | None = None) -> None:
        price = price or self.providers.price(model_id)
        self.account.usage.add(usage)
        self.account.cost += price.cost(usage)
        if str(model_id) not in self.account.models:
            self.account.models.append(str(model_id))


def _usage_attributes(span: Any, result: object) -> None:
    usage = getattr(result, "usage", None)
    if isinstance(usage, Usage):
        span.set_attribute("gen_ai.usage.input_tokens", usage.input_tokens)
        span.set_attribute("gen_ai.usage.output_tokens", usage.output_tokens)
    model = getattr(result, "model", None)
    if isinstance(model, str):
        span.set_attribute("gen_ai.response.model", model)
    finish = getattr(result, "finish_reason", None)
    if isinstance(finish, str):
        span.set_attribute("gen_ai.response.finish_reasons", [finish])


async def _close(chunks: AsyncIterator[StreamChunk]) -> None:
    close = getattr(chunks, "aclose", None)
    if close is not None:
        await close()
