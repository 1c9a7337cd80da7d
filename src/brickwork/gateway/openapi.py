"""The OpenAPI 3.1 document at ``/openapi.json``, and ``/docs`` to read it.

Generated from the registry: besides the generic ``/v1/plugins/{ref}/invoke``,
each plugin has its own invoke path whose request and response carry that
plugin's input and output JSON schemas (of its default version). The document is
rebuilt when a plugin is added, removed or relabelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from starlette.requests import Request as HTTPRequest
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

import brickwork
from brickwork.contracts.request import Envelope
from brickwork.gateway.admin_api import KeyCreateRequest, LabelRequest
from brickwork.gateway.responses import endpoint, json_response
from brickwork.gateway.schemas import (
    ChatCompletionRequest,
    EmbeddingRequest,
    ErrorBody,
    InvokeRequest,
    RouteRequest,
)
from brickwork.runtime.registry import PluginEntry

if TYPE_CHECKING:
    from brickwork.gateway.app import Gateway

__all__ = ["OpenAPIDocs", "openapi_document"]

_REF = "#/components/schemas/{model}"

_DOCS_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Brickwork API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


class OpenAPIDocs:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self._document: dict[str, Any] | None = None
        gateway.orchestrator.registry.listeners.append(self._invalidate)

    def _invalidate(self, what: str, ref: str) -> None:
        self._document = None

    def routes(self) -> list[Route]:
        routes = [Route("/openapi.json", endpoint(self.openapi), methods=["GET"])]
        if self.gateway.settings.docs:
            routes.append(Route("/docs", endpoint(self.docs), methods=["GET"]))
        return routes

    async def openapi(self, request: HTTPRequest) -> Response:
        if self._document is None:
            self._document = openapi_document(self.gateway)
        return json_response(self._document)

    async def docs(self, request: HTTPRequest) -> Response:
        return HTMLResponse(_DOCS_PAGE)


def openapi_document(gateway: Gateway) -> dict[str, Any]:
    """The whole document for the gateway's current registry."""
    registry = gateway.orchestrator.registry
    plugins = [registry.resolve(name) for name in registry.names() if name not in gateway.passthrough_names]
    fixed: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (Envelope, "serialization"),
        (ErrorBody, "serialization"),
        (InvokeRequest, "validation"),
        (RouteRequest, "validation"),
        (ChatCompletionRequest, "validation"),
        (EmbeddingRequest, "validation"),
        (KeyCreateRequest, "validation"),
        (LabelRequest, "validation"),
    ]
    per_plugin: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for entry in plugins:
        per_plugin += [(entry.cls.input_type, "validation"), (entry.cls.output_type, "serialization")]
    refs, defs = models_json_schema(fixed + per_plugin, ref_template=_REF)

    def ref(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
        return dict(refs[(model, mode)])

    envelope, error = ref(Envelope, "serialization"), ref(ErrorBody, "serialization")
    paths: dict[str, Any] = {
        "/healthz": {"get": _public("Liveness", {"200": _json_ok({"type": "object"})})},
        "/readyz": {
            "get": _public(
                "Readiness (503 while starting or draining)", {"200": _json_ok({"type": "object"})}
            )
        },
        "/metrics": {
            "get": _public("Prometheus metrics", {"200": {"description": "text exposition format"}})
        },
        "/v1/plugins": {"get": _op("List the plugins this key may use", {"type": "object"}, error)},
        "/v1/plugins/{name}": {
            "get": _op("Describe one plugin", {"type": "object"}, error, params=[_path("name")])
        },
        "/v1/plugins/{ref}/invoke": {
            "post": _op(
                "Invoke a plugin by ref: name, name@version or name@label",
                envelope,
                error,
                params=[_path("ref"), _idempotency()],
                body=ref(InvokeRequest, "validation"),
            )
        },
        "/v1/route": {
            "post": _op(
                "Let the router choose the plugin (metadata rules, intent, default)",
                envelope,
                error,
                params=[_idempotency()],
                body=ref(RouteRequest, "validation"),
            )
        },
        "/v1/models": {"get": _op("OpenAI-compatible: list models (plugin refs)", {"type": "object"}, error)},
        "/v1/chat/completions": {
            "post": _op(
                "OpenAI-compatible chat completion (`stream: true` for Server-Sent Events)",
                {"type": "object"},
                error,
                body=ref(ChatCompletionRequest, "validation"),
                streams=True,
            )
        },
        "/v1/embeddings": {
            "post": _op(
                "OpenAI-compatible embeddings",
                {"type": "object"},
                error,
                body=ref(EmbeddingRequest, "validation"),
            )
        },
        "/v1/admin/keys": {
            "post": _op(
                "Create an API key (admin); the raw key is returned once",
                {"type": "object"},
                error,
                body=ref(KeyCreateRequest, "validation"),
                status="201",
            ),
            "get": _op("List API keys (admin)", {"type": "object"}, error),
        },
        "/v1/admin/keys/{key_id}": {
            "delete": _op("Revoke an API key (admin)", {"type": "object"}, error, params=[_path("key_id")])
        },
        "/v1/admin/plugins/{name}/labels/{label}": {
            "put": _op(
                "Point a label at a version (admin)",
                {"type": "object"},
                error,
                params=[_path("name"), _path("label")],
                body=ref(LabelRequest, "validation"),
            ),
            "delete": _op(
                "Remove a label (admin)", {"type": "object"}, error, params=[_path("name"), _path("label")]
            ),
        },
    }
    for entry in plugins:
        paths[f"/v1/plugins/{entry.name}/invoke"] = {
            "post": _op(
                f"Invoke {entry.name}: {entry.cls.description}",
                {
                    "allOf": [
                        envelope,
                        {"properties": {"output": ref(entry.cls.output_type, "serialization")}},
                    ]
                },
                error,
                params=[_idempotency()],
                body=_invoke_body(entry, ref(entry.cls.input_type, "validation")),
            )
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Brickwork",
            "version": brickwork.__version__,
            "description": "LLM capabilities as plugins, each with its own contract, versions and policy.",
        },
        "paths": paths,
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}],
    }


def _invoke_body(entry: PluginEntry, input_schema: dict[str, Any]) -> dict[str, Any]:
    accepts_text = "text" in entry.cls.input_type.model_fields
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["input"],
        "properties": {
            "input": {"anyOf": [input_schema, {"type": "string"}]} if accepts_text else input_schema,
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "subject": {"anyOf": [{"type": "string", "maxLength": 256}, {"type": "null"}]},
            "cache_bypass": {"type": "boolean"},
        },
    }


def _json_ok(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": "OK", "content": {"application/json": {"schema": schema}}}


def _public(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
    return {"summary": summary, "security": [], "responses": responses}


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _idempotency() -> dict[str, Any]:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
        "description": "replay the first answer for a retried request",
    }


_ERROR_STATUSES = {
    "400": "Malformed request, bad ref or wrong types",
    "401": "Missing, malformed, unknown, revoked or expired API key",
    "402": "Budget spent",
    "403": "The key may not use this plugin, model or endpoint",
    "404": "No such plugin, version, label, model or route",
    "405": "Method not allowed",
    "409": "A request with this Idempotency-Key is still running",
    "413": "Body too large",
    "415": "Body is not JSON",
    "422": "Input does not fit the plugin's contract, or no route",
    "429": "Rate limited (see Retry-After)",
    "502": "The plugin or its provider failed",
    "503": "Unavailable: breaker open, bulkhead full, record failed (see Retry-After)",
    "504": "Deadline exceeded",
}


def _op(
    summary: str,
    ok: dict[str, Any],
    error: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    status: str = "200",
    streams: bool = False,
) -> dict[str, Any]:
    content: dict[str, Any] = {"application/json": {"schema": ok}}
    if streams:
        content["text/event-stream"] = {"schema": {"type": "string"}}
    responses: dict[str, Any] = {status: {"description": "OK", "content": content}}
    for code, description in _ERROR_STATUSES.items():
        responses[code] = {"description": description, "content": {"application/json": {"schema": error}}}
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if params:
        operation["parameters"] = params
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return operation
