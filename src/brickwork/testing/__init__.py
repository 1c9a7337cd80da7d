"""Public test doubles and the plugin conformance suite.

:mod:`brickwork.testing.upstream` (an HTTP server, so it imports ``aiohttp.web``)
loads on first use of its names.
"""

from typing import TYPE_CHECKING, Any

from brickwork.testing.clock import FakeClock
from brickwork.testing.contract import PluginContractTests
from brickwork.testing.providers import (
    Delay,
    FakeProvider,
    FunctionProvider,
    forbid_real_providers,
    rate_limited,
    sample_from_schema,
    server_error,
    timeout,
)

if TYPE_CHECKING:
    from brickwork.testing.upstream import FakeUpstream, Fault, RecordedRequest

__all__ = [
    "Delay",
    "FakeClock",
    "FakeProvider",
    "FakeUpstream",
    "Fault",
    "FunctionProvider",
    "PluginContractTests",
    "RecordedRequest",
    "forbid_real_providers",
    "rate_limited",
    "sample_from_schema",
    "server_error",
    "timeout",
]

_LAZY = {"FakeUpstream", "Fault", "RecordedRequest"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from brickwork.testing import upstream

        return getattr(upstream, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
