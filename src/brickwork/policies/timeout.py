"""Timeouts: a total deadline for a run, and a per-attempt limit inside it."""

from __future__ import annotations

from brickwork.contracts.clock import Clock

__all__ = ["Deadline"]


class Deadline:
    """A point in (injected) monotonic time by which a run must finish."""

    def __init__(self, clock: Clock, seconds: float) -> None:
        self.clock = clock
        self.seconds = seconds
        self.at = clock.now() + seconds

    def remaining(self) -> float:
        return max(0.0, self.at - self.clock.now())

    #: How early an event loop's timer may fire (uvloop's fire up to about half a
    #: millisecond before the monotonic clock reaches them).
    slack = 0.005

    def expired(self) -> bool:
        """The deadline passed (or is within :attr:`slack` of it: its timer fired)."""
        return self.clock.now() >= self.at - self.slack

    def attempt(self, per_attempt: float | None) -> float:
        """Seconds allowed for one attempt: its own limit, never past the deadline."""
        left = self.remaining()
        return left if per_attempt is None else min(per_attempt, left)

    def child(self, seconds: float) -> Deadline:
        """A nested deadline that can only be earlier than this one."""
        return Deadline(self.clock, min(seconds, self.remaining()))
