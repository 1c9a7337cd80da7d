"""BreakerMachine against a plain reference model, over random call histories.

The model keeps every call in a list and recomputes each verdict from scratch;
trial slots in use are *derived* (trials still running in this half-open spell
plus those that succeeded) rather than counted, so a slip in the machine's
bookkeeping shows up as a disagreement.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from brickwork.contracts.policy import BreakerPolicy
from brickwork.state.algorithms import BreakerMachine
from brickwork.state.base import BreakerOutcome, BreakerPermit


@dataclass
class Call:
    permit: BreakerPermit
    period: int  # the model's own period id when the call started
    trial: bool


@dataclass
class Model:
    policy: BreakerPolicy
    mode: str = "closed"
    period: int = 0
    opened_at: float = 0.0
    calls: list[tuple[float, bool, float]] = field(default_factory=list)  # (time, failed, latency)
    trial_successes: int = 0

    def enter(self, mode: str, now: float) -> None:
        self.mode = mode
        self.period += 1
        self.calls = []
        self.trial_successes = 0
        if mode == "open":
            self.opened_at = now

    def tick(self, now: float) -> None:
        if self.mode == "open" and now >= self.opened_at + self.policy.open_for:
            self.enter("half_open", now)

    def window(self, now: float) -> list[tuple[float, bool, float]]:
        return [c for c in self.calls if c[0] + self.policy.window > now]

    def trials_in_use(self, running: list[Call]) -> int:
        mine = sum(1 for c in running if c.trial and c.period == self.period)
        return mine + self.trial_successes

    def verdict(self, now: float) -> bool:
        calls = self.window(now)
        if len(calls) < self.policy.min_calls:
            return False
        if sum(failed for _, failed, _ in calls) >= self.policy.failure_ratio * len(calls):
            return True
        if self.policy.latency_p95 is None:
            return False
        latencies = sorted(latency for _, _, latency in calls)
        rank = math.ceil(len(latencies) * 95 / 100)  # nearest rank, in exact integers
        return latencies[rank - 1] > self.policy.latency_p95


policies = st.builds(
    BreakerPolicy,
    window=st.sampled_from([10.0, 60.0]),
    min_calls=st.integers(1, 5),
    failure_ratio=st.sampled_from([0.25, 0.5, 1.0]),
    latency_p95=st.sampled_from([None, 1.0]),
    open_for=st.sampled_from([5.0, 30.0]),
    half_open_trials=st.integers(1, 3),
)
steps = st.sampled_from([0.0, 1.0, 5.0, 10.0, 30.0, 60.0]) | st.floats(0.0, 90.0, allow_nan=False)
outcomes = st.sampled_from(["success", "failure", "ignored"])
latencies = st.sampled_from([0.1, 0.9, 1.0, 1.5, 5.0])


class BreakerMachineComparison(RuleBasedStateMachine):
    running: list[Call]

    @initialize(policy=policies, start=st.sampled_from([0.0, 1_700_000_000.0]))
    def setup(self, policy: BreakerPolicy, start: float) -> None:
        self.policy = policy
        self.now = start
        self.machine = BreakerMachine()
        self.model = Model(policy)
        self.running = []

    @rule(dt=steps)
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def acquire(self) -> None:
        self.model.tick(self.now)
        permit = self.machine.acquire(self.now, self.policy)
        assert permit.mode == self.model.mode
        if self.model.mode == "closed":
            assert permit.allowed
            assert not permit.trial
        elif self.model.mode == "open":
            assert not permit.allowed
            assert permit.retry_after is not None
            wait = self.model.opened_at + self.policy.open_for - self.now
            assert math.isclose(permit.retry_after, wait, rel_tol=1e-12, abs_tol=1e-9)
            # Waiting exactly retry_after is enough, in floating point too.
            assert self.now + permit.retry_after >= self.model.opened_at + self.policy.open_for
        else:
            room = self.model.trials_in_use(self.running) < self.policy.half_open_trials
            assert permit.allowed == room
            assert permit.trial == room
            if not room:
                assert permit.retry_after == min(1.0, self.policy.open_for)
        if permit.allowed:
            self.running.append(Call(permit, self.model.period, permit.trial))

    @precondition(lambda self: self.running)
    @rule(pick=st.integers(0, 1_000), outcome=outcomes, latency=latencies)
    def finish(self, pick: int, outcome: BreakerOutcome, latency: float) -> None:
        call = self.running.pop(pick % len(self.running))
        self.model.tick(self.now)
        model = self.model
        if call.period == model.period:  # calls from an earlier period were judged already
            if model.mode == "half_open":
                slow = self.policy.latency_p95 is not None and latency > self.policy.latency_p95
                if outcome == "failure" or (outcome == "success" and slow):
                    model.enter("open", self.now)
                elif outcome == "success":
                    model.trial_successes += 1
                    if model.trial_successes == self.policy.half_open_trials:
                        model.enter("closed", self.now)
            elif model.mode == "closed" and outcome != "ignored":
                model.calls.append((self.now, outcome == "failure", latency))
                if model.verdict(self.now):
                    model.enter("open", self.now)
        mode = self.machine.record(self.now, self.policy, outcome, latency, call.permit.generation)
        assert mode == model.mode

    @invariant()
    def never_more_trials_than_allowed(self) -> None:
        if self.model.mode == "half_open":
            assert self.model.trials_in_use(self.running) <= self.policy.half_open_trials

    @invariant()
    def snapshot_agrees(self) -> None:
        if not hasattr(self, "machine"):
            return
        self.model.tick(self.now)
        snap = self.machine.snapshot(self.now, self.policy)
        calls = self.model.window(self.now)
        assert snap.mode == self.model.mode
        assert snap.calls == len(calls)
        assert snap.failures == sum(failed for _, failed, _ in calls)
        if self.model.mode == "open":
            assert snap.retry_after is not None
            assert self.now + snap.retry_after >= self.model.opened_at + self.policy.open_for
        else:
            assert snap.retry_after is None


BreakerMachineComparison.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
test_breaker_machine_matches_the_model = BreakerMachineComparison.TestCase
