"""Pure types of Brickwork: plugin contract, requests, envelopes, policy, errors. No I/O."""

from brickwork.contracts.clock import Clock, SystemClock
from brickwork.contracts.errors import *  # noqa: F403 - the error tree is re-exported whole
from brickwork.contracts.errors import __all__ as _errors_all
from brickwork.contracts.plugin import (
    PERMISSIONS,
    Context,
    Example,
    ModelClient,
    Plugin,
    PluginInput,
    PluginOutput,
    Prompt,
)
from brickwork.contracts.policy import (
    BreakerPolicy,
    BudgetPolicy,
    BulkheadPolicy,
    CachePolicy,
    FallbackPolicy,
    Policy,
    RateLimitPolicy,
    RetryPolicy,
    TimeoutPolicy,
)
from brickwork.contracts.provider import (
    Completion,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    Message,
    ModelId,
    Provider,
    ProviderFactory,
    ProviderSettings,
    StreamChunk,
    Usage,
)
from brickwork.contracts.record import CallRecord, Recorder
from brickwork.contracts.refs import PluginRef, Version
from brickwork.contracts.request import Attempt, Envelope, Request, RouteDecision
from brickwork.contracts.tracing import Span, Tracer

__all__ = [
    *_errors_all,
    "PERMISSIONS",
    "Attempt",
    "BreakerPolicy",
    "BudgetPolicy",
    "BulkheadPolicy",
    "CachePolicy",
    "CallRecord",
    "Clock",
    "Completion",
    "CompletionRequest",
    "Context",
    "EmbedRequest",
    "Embeddings",
    "Envelope",
    "Example",
    "FallbackPolicy",
    "Message",
    "ModelClient",
    "ModelId",
    "Plugin",
    "PluginInput",
    "PluginOutput",
    "PluginRef",
    "Policy",
    "Prompt",
    "Provider",
    "ProviderFactory",
    "ProviderSettings",
    "RateLimitPolicy",
    "Recorder",
    "Request",
    "RetryPolicy",
    "RouteDecision",
    "Span",
    "StreamChunk",
    "SystemClock",
    "TimeoutPolicy",
    "Tracer",
    "Usage",
    "Version",
]
