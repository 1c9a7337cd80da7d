"""Metrics (Prometheus) and logging (JSON lines, secrets redacted)."""

from brickwork.observability.logging import (
    JsonFormatter,
    RedactingFilter,
    configure_logging,
    redact,
    redact_text,
)
from brickwork.observability.metrics import MetricsRecorder

__all__ = [
    "JsonFormatter",
    "MetricsRecorder",
    "RedactingFilter",
    "configure_logging",
    "redact",
    "redact_text",
]
