"""One thread per model: jobs run one at a time, first come first served.

A llama.cpp context is not thread-safe, and on a small host two generations at
once are slower than one after the other. So every call to a model becomes a job
on that model's :class:`SerialWorker`: the event loop never blocks, calls never
overlap on one context, and the queue is visible (:attr:`SerialWorker.waiting`,
:attr:`SerialWorker.running`) to whoever decides how much more to admit.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

from brickwork.contracts.errors import ProviderUnavailableError

__all__ = ["Job", "SerialWorker", "WorkerStats"]

T = TypeVar("T")
log = logging.getLogger(__name__)

State = Literal["queued", "running", "done", "dropped"]


@dataclass(frozen=True)
class WorkerStats:
    """A snapshot of one worker.

    Attributes:
        waiting: jobs queued, not started.
        running: jobs running now (0 or 1).
        completed: jobs that ran to the end (successfully or not).
        cancelled: jobs cancelled while waiting (dropped) or while running (stopped).
    """

    waiting: int
    running: int
    completed: int
    cancelled: int


class Job(Generic[T]):
    """A call waiting for, or running on, the worker thread.

    ``fn`` receives a :class:`threading.Event` that is set when the caller gives up;
    long jobs check it (between tokens) and return early.
    """

    def __init__(
        self,
        worker: SerialWorker,
        fn: Callable[[threading.Event], T],
        loop: asyncio.AbstractEventLoop,
        number: int,
    ) -> None:
        self.worker = worker
        self.fn = fn
        self.loop = loop
        self.number = number
        self.future: asyncio.Future[T] = loop.create_future()
        self.cancel_event = threading.Event()
        self.state: State = "queued"

    def cancel(self) -> None:
        """Drop the job if it has not started; ask it to stop if it is running."""
        self.worker._cancel(self)

    def _resolve(self, ok: bool, value: object) -> None:
        # Runs on the job's event loop.
        if self.future.done():
            return
        if ok:
            self.future.set_result(value)  # type: ignore[arg-type]  # fn's own return value
        else:
            assert isinstance(value, BaseException)
            self.future.set_exception(value)


class SerialWorker:
    """Runs jobs on one daemon thread, one at a time, in the order they were submitted.

    The thread starts with the first job. Jobs may come from any event loop; each
    job's result goes back to the loop that submitted it.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._jobs: queue.SimpleQueue[Job[object] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._current: Job[object] | None = None
        self._closed = False
        self._numbers = itertools.count(1)
        self._waiting = 0
        self._running = 0
        self._completed = 0
        self._cancelled = 0

    # --- observation -----------------------------------------------------------

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(self._waiting, self._running, self._completed, self._cancelled)

    # --- submitting ------------------------------------------------------------

    def submit(self, fn: Callable[[threading.Event], T]) -> Job[T]:
        """Queue ``fn``; must be called from a running event loop.

        Raises:
            ProviderUnavailableError: the worker was closed.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._closed:
                raise ProviderUnavailableError(f"{self.name} is closed")
            job: Job[T] = Job(self, fn, loop, next(self._numbers))
            self._waiting += 1
            self._jobs.put(job)  # type: ignore[arg-type]  # the queue holds jobs of any T
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=self.name, daemon=True)
                self._thread.start()
        return job

    async def run(self, fn: Callable[[threading.Event], T]) -> T:
        """Submit ``fn`` and wait for its result; cancelling the wait cancels the job."""
        job = self.submit(fn)
        try:
            return await job.future
        except asyncio.CancelledError:
            job.cancel()
            raise

    # --- the thread ------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            with self._lock:
                if job.state == "dropped":
                    continue
                if self._closed:  # close() is draining the queue: this one never runs
                    job.state = "dropped"
                    self._waiting -= 1
                    self._cancelled += 1
                    self._reply(
                        job, False, ProviderUnavailableError(f"{self.name} closed before this call ran")
                    )
                    continue
                job.state = "running"
                self._waiting -= 1
                self._running += 1
                self._current = job
            ok, value = True, None
            try:
                value = job.fn(job.cancel_event)
            except BaseException as exc:  # handed to the caller, never kills the thread
                ok, value = False, exc
            with self._lock:
                job.state = "done"
                self._running -= 1
                self._current = None
                if job.cancel_event.is_set():
                    self._cancelled += 1
                else:
                    self._completed += 1
            self._reply(job, ok, value)

    def _reply(self, job: Job[object], ok: bool, value: object) -> None:
        try:
            job.loop.call_soon_threadsafe(job._resolve, ok, value)
        except RuntimeError:  # that loop is closed: nobody is waiting any more
            log.debug("%s: job %d ended after its event loop closed", self.name, job.number)

    def _cancel(self, job: Job[T]) -> None:
        with self._lock:
            if job.state == "queued":
                job.state = "dropped"
                self._waiting -= 1
                self._cancelled += 1
                job.cancel_event.set()
                if not job.future.done():
                    job.future.cancel()
            elif job.state == "running":
                job.cancel_event.set()

    # --- closing ---------------------------------------------------------------

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new jobs, drop the queued ones, stop the running one and end the
        thread. Blocking: call it off the event loop. True when the thread ended."""
        with self._lock:
            self._closed = True
            thread = self._thread
            current = self._current
        if current is not None:
            current.cancel_event.set()
        # Drain what is queued; each dropped job's caller gets a clear error.
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                break
            if job is None:
                continue
            with self._lock:
                if job.state != "queued":
                    continue
                job.state = "dropped"
                self._waiting -= 1
                self._cancelled += 1
            self._reply(job, False, ProviderUnavailableError(f"{self.name} closed before this call ran"))
        if thread is None:
            return True
        self._jobs.put(None)
        thread.join(timeout)
        return not thread.is_alive()
