"""Step 8, record: the recorders the runtime ships.

The record and the recorder interface are contracts
(:mod:`brickwork.contracts.record`); these two keep records in memory or log them.
"""

from __future__ import annotations

import logging
from collections import deque

from brickwork.contracts.record import CallRecord

__all__ = ["LogRecorder", "MemoryRecorder"]


class MemoryRecorder:
    """Keeps the last ``size`` records (for the CLI, tests and debugging)."""

    def __init__(self, size: int = 1_000) -> None:
        self.records: deque[CallRecord] = deque(maxlen=size)

    async def record(self, record: CallRecord) -> None:
        self.records.append(record)


class LogRecorder:
    """One structured log line per request (no input or output text)."""

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("brickwork.calls")

    async def record(self, record: CallRecord) -> None:
        if self.logger.isEnabledFor(logging.INFO):
            self.logger.info("call", extra={"brickwork": record.to_dict()})
