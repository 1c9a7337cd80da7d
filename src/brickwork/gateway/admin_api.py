"""The admin API (admin keys only): API keys and plugin labels.

* ``POST /v1/admin/keys`` — create a key; the raw key is in this response only.
* ``GET /v1/admin/keys`` — every key, without secrets.
* ``DELETE /v1/admin/keys/{id}`` — revoke (effective at once on this replica).
* ``PUT /v1/admin/plugins/{name}/labels/{label}`` — point a label at a version.
* ``DELETE /v1/admin/plugins/{name}/labels/{label}`` — remove a label.

Admin actions are logged with the acting key's id, never a raw key.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from brickwork.contracts.errors import InvalidRequestError, PluginValidationError
from brickwork.contracts.policy import BudgetPolicy, RateLimitPolicy
from brickwork.gateway.body import parse_body, read_body
from brickwork.gateway.responses import endpoint, json_response

if TYPE_CHECKING:
    from brickwork.gateway.app import Gateway

__all__ = ["AdminAPI", "KeyCreateRequest", "LabelRequest"]

log = logging.getLogger(__name__)


class KeyCreateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=128)
    plugins: list[str] = Field(
        min_length=1, description="fnmatch patterns over plugin names and pass-through model ids"
    )
    admin: bool = False
    expires_at: float | None = Field(default=None, description="wall-clock seconds since the epoch")
    expires_in: float | None = Field(
        default=None, gt=0, description="seconds from now (instead of expires_at)"
    )
    rate_limit: RateLimitPolicy | None = None
    budget: BudgetPolicy | None = None
    name: str = Field(default="", max_length=200)


class LabelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(min_length=1, max_length=64, description="an exact version, e.g. 1.2.0")


class AdminAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        return [
            Route("/v1/admin/keys", endpoint(self.create_key), methods=["POST"]),
            Route("/v1/admin/keys", endpoint(self.list_keys), methods=["GET"]),
            Route("/v1/admin/keys/{key_id}", endpoint(self.revoke_key), methods=["DELETE"]),
            Route("/v1/admin/plugins/{name}/labels/{label}", endpoint(self.set_label), methods=["PUT"]),
            Route("/v1/admin/plugins/{name}/labels/{label}", endpoint(self.delete_label), methods=["DELETE"]),
        ]

    async def create_key(self, request: HTTPRequest) -> Response:
        actor = await self.gateway.authenticate_admin(request)
        body = parse_body(KeyCreateRequest, await read_body(request, self.gateway.settings.max_body_bytes))
        if body.expires_at is not None and body.expires_in is not None:
            raise InvalidRequestError("give expires_at or expires_in, not both")
        expires_at = body.expires_at
        if body.expires_in is not None:
            expires_at = self.gateway.orchestrator.clock.time() + body.expires_in
        key, raw = await self.gateway.keys.create(
            tenant=body.tenant,
            plugins=body.plugins,
            admin=body.admin,
            expires_at=expires_at,
            rate_limit=body.rate_limit.model_dump() if body.rate_limit else None,
            budget=body.budget.model_dump() if body.budget else None,
            name=body.name,
        )
        log.info("admin key %s created key %s for tenant %r", actor.id, key.id, key.tenant)
        return json_response({"key": raw, **key.to_dict()}, status=201)

    async def list_keys(self, request: HTTPRequest) -> Response:
        await self.gateway.authenticate_admin(request)
        return json_response({"keys": [key.to_dict() for key in await self.gateway.keys.list()]})

    async def revoke_key(self, request: HTTPRequest) -> Response:
        actor = await self.gateway.authenticate_admin(request)
        key_id = request.path_params["key_id"]
        await self.gateway.keys.revoke(key_id)
        log.info("admin key %s revoked key %r", actor.id, key_id[:64])
        return json_response({"id": key_id, "revoked": True})

    async def set_label(self, request: HTTPRequest) -> Response:
        actor = await self.gateway.authenticate_admin(request)
        name, label = request.path_params["name"], request.path_params["label"]
        body = parse_body(LabelRequest, await read_body(request, self.gateway.settings.max_body_bytes))
        registry = self.gateway.orchestrator.registry
        try:
            registry.relabel(name, label, body.version)
        except PluginValidationError as exc:  # a bad label from the caller, not a broken plugin
            raise InvalidRequestError(exc.message, plugin=exc.plugin) from None
        log.info("admin key %s pointed %r label %r at %r", actor.id, name, label, body.version)
        return json_response({"name": name, "labels": registry.labels(name)})

    async def delete_label(self, request: HTTPRequest) -> Response:
        actor = await self.gateway.authenticate_admin(request)
        name, label = request.path_params["name"], request.path_params["label"]
        registry = self.gateway.orchestrator.registry
        registry.unlabel(name, label)
        log.info("admin key %s removed %r label %r", actor.id, name, label)
        return json_response({"name": name, "labels": registry.labels(name)})
