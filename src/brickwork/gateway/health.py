"""``/healthz`` (the process answers), ``/readyz`` (send it traffic) and ``/metrics``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request as HTTPRequest
from starlette.responses import Response
from starlette.routing import Route

from brickwork.gateway.responses import endpoint, json_response

if TYPE_CHECKING:
    from brickwork.gateway.app import Gateway

__all__ = ["HealthAPI"]


class HealthAPI:
    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", endpoint(self.healthz), methods=["GET"]),
            Route("/readyz", endpoint(self.readyz), methods=["GET"]),
            Route("/metrics", endpoint(self.metrics), methods=["GET"]),
        ]

    async def healthz(self, request: HTTPRequest) -> Response:
        """Liveness: the process is up and its event loop answers."""
        return json_response({"status": "ok"})

    async def readyz(self, request: HTTPRequest) -> Response:
        """Readiness: started and not draining (503 while shutting down)."""
        gateway = self.gateway
        if gateway.draining or not gateway.ready:
            status = "draining" if gateway.draining else "starting"
            return json_response({"status": status}, status=503, headers={"retry-after": "1"})
        return json_response({"status": "ready", "plugins": len(gateway.orchestrator.registry.names())})

    async def metrics(self, request: HTTPRequest) -> Response:
        """Prometheus text format. Labels hold plugin, version, route and outcome — never a key."""
        gateway = self.gateway
        if not gateway.settings.public_metrics:
            await gateway.authenticate_admin(request)
        if gateway.metrics is None:
            return Response(b"", media_type="text/plain; version=0.0.4; charset=utf-8")
        await gateway.metrics.refresh()  # live breaker and bulkhead gauges
        body, content_type = gateway.metrics.render()
        return Response(body, media_type=content_type)
