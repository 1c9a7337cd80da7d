"""The policies' state behind one atomic interface; in memory (one process) today."""

from brickwork.state.base import (
    BreakerMode,
    BreakerOutcome,
    BreakerPermit,
    BreakerSnapshot,
    Reservation,
    StateBackend,
    WindowGrant,
    WindowItem,
)
from brickwork.state.memory import MemoryState

__all__ = [
    "BreakerMode",
    "BreakerOutcome",
    "BreakerPermit",
    "BreakerSnapshot",
    "MemoryState",
    "Reservation",
    "StateBackend",
    "WindowGrant",
    "WindowItem",
]
