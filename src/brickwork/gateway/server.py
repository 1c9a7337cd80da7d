"""Serving: open the stores, build the gateway, run it under uvicorn (uvloop + httptools).

On SIGTERM or SIGINT the gateway stops being ready (``/readyz`` → 503), uvicorn
stops accepting connections and waits up to ``graceful_timeout`` seconds for the
requests in flight; then the gateway closes the providers and state, flushes and
closes the audit log, and closes the key store.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, cast

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from brickwork.bootstrap import load
from brickwork.contracts.record import Recorder
from brickwork.gateway.app import Gateway, MetricsSource
from brickwork.gateway.settings import GatewaySettings
from brickwork.runtime.recording import MemoryRecorder
from brickwork.storage.keys import open_key_store
from brickwork.storage.urls import default_audit_url, default_keys_url

__all__ = ["HttpProtocol", "ServeOptions", "open_gateway", "serve"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``brickwork serve`` takes.

    Attributes:
        config: the runtime config file (``None``: ``$BRICKWORK_CONFIG`` or defaults).
        keys: key store URL (``None``: ``$BRICKWORK_KEYS`` or the default file).
        audit: audit log URL (``None``: ``$BRICKWORK_AUDIT`` or the default file);
            ``"off"`` for none (not for production: answers are then unaudited).
        metrics: record and serve Prometheus metrics.
    """

    config: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    keys: str | None = None
    audit: str | None = None
    metrics: bool = True
    settings: GatewaySettings = field(default_factory=GatewaySettings)
    graceful_timeout: int = 30
    #: The garbage collector's thresholds while serving. Python's default
    #: (700, 10, 10) collects the youngest generation every 700 new objects; a
    #: request makes a few hundred, and with many in flight each collection scans
    #: them all: 10,000 cut the gateway's CPU per request by about a sixth
    #: (``bench/gateway.py``) for a few MB more between collections. ``None``
    #: keeps Python's own.
    gc_threshold: tuple[int, int, int] | None = (10_000, 20, 20)
    log_level: str = "info"
    log_json: bool = False
    access_log: bool = False


def open_gateway(options: ServeOptions) -> Gateway:
    """Build the runtime from the config and open the stores the options name."""
    orchestrator = load(options.config)
    # A server's records go to the audit log and the metrics; the runtime's default
    # keeps the last thousand in memory too, for nobody to read here, and makes every
    # one of them live long enough for the garbage collector to scan it again and again.
    orchestrator.recorders = [r for r in orchestrator.recorders if not isinstance(r, MemoryRecorder)]
    keys = open_key_store(options.keys or default_keys_url(), cache_ttl=options.settings.auth_cache_ttl)
    audit: Recorder | None = None
    if options.audit != "off":
        from brickwork.storage.audit import open_audit_log

        audit = open_audit_log(options.audit or default_audit_url())
    metrics: MetricsSource | None = None
    if options.metrics:
        from brickwork.observability.metrics import MetricsRecorder

        metrics = MetricsRecorder()
    return Gateway(orchestrator, keys=keys, audit=audit, metrics=metrics, settings=options.settings)


class _CoalescedWrites:
    """A connection's transport whose writes go out once per event-loop iteration.

    uvicorn writes a response's head and its body separately, and on an idle
    socket each write is its own ``send()`` system call. Deferred to the end of
    the loop iteration (``call_soon``), the writes of one iteration leave in one:
    one system call per response instead of two. Everything else is the
    transport's own; closing writes what waits first.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._waiting: list[bytes] = []

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self._waiting:
            self._loop.call_soon(self._flush)
        self._waiting.append(bytes(data))

    def writelines(self, chunks: Iterable[bytes | bytearray | memoryview]) -> None:
        for chunk in chunks:
            self.write(chunk)

    def _flush(self) -> None:
        if self._waiting:
            data = b"".join(self._waiting)
            self._waiting.clear()
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._waiting.clear()
        self._transport.abort()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + sum(len(chunk) for chunk in self._waiting)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with one write per response (:class:`_CoalescedWrites`)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        coalesced = cast(asyncio.Transport, _CoalescedWrites(transport, asyncio.get_running_loop()))
        super().connection_made(coalesced)


class _Server(uvicorn.Server):
    """uvicorn, telling the gateway to drain as soon as a shutdown signal arrives."""

    def __init__(self, config: uvicorn.Config, gateway: Gateway) -> None:
        super().__init__(config)
        self.gateway = gateway

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.gateway.drain()
        super().handle_exit(sig, frame)


def tune_gc(options: ServeOptions) -> None:
    """Set the garbage collector up for serving (see :attr:`ServeOptions.gc_threshold`)."""
    # Everything loaded so far (plugins, providers, libraries) lives as long as the
    # process: freezing it keeps full garbage collections, which would otherwise
    # scan it all again and again, from pausing requests for tens of milliseconds.
    gc.collect()
    gc.freeze()
    if options.gc_threshold is not None:
        gc.set_threshold(*options.gc_threshold)


def serve(options: ServeOptions) -> None:
    """Run the gateway until SIGTERM/SIGINT; drain, then flush the audit log."""
    from brickwork.observability.logging import configure_logging

    configure_logging(level=options.log_level, json=options.log_json)
    gateway = open_gateway(options)
    config = uvicorn.Config(
        gateway.app(),
        host=options.host,
        port=options.port,
        loop="uvloop",
        http=HttpProtocol,  # httptools
        lifespan="on",
        access_log=options.access_log,
        log_config=None,  # logging is configured above: one format for every logger
        timeout_graceful_shutdown=options.graceful_timeout,
        server_header=False,
        # X-Forwarded-For/-Proto only change the client address and scheme, which
        # only the access log shows (no route reads them): without it, one ASGI
        # layer less on every request.
        proxy_headers=options.access_log,
    )
    tune_gc(options)
    log.info("serving on http://%s:%d", options.host, options.port)
    _Server(config, gateway).run()
