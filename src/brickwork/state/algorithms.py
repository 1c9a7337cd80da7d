"""The pure algorithms behind the state operations: a sliding-window log and the
circuit-breaker state machine.

They hold no locks and do no I/O. The memory backend runs them under a lock; a
backend shared by several processes would run the same steps in one atomic
operation. Keeping them here, apart from storage, lets the property tests check
them against simple reference models.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from dataclasses import dataclass, field

from brickwork.contracts.policy import BreakerPolicy
from brickwork.state.base import BreakerMode, BreakerOutcome, BreakerPermit, BreakerSnapshot

__all__ = ["BreakerMachine", "SlidingLog", "p95"]


@dataclass
class SlidingLog:
    """Entries ``(time, amount, id)``; an entry counts while ``now - time < window``.

    A sliding log has no window edge, so a limit of N never lets 2N through
    around a boundary the way fixed windows do.
    """

    entries: deque[list[float | str]] = field(default_factory=deque)
    total: float = 0.0

    def expire(self, now: float, window: float) -> None:
        while self.entries and float(self.entries[0][0]) + window <= now:
            _, amount, _ = self.entries.popleft()
            self.total -= float(amount)
        if not self.entries:
            self.total = 0.0  # no float drift once empty

    def fits(self, amount: float, limit: float) -> bool:
        return self.total + amount <= limit + 1e-9

    def retry_after(self, amount: float, limit: float, now: float, window: float) -> float | None:
        """Seconds until ``amount`` fits, assuming nothing else is added."""
        if amount > limit:
            return None
        need = self.total + amount - limit
        freed = 0.0
        for ts, entry_amount, _ in self.entries:
            freed += float(entry_amount)
            if freed >= need - 1e-9:
                return _until(now, float(ts) + window)
        return 0.0

    def add(self, now: float, amount: float, entry: str) -> None:
        self.entries.append([now, amount, entry])
        self.total += amount

    def remove(self, entry: str) -> None:
        for item in self.entries:
            if item[2] == entry:
                self.total -= float(item[1])
                self.entries.remove(item)
                return

    def adjust(self, entry: str, amount: float) -> None:
        for item in self.entries:
            if item[2] == entry:
                self.total += amount - float(item[1])
                item[1] = amount
                return


def p95(values: list[float]) -> float | None:
    """Nearest-rank 95th percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]


@dataclass
class BreakerMachine:
    """Closed → open on a failure ratio or a p95 latency objective over a window;
    open → half-open after ``open_for``; half-open hands out exactly
    ``half_open_trials`` trial calls and closes only when all of them succeed.

    ``generation`` goes up at every change of mode. A permit carries the generation
    it was given in, and an outcome counts only while that generation lasts: a
    call that began before the breaker opened, or in an earlier half-open spell,
    can neither trip the fresh closed window nor free a trial slot that is not its own.
    """

    mode: BreakerMode = "closed"
    opened_at: float = 0.0
    outcomes: deque[tuple[float, bool, float]] = field(default_factory=deque)
    trials_started: int = 0
    trials_ok: int = 0
    generation: int = 0
    # Kept in step with ``outcomes`` so that a verdict costs O(log n), not O(n):
    # a breaker is consulted on every call of a busy plugin.
    failures: int = 0
    latencies: list[float] = field(default_factory=list)  # sorted
    tracking: bool = False  # ``latencies`` is kept (the policy has a p95 objective)

    def _track(self, policy: BreakerPolicy) -> bool:
        """Keep the sorted latencies only while a p95 objective asks for them: at
        thousands of calls a second, a window's worth of insertions costs more than
        the rest of the breaker."""
        wanted = policy.latency_p95 is not None
        if wanted != self.tracking:
            self.tracking = wanted
            self.latencies = sorted(latency for _, _, latency in self.outcomes) if wanted else []
        return wanted

    def _prune(self, now: float, policy: BreakerPolicy) -> None:
        tracking = self._track(policy)
        while self.outcomes and self.outcomes[0][0] + policy.window <= now:
            _, failed, latency = self.outcomes.popleft()
            self.failures -= failed
            if tracking:
                del self.latencies[bisect.bisect_left(self.latencies, latency)]

    def _add(self, now: float, failed: bool, latency: float, policy: BreakerPolicy) -> None:
        tracking = self._track(policy)  # before the append: a rebuild must not see it twice
        self.outcomes.append((now, failed, latency))
        self.failures += failed
        if tracking:
            bisect.insort(self.latencies, latency)

    def _enter(self, mode: BreakerMode) -> None:
        self.mode = mode
        self.generation += 1
        self.outcomes.clear()
        self.failures = 0
        self.latencies.clear()
        self.trials_started = 0
        self.trials_ok = 0

    def _advance(self, now: float, policy: BreakerPolicy) -> None:
        if self.mode == "open" and now >= self.opened_at + policy.open_for:
            self._enter("half_open")

    def _open(self, now: float) -> None:
        self._enter("open")
        self.opened_at = now

    def acquire(self, now: float, policy: BreakerPolicy) -> BreakerPermit:
        self._advance(now, policy)
        if self.mode == "closed":
            return BreakerPermit(True, "closed", generation=self.generation)
        if self.mode == "open":
            return BreakerPermit(False, "open", retry_after=_until(now, self.opened_at + policy.open_for))
        if self.trials_started < policy.half_open_trials:
            self.trials_started += 1
            return BreakerPermit(True, "half_open", trial=True, generation=self.generation)
        return BreakerPermit(False, "half_open", retry_after=min(1.0, policy.open_for))

    def record(
        self,
        now: float,
        policy: BreakerPolicy,
        outcome: BreakerOutcome,
        latency: float,
        generation: int,
    ) -> BreakerMode:
        """Count the outcome of a call permitted in ``generation``."""
        self._advance(now, policy)
        if generation != self.generation:
            return self.mode  # began in an earlier period: already judged
        if self.mode == "half_open":
            slow = policy.latency_p95 is not None and latency > policy.latency_p95
            if outcome == "ignored":
                self.trials_started = max(0, self.trials_started - 1)
            elif outcome == "failure" or slow:
                self._open(now)
            else:
                self.trials_ok += 1
                if self.trials_ok >= policy.half_open_trials:
                    self._enter("closed")
            return self.mode
        if self.mode != "closed" or outcome == "ignored":
            return self.mode
        self._add(now, outcome == "failure", latency, policy)
        self._prune(now, policy)
        if len(self.outcomes) >= policy.min_calls and self._tripped(policy):
            self._open(now)
        return self.mode

    def _p95(self) -> float | None:
        if not self.latencies:
            return None
        return self.latencies[max(0, math.ceil(0.95 * len(self.latencies)) - 1)]

    def _tripped(self, policy: BreakerPolicy) -> bool:
        if self.failures / len(self.outcomes) >= policy.failure_ratio:
            return True
        if policy.latency_p95 is not None:
            observed = self._p95()
            return observed is not None and observed > policy.latency_p95
        return False

    def snapshot(self, now: float, policy: BreakerPolicy) -> BreakerSnapshot:
        self._advance(now, policy)
        self._prune(now, policy)
        retry_after = _until(now, self.opened_at + policy.open_for) if self.mode == "open" else None
        return BreakerSnapshot(
            mode=self.mode,
            calls=len(self.outcomes),
            failures=self.failures,
            p95=self._p95() if self.tracking else _p95_of([latency for _, _, latency in self.outcomes]),
            retry_after=retry_after,
        )


def _p95_of(latencies: list[float]) -> float | None:
    if not latencies:
        return None
    latencies.sort()
    return latencies[max(0, math.ceil(0.95 * len(latencies)) - 1)]


def _until(now: float, when: float) -> float:
    """Seconds from ``now`` to ``when``, rounded up so that ``now + result >= when``
    holds in floating point too: a caller who waits exactly that long is in time.
    """
    wait = max(0.0, when - now)
    while now + wait < when:
        wait = math.nextafter(wait, math.inf)
    return wait
