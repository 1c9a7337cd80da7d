"""WAL checkpoints of the SQLite audit log: when to run one, and running it."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Sequence

from brickwork.storage._audit_chain import _Pending

__all__ = ["_Checkpoints"]

#: Start a WAL checkpoint once about this many pages were written since the last
#: one (SQLite's own autocheckpoint default), or a second passed and at least
#: :data:`_CHECKPOINT_MIN_PAGES` were (not for every record of an idle server: the
#: checkpoint and the commit after it each cost a thread hop).
_CHECKPOINT_PAGES = 1_000
#: A WAL this long at a passive checkpoint (it is not starting over: several
#: processes append) gets a truncating checkpoint too, waiting at most
#: :data:`_TRUNCATE_WAIT_MS` for the writers to pause.
_CHECKPOINT_BEHIND_PAGES = 4 * _CHECKPOINT_PAGES
_TRUNCATE_WAIT_MS = 100
_BUSY_TIMEOUT_MS = 30_000  # what connect() sets (its timeout), restored after
_CHECKPOINT_MIN_PAGES = 100
_CHECKPOINT_SECONDS = 1.0
#: WAL pages a commit writes, about (measured): 4, plus a page per 2 KiB of rows
#: (a row is its body and ~250 bytes of hashes, columns and index entries). Only
#: used to decide when to checkpoint.
_PAGES_PER_COMMIT = 4
_ROW_BYTES = 250
_BYTES_PER_PAGE = 2_048


class _Checkpoints:
    """The checkpoint half of :class:`~brickwork.storage.audit.SQLiteAuditLog`."""

    # Set by SQLiteAuditLog.__init__ (and _adopt, for the loop and the task):
    checkpoints: int
    truncations: int
    _loop: asyncio.AbstractEventLoop | None
    _ckpt_conn: sqlite3.Connection | None
    _ckpt_lock: threading.Lock
    _ckpt_task: asyncio.Task[None] | None
    _unchecked_pages: int
    _last_checkpoint: float
    _restart_in_thread: bool

    def _connect(self) -> sqlite3.Connection:
        raise NotImplementedError

    def _count_commit(self, batch: Sequence[_Pending]) -> None:
        """Count the WAL pages a loop commit of ``batch`` wrote; checkpoint if due."""
        size = sum(len(item.body) for item in batch) + _ROW_BYTES * len(batch)
        self._unchecked_pages += _PAGES_PER_COMMIT + size // _BYTES_PER_PAGE
        self._maybe_checkpoint()

    def _maybe_checkpoint(self) -> None:
        if self._ckpt_task is not None or self._loop is None:
            return
        pages = self._unchecked_pages
        if pages >= _CHECKPOINT_PAGES or (
            pages >= _CHECKPOINT_MIN_PAGES and time.monotonic() - self._last_checkpoint >= _CHECKPOINT_SECONDS
        ):
            self._unchecked_pages = 0
            self._ckpt_task = self._loop.create_task(self._checkpoint(), name="brickwork-audit-checkpoint")

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database from a thread, so that the WAL stays short.

        Passive: it never waits for, nor holds up, a writer. Loop commits made
        meanwhile stay in the WAL; the next commit goes through a thread that first
        checkpoints those too, so the WAL can start over from its beginning.
        """
        try:
            with contextlib.suppress(sqlite3.Error, OSError):  # housekeeping: the next one retries
                await asyncio.to_thread(self._checkpoint_sync)
                self._restart_in_thread = True
        finally:
            self._ckpt_task = None
            self._last_checkpoint = time.monotonic()

    def _checkpoint_sync(self) -> None:
        with self._ckpt_lock:
            if self._ckpt_conn is None:
                self._ckpt_conn = self._connect()
            conn = self._ckpt_conn
            _, log_pages, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
            if log_pages >= _CHECKPOINT_BEHIND_PAGES:
                # The WAL is not starting over (other processes keep appending
                # behind every passive checkpoint, or a long read holds an old
                # snapshot): wait briefly for
                # a quiet moment, copy everything and truncate the WAL. Writers that
                # meet the lock meanwhile hand their batch to a thread; if no quiet
                # moment comes, give up until the next checkpoint.
                conn.execute(f"PRAGMA busy_timeout={_TRUNCATE_WAIT_MS}")
                try:
                    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
                    self.truncations += 1
                finally:
                    conn.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
