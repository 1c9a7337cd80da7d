"""The gateway: one :class:`Gateway` object holding the runtime and the stores,
and the Starlette application that serves it.

::

    gateway = Gateway(orchestrator, keys=open_key_store(url), audit=open_audit_log(url))
    app = gateway.app()          # any ASGI server; `brickwork serve` uses uvicorn

Every route is a thin adapter: authenticate the key, read and validate the body,
call :meth:`Orchestrator.handle` with the key as principal, write the envelope.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, Protocol, runtime_checkable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from brickwork.contracts.errors import BrickworkError
from brickwork.contracts.record import Recorder
from brickwork.contracts.request import Envelope, Request
from brickwork.gateway.admin_api import AdminAPI
from brickwork.gateway.auth import KeyPrincipal, bearer, require_admin
from brickwork.gateway.body import request_headers
from brickwork.gateway.errors import (
    MethodNotAllowedError,
    RouteNotFoundError,
    error_response,
    internal_error_response,
)
from brickwork.gateway.health import HealthAPI
from brickwork.gateway.idempotency import Idempotency
from brickwork.gateway.openai_api import OpenAIAPI
from brickwork.gateway.openapi import OpenAPIDocs
from brickwork.gateway.passthrough import register_passthrough
from brickwork.gateway.plugins_api import PluginsAPI
from brickwork.gateway.quota import KeyQuota
from brickwork.gateway.responses import Endpoint
from brickwork.gateway.settings import GatewaySettings
from brickwork.runtime.context import TextSink
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.storage.keys import ApiKey, KeyStore

__all__ = ["Closable", "Gateway", "MetricsSource"]

log = logging.getLogger(__name__)

#: How many (key, model) principals :meth:`Gateway.principal` keeps.
_PRINCIPALS = 4096


class MetricsSource(Recorder, Protocol):
    """What the gateway needs of a metrics recorder (``brickwork.observability.metrics``)."""

    def attach(self, orchestrator: Orchestrator) -> Any: ...

    async def refresh(self) -> None: ...

    def render(self) -> tuple[bytes, str]: ...


@runtime_checkable
class Closable(Protocol):
    async def aclose(self) -> None: ...


class Gateway:
    """The runtime, the key store and the recorders, behind HTTP.

    Args:
        orchestrator: the runtime (``brickwork.build(config)``).
        keys: where API keys are checked.
        audit: the audit log; added to the orchestrator's recorders (as a required
            one, it withholds any answer it could not record) and flushed on close.
        metrics: added to the orchestrator, rendered at ``/metrics``.
        settings: limits and switches (:class:`GatewaySettings`).
    """

    def __init__(
        self,
        orchestrator: Orchestrator,
        *,
        keys: KeyStore,
        audit: Recorder | None = None,
        metrics: MetricsSource | None = None,
        settings: GatewaySettings | None = None,
    ) -> None:
        self.orchestrator = orchestrator
        self.keys = keys
        self.audit = audit
        self.metrics = metrics
        self.settings = settings or GatewaySettings()
        self.quota = KeyQuota(orchestrator.state, orchestrator.clock)
        self.idempotency = Idempotency(
            orchestrator.state,
            orchestrator.clock,
            ttl=self.settings.idempotency_ttl,
            wait=self.settings.idempotency_wait,
        )
        #: provider → its pass-through plugin's name
        self.passthrough = register_passthrough(orchestrator)
        self.passthrough_names = frozenset(self.passthrough.values())
        self._principals: dict[tuple[str, str | None], KeyPrincipal] = {}
        if audit is not None and audit not in orchestrator.recorders:
            orchestrator.recorders.append(audit)
        if metrics is not None:
            if metrics not in orchestrator.recorders:
                orchestrator.recorders.append(metrics)
            metrics.attach(orchestrator)
        self.ready = False
        self.draining = False
        self._closed = False

    # --- what the routes share ---------------------------------------------------

    def authenticate(
        self, request: HTTPRequest, headers: Mapping[bytes, bytes] | None = None
    ) -> Awaitable[ApiKey]:
        """The key the request carries (await it); 401 when it has none, or not a valid one.

        ``headers``: :func:`~brickwork.gateway.body.request_headers`, if the caller has them.
        """
        value = (request_headers(request) if headers is None else headers).get(b"authorization")
        # (The key store's own coroutine, not one more around it: this is on every request.)
        return self.keys.authenticate(bearer(None if value is None else value.decode("latin-1")))

    async def authenticate_admin(self, request: HTTPRequest) -> ApiKey:
        key = await self.authenticate(request)
        require_admin(key)
        return key

    def principal(self, key: ApiKey, model: str | None = None) -> KeyPrincipal:
        # Immutable, and the same for the same key object and model: kept, not
        # rebuilt for every request (a key the store re-read is a new object).
        found = self._principals.get((key.id, model))
        if found is not None and found.key is key:
            return found
        plugin = None
        if model is not None:
            plugin = self.passthrough.get(model.partition(":")[0])
        principal = KeyPrincipal(key, self.passthrough_names, model, plugin)
        if len(self._principals) >= _PRINCIPALS:
            self._principals.clear()
        self._principals[(key.id, model)] = principal
        return principal

    async def dispatch(
        self,
        key: ApiKey,
        request: Request,
        *,
        model: str | None = None,
        size: int = 0,
        on_text: TextSink | None = None,
    ) -> Envelope:
        """Run one request for ``key``: the key's own limits, then the orchestrator.

        ``model`` is the ``provider:model`` a pass-through request names; ``size``
        (bytes of input) sizes the key's token estimate; ``on_text`` takes the run's
        text as it streams (see :meth:`Orchestrator.handle`).
        """
        principal = self.principal(key, model)
        if self.quota.unlimited(key):  # nothing to admit or settle
            return await self.orchestrator.handle(request, principal=principal, on_text=on_text)
        # The same estimate the orchestrator's rate limit makes: ≈4 bytes a token.
        permit = await self.quota.admit(key, tokens=max(1, size // 4))
        try:
            envelope = await self.orchestrator.handle(request, principal=principal, on_text=on_text)
        except BrickworkError as exc:  # a failed call may still have paid for models
            await self.quota.settle(permit, cost=exc.cost, tokens=exc.tokens or None)
            raise
        except BaseException:
            await self.quota.settle(permit, cost=0.0, tokens=None)
            raise
        await self.quota.settle(permit, cost=envelope.cost, tokens=envelope.usage.total_tokens)
        return envelope

    # --- lifecycle -----------------------------------------------------------------

    async def start(self) -> None:
        self.ready = True
        self.draining = False

    def drain(self) -> None:
        """Stop being ready (the load balancer stops sending); requests in flight go on."""
        self.draining = True

    async def aclose(self) -> None:
        """Close after the server drained: providers and state, the audit log (flushed), keys."""
        if self._closed:
            return
        self._closed = True
        self.ready = False
        self.draining = True
        # The runtime first (providers, state), so nothing records after the audit
        # log closed; its close writes out every record still queued.
        for what, closer in (
            ("runtime", self.orchestrator),
            ("audit log", self.audit),
            ("key store", self.keys),
        ):
            if not isinstance(closer, Closable):
                continue
            try:
                await closer.aclose()
            except Exception:
                log.exception("closing the %s failed", what)

    # --- the application ------------------------------------------------------------

    def routes(self) -> list[Route]:
        routes: list[Route] = []
        # Starlette tries routes in order: the ones that carry the traffic go first.
        for api in (OpenAIAPI(self), PluginsAPI(self), HealthAPI(self), AdminAPI(self), OpenAPIDocs(self)):
            routes.extend(api.routes())
        return routes

    def app(self) -> Starlette:
        """The ASGI application. Its lifespan starts the gateway and closes it on shutdown."""

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await self.start()
            try:
                yield
            finally:
                await self.aclose()

        async def http_error(request: HTTPRequest, exc: Exception) -> Response:
            # Starlette's own 404 (no route) and 405 (wrong method), in our error shape.
            status = exc.status_code if isinstance(exc, HTTPException) else 500
            if status == 405:
                allowed = (exc.headers or {}).get("allow", "") if isinstance(exc, HTTPException) else ""
                response = error_response(
                    MethodNotAllowedError(f"{request.method} is not allowed here (allowed: {allowed or '-'})")
                )
                if allowed:
                    response.headers["allow"] = allowed
                return response
            if status == 404:
                path = request.url.path[:200]
                return error_response(RouteNotFoundError(f"no route {request.method} {path}"))
            return internal_error_response(exc)

        return _Application(
            routes=self.routes(),
            exception_handlers={HTTPException: http_error, Exception: _unhandled},
            lifespan=lifespan,
        )


#: The routes that carry the traffic, by exact path: dispatched straight to their
#: endpoint. (Their endpoints turn every error into a response themselves, so the
#: error middleware and the router add nothing there but CPU per request.)
_FAST_PATHS = frozenset({"/v1/chat/completions", "/v1/embeddings", "/v1/route"})


class _Application(Starlette):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._fast: dict[tuple[str, str], Endpoint] = {}
        for route in self.routes:
            if isinstance(route, Route) and route.path in _FAST_PATHS:
                for method in route.methods or ():
                    self._fast[(method, route.path)] = route.endpoint

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            endpoint = self._fast.get((scope["method"], scope["path"]))
            if endpoint is not None and not scope.get("root_path"):
                scope["app"] = self
                response = await endpoint(HTTPRequest(scope, receive))
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def _unhandled(request: HTTPRequest, exc: Exception) -> Response:
    return internal_error_response(exc)
