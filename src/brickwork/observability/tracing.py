"""OpenTelemetry traces following the GenAI semantic conventions.

Off by default and then free: the orchestrator holds ``None`` and makes no
tracing call at all. When configured, each request gets a span, each plugin run a
child span (``brickwork.plugin.name`` / ``brickwork.plugin.version``), and each
model call a child span named ``{operation} {model}`` with the ``gen_ai.*``
attributes (operation, provider, request model, token usage, finish reason).

No span carries input or output text, keys or secrets: only names, versions,
codes and counts.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from brickwork.contracts.errors import BrickworkError, ConfigurationError

__all__ = ["Exporter", "Tracing", "configure_tracing"]

Exporter = Literal["none", "console", "otlp", "memory"]


class Tracing:
    """Opens Brickwork's spans on an OpenTelemetry tracer."""

    def __init__(self, tracer: Tracer, *, exporter: Any = None) -> None:
        self.tracer = tracer
        #: The exporter behind it when :func:`configure_tracing` built it (tests read
        #: an ``InMemorySpanExporter`` here).
        self.exporter = exporter

    @contextmanager
    def request(self, *, trace_id: str, tenant: str, depth: int) -> Iterator[Span]:
        with self._span(
            "brickwork.request",
            {"brickwork.trace_id": trace_id, "brickwork.tenant": tenant, "brickwork.depth": depth},
        ) as span:
            yield span

    @contextmanager
    def plugin(self, *, name: str, version: str, prompt_version: str | None) -> Iterator[Span]:
        attributes: dict[str, Any] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": name,
            "brickwork.plugin.name": name,
            "brickwork.plugin.version": version,
        }
        if prompt_version:
            attributes["brickwork.prompt.version"] = prompt_version
        with self._span(f"invoke_agent {name}@{version}", attributes) as span:
            yield span

    @contextmanager
    def model_call(self, *, operation: str, provider: str, model: str) -> Iterator[Span]:
        attributes = {
            "gen_ai.operation.name": operation,
            "gen_ai.provider.name": provider,
            "gen_ai.system": provider,
            "gen_ai.request.model": model,
        }
        # Not made the current span: a model call has no children, and a stream's span
        # stays open while the plugin's own code runs between its chunks.
        span = self.tracer.start_span(f"{operation} {model}", attributes=attributes)
        try:
            with _marked(span):
                yield span
        finally:
            span.end()

    @contextmanager
    def _span(self, name: str, attributes: dict[str, Any]) -> Iterator[Span]:
        with (
            self.tracer.start_as_current_span(
                name, attributes=attributes, record_exception=False, set_status_on_exception=False
            ) as span,
            _marked(span),
        ):
            yield span


@contextmanager
def _marked(span: Span) -> Iterator[None]:
    """An exception leaving the block marks ``span`` failed with the error's code."""
    try:
        yield
    except BrickworkError as exc:
        span.set_attribute("error.type", exc.code)
        span.set_status(Status(StatusCode.ERROR, exc.code))
        raise
    except BaseException as exc:
        span.set_attribute("error.type", type(exc).__name__)
        span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise


def configure_tracing(
    exporter: Exporter = "none",
    *,
    endpoint: str | None = None,
    service_name: str = "brickwork",
) -> Tracing | None:
    """A :class:`Tracing` with its own tracer provider, or ``None`` for ``"none"``.

    ``console`` prints spans; ``memory`` keeps them (tests); ``otlp`` sends them over
    OTLP/HTTP and needs ``pip install opentelemetry-exporter-otlp-proto-http``.
    """
    if exporter == "none":
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
        SpanExporter,
    )

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    span_exporter: SpanExporter
    if exporter == "memory":
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        span_exporter = InMemorySpanExporter()
        provider.add_span_processor(SimpleSpanProcessor(span_exporter))
    elif exporter == "console":
        span_exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    else:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigurationError(
                "tracing exporter 'otlp' needs `pip install opentelemetry-exporter-otlp-proto-http`"
            ) from exc
        span_exporter = OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(span_exporter))
    return Tracing(trace.get_tracer("brickwork", tracer_provider=provider), exporter=span_exporter)
