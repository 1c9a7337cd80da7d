"""Public test doubles and the plugin conformance suite."""

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

__all__ = [
    "Delay",
    "FakeClock",
    "FakeProvider",
    "FunctionProvider",
    "PluginContractTests",
    "forbid_real_providers",
    "rate_limited",
    "sample_from_schema",
    "server_error",
    "timeout",
]
