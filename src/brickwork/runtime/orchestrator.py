"""The orchestrator: the one place that knows the order of the steps.

::

    1 route      Router: explicit ref | metadata rules | strategies (intent) | default
    2 version    VersionSelector: ref → plugin@version (experiments plug in here)
    3 admit      rate limit (refunded if the request is refused before it runs)
    4 guard in   input contract and size
    5 cache      exact key: tenant + plugin@version + prompt version + input
    6 run        bulkhead slot → breaker → deadline → plugin.run(input, ctx)
    7 guard out  output contract
    8 record     one CallRecord to every recorder

A failure of the chosen version moves on along its fallback chain of plugins
with the same contract; the envelope says which one answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from brickwork.contracts.clock import Clock, SystemClock
from brickwork.contracts.errors import (
    BrickworkError,
    CallCycleError,
    CallDepthExceededError,
    DeadlineExceededError,
    FallbacksExhaustedError,
    InvalidRequestError,
    PermissionDeniedError,
    PluginFailedError,
    RecordFailedError,
)
from brickwork.contracts.policy import BreakerPolicy
from brickwork.contracts.provider import Usage, estimate_tokens
from brickwork.contracts.record import CallRecord, Recorder
from brickwork.contracts.request import Attempt, Envelope, Principal, Request, RouteDecision
from brickwork.contracts.tracing import Tracer
from brickwork.guards.contract import (
    InputContractGuard,
    OutputContractGuard,
    describe_validation_error,
)
from brickwork.policies.breaker import CircuitBreaker
from brickwork.policies.bulkhead import Bulkhead
from brickwork.policies.cache import ResponseCache, cache_key, canonical_json
from brickwork.policies.model import CallAccount, ModelRun
from brickwork.policies.ratelimit import RateLimiter
from brickwork.policies.timeout import Deadline
from brickwork.runtime.context import Frame, RunContext, StreamedText, TextSink
from brickwork.runtime.models import BoundModel, ModelBindings, Providers
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import PluginEntry, Registry
from brickwork.runtime.routing import Router
from brickwork.runtime.streaming import stream_answer, text_of
from brickwork.runtime.trace_ids import new_trace_id
from brickwork.state.base import BreakerSnapshot, StateBackend
from brickwork.state.memory import MemoryState

__all__ = ["Orchestrator", "PluginHealth", "VersionSelector", "new_trace_id"]

log = logging.getLogger(__name__)


class VersionSelector:
    """Step 2: the route's ref → one registered version."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def select(self, decision: RouteDecision, request: Request) -> PluginEntry:
        return self.registry.resolve(decision.ref)


@dataclass(frozen=True)
class PluginHealth:
    ref: str
    breaker: BreakerSnapshot | None
    in_flight: int
    queued: int


@dataclass
class _Outcome:
    output: BaseModel
    cache_hit: bool


class Orchestrator:
    """Handles requests for the plugins of a :class:`Registry`.

    Every dependency is passed in; the defaults make a single-process runtime
    (memory state, system clock, no providers).
    """

    def __init__(
        self,
        registry: Registry,
        *,
        providers: Providers | None = None,
        state: StateBackend | None = None,
        clock: Clock | None = None,
        router: Router | None = None,
        recorders: Sequence[Recorder] | None = None,
        input_guard: InputContractGuard | None = None,
        output_guard: OutputContractGuard | None = None,
        max_call_depth: int = 8,
        rng: random.Random | None = None,
        tracing: Tracer | None = None,
    ) -> None:
        self.registry = registry
        self.providers = providers or Providers()
        self.state: StateBackend = state or MemoryState()
        self.clock: Clock = clock or SystemClock()
        self.router = router or Router()
        self.versions = VersionSelector(registry)
        self.recorders: list[Recorder] = list(recorders) if recorders is not None else [MemoryRecorder()]
        self.input_guard = input_guard or InputContractGuard()
        self.output_guard = output_guard or OutputContractGuard()
        self.max_call_depth = max_call_depth
        self.rng = rng or random.Random()
        self._bulkheads: dict[str, Bulkhead] = {}
        #: Circuit breakers by state key: the objects are only handles on the state
        #: backend's breaker, so one per key serves every request.
        self._breakers: dict[str, CircuitBreaker] = {}
        #: OpenTelemetry spans; ``None`` (the default) makes no tracing call at all.
        self.tracing = tracing
        #: Each plugin version's model chains, composed with its policies once.
        self.bindings = ModelBindings(self)

    # --- public API ------------------------------------------------------------

    async def handle(
        self,
        request: Request | Mapping[str, Any],
        *,
        principal: Principal | None = None,
        on_text: TextSink | None = None,
    ) -> Envelope:
        """Route, run and record one request. Raises a :class:`BrickworkError` on failure.

        With a ``principal``, every plugin about to run is checked against it
        (:class:`PermissionDeniedError` otherwise), and the request's tenant is the
        principal's. With ``on_text``, the plugin's text (its ``text_field``) is
        handed to it piece by piece as the plugin produces it (``ctx.emit``); a plugin
        that does not stream hands over nothing, and its envelope holds the whole
        output as always. See :meth:`stream` for the same as one iterator.
        """
        trace_id = new_trace_id()
        if not isinstance(request, Request):
            try:
                request = Request.model_validate(request)
            except ValidationError as exc:
                problems = describe_validation_error(exc)
                error = InvalidRequestError(
                    "malformed request: " + "; ".join(f"{p['loc']}: {p['msg']}" for p in problems),
                    details={"errors": problems},
                )
                # Refused before the pipeline, still one record: the audit shows every request
                # (under the caller's tenant when it is known, never one the body claims).
                tenant = request.get("tenant") if isinstance(request, Mapping) else None
                if principal is not None:
                    tenant = principal.tenant
                await self._record(
                    CallRecord(
                        trace_id=trace_id,
                        tenant=tenant if isinstance(tenant, str) and tenant else "unknown",
                        time=self.clock.time(),
                        depth=0,
                        outcome=error.code,
                        error=error.message,
                    )
                )
                raise error from None
        if principal is not None and request.tenant != principal.tenant:
            request = request.model_copy(update={"tenant": principal.tenant})
        text = StreamedText(on_text) if on_text is not None else None
        return await self._handle(request, Frame((), trace_id, None, principal, text))

    def stream(
        self, request: Request | Mapping[str, Any], *, principal: Principal | None = None
    ) -> AsyncIterator[str | Envelope]:
        """:meth:`handle` as one iterator: each piece of the plugin's text as it is
        produced, then the envelope (see :func:`~brickwork.runtime.streaming.stream_answer`).
        Closing the iterator early cancels the run: leave the loop inside
        ``contextlib.aclosing(runtime.stream(...))`` (a generator merely left behind
        is closed only when it is collected)."""
        return stream_answer(self.handle, self.registry, request, principal=principal)

    def text_of(self, envelope: Envelope) -> str | None:
        """The text of an answer: its plugin's ``text_field``, else a ``text`` field."""
        return text_of(self.registry, envelope)

    def run_sync(self, request: Request | Mapping[str, Any]) -> Envelope:
        """:meth:`handle` for synchronous callers (not from inside an event loop)."""

        async def once() -> Envelope:
            try:
                return await self.handle(request)
            finally:
                await self.aclose()

        return asyncio.run(once())

    async def aclose(self) -> None:
        """Close what providers and state hold open (HTTP sessions, model threads)."""
        for provider in self.providers.providers.values():
            closer = getattr(provider, "aclose", None)
            if closer is not None:
                await closer()
        await self.state.aclose()

    def bulkhead(self, entry: PluginEntry) -> Bulkhead | None:
        if entry.policy.bulkhead is None:
            return None
        bulkhead = self._bulkheads.get(entry.ref)
        if bulkhead is None or bulkhead.policy != entry.policy.bulkhead:
            bulkhead = Bulkhead(entry.policy.bulkhead, self.clock, label=entry.ref)
            self._bulkheads[entry.ref] = bulkhead
        return bulkhead

    def breaker(self, key: str, policy: BreakerPolicy, label: str) -> CircuitBreaker:
        """The circuit breaker kept under ``key`` in the state backend, for ``policy``."""
        breaker = self._breakers.get(key)
        if breaker is None or breaker.policy is not policy:
            breaker = CircuitBreaker(key, policy, self.state, self.clock, label=label)
            self._breakers[key] = breaker
        return breaker

    async def health(self, entry: PluginEntry) -> PluginHealth:
        snapshot = None
        if entry.policy.breaker is not None:
            snapshot = await self.state.breaker_snapshot(
                f"breaker:plugin:{entry.ref}", entry.policy.breaker, now=self.clock.time()
            )
        bulkhead = self._bulkheads.get(entry.ref)
        return PluginHealth(
            entry.ref,
            snapshot,
            bulkhead.in_flight if bulkhead else 0,
            bulkhead.queued if bulkhead else 0,
        )

    # --- the pipeline ----------------------------------------------------------

    def _handle(self, request: Request, frame: Frame) -> Awaitable[Envelope]:
        if self.tracing is None:
            return self._handle_traced(request, frame)  # no coroutine layer of its own
        return self._handle_in_span(request, frame, self.tracing)

    async def _handle_in_span(self, request: Request, frame: Frame, tracing: Tracer) -> Envelope:
        with tracing.request(trace_id=frame.trace_id, tenant=request.tenant, depth=len(frame.stack)) as span:
            envelope = await self._handle_traced(request, frame)
            span.set_attribute("brickwork.plugin.name", envelope.plugin)
            span.set_attribute("brickwork.plugin.version", envelope.version)
            span.set_attribute("brickwork.route.method", envelope.route.method)
            span.set_attribute("brickwork.degraded", envelope.degraded)
            return envelope

    async def _handle_traced(self, request: Request, frame: Frame) -> Envelope:
        started = self.clock.now()
        record = CallRecord(
            trace_id=frame.trace_id,
            tenant=request.tenant,
            time=self.clock.time(),
            depth=len(frame.stack),
        )
        try:
            decision = await self.router.route(request)  # 1 route
            record.route = decision
            entry = self.versions.select(decision, request)  # 2 version
            # Named now, so that a failure's record says which version failed.
            record.plugin, record.version = entry.name, str(entry.version)
            envelope = await self._dispatch(request, decision, entry, frame, record)  # 3–7
        except BrickworkError as exc:
            record.outcome, record.error = exc.code, exc.message
            record.latency_ms = (self.clock.now() - started) * 1000
            exc.cost, exc.tokens = record.cost, record.usage.total_tokens
            await self._record(record)
            raise
        except asyncio.CancelledError:
            record.outcome = "cancelled"
            record.latency_ms = (self.clock.now() - started) * 1000
            with contextlib.suppress(RecordFailedError):  # logged; the cancellation goes on
                await asyncio.shield(self._record(record))
            raise
        except Exception as exc:
            # A bug outside plugin code (a routing strategy, a state backend): still
            # one record per request. Only the type: the message may quote input.
            record.outcome, record.error = "internal_error", type(exc).__name__
            record.latency_ms = (self.clock.now() - started) * 1000
            await self._record(record)
            raise
        record.latency_ms = (self.clock.now() - started) * 1000
        envelope.__dict__["latency_ms"] = record.latency_ms
        await self._record(record)  # 8 record
        return envelope

    async def _dispatch(
        self,
        request: Request,
        decision: RouteDecision,
        entry: PluginEntry,
        frame: Frame,
        record: CallRecord,
    ) -> Envelope:
        """Try the chosen version, then its fallback plugins in order.

        What every link spent is summed, failed links included: their model calls
        were made and paid for, so the envelope and the record account for them.
        """
        fallbacks = entry.policy.fallback.plugins
        last = len(fallbacks)
        failed: list[tuple[str, BrickworkError]] = []  # (plugin@version, its error)
        total = CallAccount()
        admitted: set[str] = set()  # plugin names whose quota this request already used
        try:
            for position in range(last + 1):
                if position == 0:
                    link = entry
                    self._check_stack(link, frame)
                else:
                    # Resolved only once needed, so a healthy primary never depends on
                    # its fallbacks; one this caller may not use is skipped, not fatal.
                    try:
                        link = self.registry.resolve(fallbacks[position - 1])
                        self._check_stack(link, frame)
                    except BrickworkError as exc:
                        failed.append((fallbacks[position - 1], exc))
                        continue
                account = CallAccount()
                try:
                    outcome = await self._attempt(request, link, frame, account, admitted)
                except BrickworkError as exc:
                    # Once text reached the caller, another link's answer cannot follow it.
                    streamed = frame.text is not None and frame.text.sent
                    eligible = exc.code in entry.policy.fallback.on and not streamed
                    if eligible and position < last:
                        failed.append((link.ref, exc))
                        log.info("%s failed (%s), falling back", link.ref, exc.code)
                        continue
                    if failed and eligible:
                        failed.append((link.ref, exc))
                        raise self._exhausted(entry, failed) from exc
                    raise
                finally:
                    _add_account(total, account)
                version = str(link.version)
                prompt_version = link.cls.prompt_version()
                record.plugin, record.version = link.name, version
                record.prompt_version = prompt_version
                record.cache_hit = outcome.cache_hit
                record.degraded = bool(failed)
                warnings = list(total.warnings)
                if failed:
                    warnings.insert(0, f"degraded: answered by {link.ref} after {entry.ref} failed")
                return Envelope(
                    output=outcome.output.model_dump(mode="json"),
                    plugin=link.name,
                    version=version,
                    prompt_version=prompt_version,
                    route=decision,
                    models=list(total.models),
                    usage=_usage_copy(total.usage),
                    cost=total.cost,
                    cache_hit=outcome.cache_hit,
                    degraded=bool(failed),
                    fallbacks=_attempts(failed),
                    trace_id=frame.trace_id,
                    warnings=warnings,
                )
            # The primary failed and every fallback after it was unusable.
            raise failed[0][1] if len(failed) == 1 else self._exhausted(entry, failed)
        finally:
            record.models = list(total.models)
            record.usage = total.usage
            record.cost = total.cost
            record.fallbacks = _attempts(failed)

    @staticmethod
    def _exhausted(entry: PluginEntry, failed: list[tuple[str, BrickworkError]]) -> FallbacksExhaustedError:
        return FallbacksExhaustedError(
            f"{entry.ref} and all {len(failed) - 1} fallbacks failed: "
            + ", ".join(f"{ref} {e.code}" for ref, e in failed),
            errors=[e for _, e in failed],
            plugin=entry.ref,
        )

    def _check_stack(self, entry: PluginEntry, frame: Frame) -> None:
        if frame.principal is not None and not frame.principal.allows(entry.name):
            raise PermissionDeniedError(f"this key may not use plugin {entry.name!r}", plugin=entry.ref)
        if entry.ref in frame.stack:
            raise CallCycleError("call cycle: " + " → ".join((*frame.stack, entry.ref)), plugin=entry.ref)
        if len(frame.stack) >= self.max_call_depth:
            raise CallDepthExceededError(
                f"call depth {len(frame.stack)} reached the limit of {self.max_call_depth}: "
                + " → ".join((*frame.stack, entry.ref)),
                plugin=entry.ref,
            )

    async def _attempt(
        self,
        request: Request,
        entry: PluginEntry,
        frame: Frame,
        account: CallAccount,
        admitted: set[str],
    ) -> _Outcome:
        """Steps 3–7 for one plugin version; what it spends goes into ``account``."""
        policy = entry.policy
        limiter = permit = None
        # 3 admit. Quotas are per plugin name × tenant, whatever the version: a limit
        # of N on a capability stays N through an A/B split. A fallback to another
        # version of the same plugin is the same request and is not counted twice.
        if policy.rate_limit is not None and entry.name not in admitted:
            limiter = RateLimiter(policy.rate_limit, self.state, self.clock)
            tokens = estimate_tokens([canonical_json(request.input)])
            permit = await limiter.acquire(entry.name, request.tenant, tokens=tokens)
        # Set once the request is served (cache hit, or the plugin starts). Anything
        # that refuses it before then (input guard, bulkhead, open breaker, a
        # cancellation in the queue) gives the quota back.
        ran = False

        def started() -> None:
            nonlocal ran
            ran = True

        try:
            data = self.input_guard.check(entry.ref, entry.cls.input_type, request.input)  # 4
            cache = key = None
            if policy.cache is not None:  # 5 cache
                cache = ResponseCache(policy.cache, self.state, self.clock)
                key = cache_key(request.tenant, entry.ref, entry.cls.prompt_version(), data)
                if not request.cache_bypass:
                    hit = await cache.get(key)
                    cached = _cached_output(entry, hit) if hit is not None else None
                    if hit is not None and cached is not None:
                        ran = True
                        account.models.extend(hit.get("models", []))
                        return _Outcome(cached, cache_hit=True)
            bulkhead = self.bulkhead(entry)
            if bulkhead is not None:
                await bulkhead.acquire()
            try:
                output = await self._run(request, entry, data, frame, account, started)  # 6, 7
            finally:
                if bulkhead is not None:
                    bulkhead.release()
            # A streamed answer is shaped as it streamed (a summary cut at a word, a
            # dropped glossary term reported, not put back): not cached for callers
            # who read answers whole.
            streamed = frame.text is not None and frame.text.sent
            if cache is not None and key is not None and not streamed:
                await cache.put(key, {"output": output.model_dump(mode="json"), "models": account.models})
            if limiter is not None and permit is not None and account.usage.calls:
                await limiter.settle_tokens(permit, account.usage.total_tokens)
            return _Outcome(output, cache_hit=False)
        finally:
            if limiter is not None and permit is not None:
                if ran:
                    admitted.add(entry.name)
                else:
                    await asyncio.shield(limiter.refund(permit))

    async def _run(
        self,
        request: Request,
        entry: PluginEntry,
        data: BaseModel,
        frame: Frame,
        account: CallAccount,
        started: Callable[[], None],
    ) -> BaseModel:
        policy = entry.policy
        total = policy.timeout.total
        deadline = frame.deadline.child(total) if frame.deadline else Deadline(self.clock, total)
        account_run = ModelRun(entry.ref, request.tenant, deadline, account)
        model = BoundModel(self.bindings.get(entry), account_run)
        ctx = RunContext(
            entry=entry,
            request=request,
            trace_id=frame.trace_id,
            model=model,
            deadline=deadline,
            account=account,
            frame=Frame((*frame.stack, entry.ref), frame.trace_id, deadline, frame.principal),
            dispatch=self._handle,
            text=frame.text,
        )

        async def invoke() -> BaseModel:
            started()
            account_run.deadline_task = asyncio.current_task()  # the task the run's timer covers
            try:
                async with self.clock.timeout(deadline.remaining()):
                    try:
                        raw = await entry.instance.run(data, ctx)
                    finally:
                        await model.aclose()  # streams left open are settled before the envelope
            except TimeoutError as exc:
                if deadline.expired():
                    raise DeadlineExceededError(
                        f"{entry.ref} did not finish within {deadline.seconds:g}s",
                        plugin=entry.ref,
                    ) from None
                raise PluginFailedError(f"{entry.ref} raised TimeoutError", plugin=entry.ref) from exc
            except BrickworkError:
                raise
            except asyncio.CancelledError as exc:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise  # the request itself is being cancelled
                # Plugin code awaited something that someone else cancelled: a plugin
                # bug, not a cancellation of this request.
                raise PluginFailedError(
                    f"{entry.ref} raised CancelledError without being cancelled", plugin=entry.ref
                ) from exc
            except Exception as exc:
                raise PluginFailedError(
                    f"{entry.ref} raised {type(exc).__name__}: {str(exc)[:200]}", plugin=entry.ref
                ) from exc
            output = self.output_guard.check(entry.ref, entry.cls.output_type, raw)  # 7
            if ctx.emitted is not None:
                self.output_guard.check_streamed(entry.ref, entry.cls.text_field, output, ctx.emitted)
            return output

        if self.tracing is not None:
            untraced = invoke

            async def invoke() -> BaseModel:
                assert self.tracing is not None
                with self.tracing.plugin(
                    name=entry.name,
                    version=str(entry.version),
                    prompt_version=entry.cls.prompt_version(),
                ):
                    return await untraced()

        if policy.breaker is None:
            return await invoke()
        breaker = self.breaker(f"breaker:plugin:{entry.ref}", policy.breaker, entry.ref)
        return await breaker.call(invoke)

    async def _record(self, record: CallRecord) -> None:
        """Give the record to every recorder; raise if a required one failed."""
        failed: Exception | None = None
        for recorder in self.recorders:
            try:
                await recorder.record(record)
            except Exception as exc:
                log.exception("recorder %r failed", recorder)
                if getattr(recorder, "required", False):
                    failed = exc
        if failed is not None:
            raise RecordFailedError(
                f"the {record.outcome} call {record.trace_id} could not be recorded; "
                "no answer is given without its record"
            ) from failed


def _cached_output(entry: PluginEntry, hit: Mapping[str, Any]) -> BaseModel | None:
    """A cached answer as the plugin's output; ``None`` (a miss) when it no longer fits
    the output contract (the model changed under the same version and prompts)."""
    try:
        return entry.cls.output_type.model_validate(hit["output"])
    except (ValidationError, KeyError, TypeError):
        log.warning("cached output for %s does not fit its contract; treated as a miss", entry.ref)
        return None


def _usage_copy(usage: Usage) -> Usage:
    # Cheaper than ``model_copy()`` (which copies every private attribute too).
    return Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens, calls=usage.calls)


def _add_account(total: CallAccount, part: CallAccount) -> None:
    total.usage.add(part.usage)
    total.cost += part.cost
    total.models.extend(m for m in part.models if m not in total.models)
    total.warnings.extend(part.warnings)


def _attempts(failed: Sequence[tuple[str, BrickworkError]]) -> list[Attempt]:
    attempts = []
    for ref, error in failed:
        name, _, version = ref.partition("@")
        attempts.append(Attempt(plugin=name, version=version, code=error.code, message=error.message))
    return attempts
