"""Deadline: the time left for a run, and the share one attempt may use."""

from __future__ import annotations

from brickwork.policies.timeout import Deadline
from brickwork.testing import FakeClock


def test_remaining_counts_down_to_zero_and_stays_there() -> None:
    clock = FakeClock(start=0.0)
    deadline = Deadline(clock, 10.0)
    assert deadline.at == 10.0
    assert deadline.remaining() == 10.0
    clock.advance(7.5)
    assert deadline.remaining() == 2.5
    assert not deadline.expired()
    clock.advance(2.5)
    assert deadline.remaining() == 0.0
    assert deadline.expired()
    clock.advance(5.0)
    assert deadline.remaining() == 0.0


def test_an_attempt_gets_its_own_limit_but_never_past_the_deadline() -> None:
    clock = FakeClock(start=0.0)
    deadline = Deadline(clock, 10.0)
    assert deadline.attempt(None) == 10.0
    assert deadline.attempt(3.0) == 3.0
    clock.advance(8.0)
    assert deadline.attempt(3.0) == 2.0
    clock.advance(5.0)
    assert deadline.attempt(3.0) == 0.0


def test_a_child_deadline_is_never_later_than_its_parent() -> None:
    clock = FakeClock(start=0.0)
    parent = Deadline(clock, 10.0)
    clock.advance(4.0)
    assert parent.child(2.0).at == 6.0  # shorter: its own
    assert parent.child(60.0).at == 10.0  # longer: capped at the parent's
    clock.advance(10.0)
    assert parent.child(5.0).expired()


def test_a_deadline_counts_as_passed_when_its_timer_fires_a_little_early() -> None:
    # uvloop's timers fire up to about half a millisecond before the monotonic
    # clock reaches them: the run's deadline_exceeded must not turn into a
    # plugin_failed "raised TimeoutError" then.
    clock = FakeClock(start=0.0)
    deadline = Deadline(clock, 3.0)
    clock.advance(2.9)
    assert not deadline.expired()
    clock.advance(0.0995)  # 0.5 ms before it
    assert deadline.expired()
