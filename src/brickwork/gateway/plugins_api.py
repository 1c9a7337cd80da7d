"""Brickwork's own API: list plugins, invoke one, or let the router choose.

* ``GET /v1/plugins`` — the plugins the key may use: versions, labels, input and
  output JSON schemas, policy, and each version's health (breaker, bulkhead).
* ``GET /v1/plugins/{name}`` — one of them.
* ``POST /v1/plugins/{ref}/invoke`` — ``ref`` is ``name``, ``name@version`` or
  ``name@label``; answers with the envelope. Takes an ``Idempotency-Key`` header.
* ``POST /v1/route`` — no plugin named: metadata rules, intent or the default decide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from brickwork.contracts.errors import InvalidRequestError, PermissionDeniedError, PluginNotFoundError
from brickwork.contracts.refs import NAME_RE, PluginRef
from brickwork.contracts.request import Request
from brickwork.gateway.body import parse_body, read_body
from brickwork.gateway.idempotency import StoredResponse
from brickwork.gateway.responses import endpoint, json_response
from brickwork.gateway.schemas import InvokeRequest, RouteRequest
from brickwork.policies.cache import canonical_json
from brickwork.runtime.registry import PluginEntry
from brickwork.storage.keys import ApiKey

if TYPE_CHECKING:
    from brickwork.gateway.app import Gateway

__all__ = ["PluginsAPI"]

_MAX_IDEMPOTENCY_KEY = 256


class PluginsAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        return [
            Route("/v1/plugins/{ref}/invoke", endpoint(self.invoke), methods=["POST"]),
            Route("/v1/route", endpoint(self.route), methods=["POST"]),
            Route("/v1/plugins", endpoint(self.list_plugins), methods=["GET"]),
            Route("/v1/plugins/{name}", endpoint(self.get_plugin), methods=["GET"]),
        ]

    # --- reading ---------------------------------------------------------------

    def visible(self, key: ApiKey, name: str) -> bool:
        if name in self.gateway.passthrough_names:
            return key.admin  # scoped by model, not name: shown to operators only
        return key.allows(name)

    async def list_plugins(self, request: HTTPRequest) -> Response:
        key = await self.gateway.authenticate(request)
        registry = self.gateway.orchestrator.registry
        plugins = [await self.describe(name) for name in registry.names() if self.visible(key, name)]
        return json_response({"plugins": plugins})

    async def get_plugin(self, request: HTTPRequest) -> Response:
        key = await self.gateway.authenticate(request)
        name = request.path_params["name"]
        if not NAME_RE.match(name):
            raise InvalidRequestError(f"{name[:80]!r} is not a plugin name (use /v1/plugins/{{name}})")
        if name not in self.gateway.orchestrator.registry.names():
            raise PluginNotFoundError(f"no plugin named {name!r}", plugin=name)
        if not self.visible(key, name):
            raise PermissionDeniedError(f"this key may not use plugin {name!r}", plugin=name)
        return json_response(await self.describe(name))

    async def describe(self, name: str) -> dict[str, Any]:
        registry = self.gateway.orchestrator.registry
        default = registry.resolve(name)
        return {
            "name": name,
            "description": default.cls.description,
            "default_version": str(default.version),
            "labels": registry.labels(name),
            "versions": [await self.describe_version(entry) for entry in registry.versions(name)],
        }

    async def describe_version(self, entry: PluginEntry) -> dict[str, Any]:
        health = await self.gateway.orchestrator.health(entry)
        breaker = health.breaker
        return {
            "version": str(entry.version),
            "ref": entry.ref,
            "description": entry.cls.description,
            "model": entry.model,
            "embedding_model": entry.embedding_model,
            "prompt_version": entry.cls.prompt_version(),
            "permissions": sorted(entry.cls.permissions),
            "policy": entry.policy.model_dump(mode="json"),
            "input_schema": entry.cls.input_type.model_json_schema(),
            "output_schema": entry.cls.output_type.model_json_schema(),
            "health": {
                "breaker": None
                if breaker is None
                else {
                    "state": breaker.mode,
                    "calls": breaker.calls,
                    "failures": breaker.failures,
                    "p95": breaker.p95,
                    "retry_after": breaker.retry_after,
                },
                "in_flight": health.in_flight,
                "queued": health.queued,
            },
        }

    # --- running ---------------------------------------------------------------

    async def invoke(self, request: HTTPRequest) -> Response:
        ref = request.path_params["ref"]
        return await self._run(request, PluginRef.parse(ref), InvokeRequest)

    async def route(self, request: HTTPRequest) -> Response:
        return await self._run(request, None, RouteRequest)

    async def _run(self, request: HTTPRequest, ref: PluginRef | None, model: type[InvokeRequest]) -> Response:
        gateway = self.gateway
        key = await gateway.authenticate(request)
        idempotency_key = request.headers.get("idempotency-key")
        if idempotency_key is not None and not (
            0 < len(idempotency_key) <= _MAX_IDEMPOTENCY_KEY and idempotency_key.isprintable()
        ):
            raise InvalidRequestError(
                f"Idempotency-Key must be 1–{_MAX_IDEMPOTENCY_KEY} printable characters"
            )
        raw = await read_body(request, gateway.settings.max_body_bytes)
        body = parse_body(model, raw)
        call = Request(
            plugin=str(ref) if ref is not None else None,
            input=body.input,
            metadata=body.metadata,
            tenant=key.tenant,
            subject=body.subject,
            idempotency_key=idempotency_key,
            cache_bypass=body.cache_bypass,
        )

        if idempotency_key is None:
            envelope = await gateway.dispatch(key, call, size=len(raw))
            return Response(
                envelope.__pydantic_serializer__.to_json(envelope),
                headers={"x-brickwork-trace-id": envelope.trace_id},
                media_type="application/json",
            )
        # The request as parsed, so spacing or key order in the body does not matter.
        fingerprint = gateway.idempotency.fingerprint(
            "POST", request.url.path, canonical_json(body.model_dump(mode="json")).encode()
        )

        async def run() -> StoredResponse:
            envelope = await gateway.dispatch(key, call, size=len(raw))
            return StoredResponse(
                fingerprint=fingerprint,
                status=200,
                body=envelope.__pydantic_serializer__.to_json(envelope),
                headers={"x-brickwork-trace-id": envelope.trace_id},
            )

        stored, replayed = await gateway.idempotency.run(key.id, idempotency_key, fingerprint, run)
        headers = dict(stored.headers)
        if replayed:
            headers["idempotent-replayed"] = "true"
        return Response(stored.body, status_code=stored.status, headers=headers, media_type=stored.media_type)
