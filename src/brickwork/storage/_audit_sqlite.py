"""The audit log in a SQLite file (see :mod:`brickwork.storage.audit`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal, TextIO, TypeVar

from brickwork.contracts.errors import ConfigurationError, StorageError
from brickwork.contracts.record import CallRecord
from brickwork.storage import _audit_spool as spool_limits
from brickwork.storage._audit_chain import (
    _ALL,
    MIGRATIONS,
    VerifyReport,
    _fail,
    _GroupCommitLog,
    _Pending,
    _pending,
    _Row,
)
from brickwork.storage._audit_spool import Spool, SpoolMark, recover_spools
from brickwork.storage._audit_sqlite_ckpt import _Checkpoints
from brickwork.storage._audit_sqlite_tx import _Busy, _fail_spooling, _insert
from brickwork.storage._sqlite import connect

__all__ = ["SQLiteAuditLog"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Spooled records wait this long for more to share their transaction, unless this
#: many are waiting already, or someone waits for a sequence number (``append``).
#: They are durable in the spool meanwhile; what the wait buys is fewer rewrites of
#: the B-tree pages every commit touches (the right-most leaves of the table and its
#: indexes): at ~1,000 records/s, 5 ms wrote ~6.0 KB per record, 50 ms ~4.7 KB
#: (``/proc/<pid>/io`` wchar under ``bench/gateway.py``'s load; ~1.4 KB of it is the
#: HTTP traffic).
_INGEST_DELAY = 0.05
_INGEST_BATCH = 512
#: A batch the database refused is tried again after this long (it is in the spool).
_RETRY_DELAY = 1.0
#: Records spooled but not yet in the database beyond which new ones are refused
#: (the database has been failing for a while: no answers without a record).
_MAX_BACKLOG = 100_000


class SQLiteAuditLog(_Checkpoints, _GroupCommitLog):
    """The audit log in a SQLite file, in WAL mode.

    ``durability="process"`` (the default): a record whose ``record()`` returned
    survives a crash or ``kill -9`` of the server process, which is the promise the
    gateway makes, without an fsync: ``record()`` returns once the record's line is
    in this process's spool (one ``write()``, made at once, see
    :mod:`brickwork.storage._audit_spool`), and the records are committed within
    about 50 ms, many per transaction, with ``synchronous=NORMAL``. Such a
    commit is only a write into the OS's page cache, so it is made on the event
    loop's thread, without a hop to a thread and back (see the module docstring).
    ``spool=False`` commits before ``record()`` returns instead.
    ``durability="power"`` uses ``synchronous=FULL``: it also survives
    a power cut or kernel crash, at about a millisecond of fsync per commit (group
    commit shares it between concurrent requests); those commits are made from a
    thread. ``thread_writes=True`` makes every commit from a thread in "process"
    mode too, as all were made before (for comparison, or for a file on a network
    filesystem, where even a write may stall). The file is created readable by its
    owner only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_batch: int = 5_000,
        durability: Literal["process", "power"] = "process",
        thread_writes: bool = False,
        spool: bool = True,
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.durability = durability
        self.path = str(path)
        if self.path == ":memory:":
            raise ConfigurationError("the audit log must be a file: an in-memory one would lose records")
        #: Commit on the event loop's thread (see the class docstring).
        self.on_loop = durability == "process" and not thread_writes
        #: A record is durable once in this process's spool (``_audit_spool``).
        self.spooled = self.on_loop and spool
        #: WAL checkpoints run (to see that the WAL is kept short), and of them the
        #: truncating ones (passive ones falling behind several processes' writes).
        self.checkpoints = 0
        self.truncations = 0
        self._write_conn: sqlite3.Connection | None = None  # used from threads
        self._loop_conn: sqlite3.Connection | None = None  # used on the loop, never waits
        self._ckpt_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._write_lock = threading.Lock()
        self._ckpt_lock = threading.Lock()
        self._read_lock = threading.Lock()
        # The loop-side writer's state (only touched on the loop's thread):
        self._flush_handle: asyncio.Handle | None = None
        #: A batch being written from a thread: loop writes wait for it, in order.
        self._handoff: asyncio.Task[None] | None = None
        self._ckpt_task: asyncio.Task[None] | None = None
        self._unchecked_pages = 0
        self._last_checkpoint = time.monotonic()
        #: After a checkpoint SQLite may restart the WAL on the next commit, which
        #: fsyncs the WAL's new header: let a thread make that commit.
        self._restart_in_thread = False
        # The spool (only touched on the loop's thread, but for opening):
        self._spool: Spool | None = None
        self._spooling: list[_Pending] = []  # to write to the spool
        self._spool_handle: asyncio.Handle | None = None
        self._opening: asyncio.Task[None] | None = None
        self._flush_soon = False  # the flush scheduled is call_soon's, not a delay's
        self._ingest_error: BaseException | None = None
        self._recovered = False

    def _connect(self) -> sqlite3.Connection:
        sync: Literal["FULL", "NORMAL"] = "FULL" if self.durability == "power" else "NORMAL"
        return connect(self.path, "audit", MIGRATIONS, synchronous=sync)

    async def _thread(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"audit log {self.path}: {exc}") from exc

    # --- the thread path: "power", the first batch, and a batch the loop cannot write now

    async def _write(self, batch: Sequence[_Pending]) -> list[_Row]:
        return await self._thread(lambda: self._write_sync(batch))

    def _write_sync(
        self, batch: Sequence[_Pending], checkpoint_first: bool = False, mark: SpoolMark | None = None
    ) -> list[_Row]:
        # The lock matters only when an abandoned thread (its loop gone) still writes.
        with self._write_lock:
            self._open_sync()
            assert self._write_conn is not None
            if checkpoint_first:
                with contextlib.suppress(sqlite3.Error):  # a checkpoint is only housekeeping
                    self._checkpoint_sync()
            return _insert(self._write_conn, batch, mark=mark)

    def _open_sync(self) -> None:
        """Open the connections (and take over dead processes' spools) if not yet done."""
        self._recover_sync()
        assert self._write_conn is not None
        if self.on_loop and self._loop_conn is None:
            # Opened here, where waiting on a lock or the disk is fine.
            conn = self._connect()
            try:
                conn.execute("PRAGMA busy_timeout=0")
                conn.execute("PRAGMA wal_autocheckpoint=0")
            except BaseException:
                conn.close()
                raise
            self._loop_conn = conn
        if self.on_loop and self._ckpt_conn is None:
            # Opened here too, not by the first checkpoint: opening runs the
            # migrations' check, which takes the write lock, and with the loop
            # committing all the while SQLite's busy handler backed off for hundreds
            # of milliseconds before it got it (a WAL of 16-26 MB where checkpoints
            # keep it near 5). Housekeeping: if it fails, the first checkpoint tries.
            with self._ckpt_lock, contextlib.suppress(sqlite3.Error, OSError):
                if self._ckpt_conn is None:
                    self._ckpt_conn = self._connect()
        if self.spooled and self._spool is None:
            spool = Spool(self.path)
            spool.open(self._write_conn)
            self._spool = spool

    def _recover_sync(self) -> None:
        """Open the writing connection and take over dead processes' spools, once."""
        if self._write_conn is None:
            self._write_conn = self._connect()
        if not self._recovered:
            recover_spools(self._write_conn, self.path, lambda c, b, m: _insert(c, b, mark=m))
            self._recovered = True

    def _mark(self, batch: Sequence[_Pending]) -> SpoolMark | None:
        """What the spool's row says once ``batch`` (spooled records, in order) is in."""
        spool = self._spool
        if spool is None or not batch or not batch[-1].end:
            return None
        return SpoolMark(spool.name, batch[-1].end)

    # --- the loop path: "process" -----------------------------------------------------

    async def record(self, record: CallRecord) -> None:
        """Append ``record``; return once it is durable (spooled, or committed)."""
        if not self.spooled:
            await self.append(record)
            return
        if self._closed:
            raise StorageError("the audit log is closed")
        loop = asyncio.get_running_loop()
        item = _pending(record, None)
        if self._spool_now(item, loop):
            return  # in the spool already: no wait
        # Each caller its own future (not one per write): cancelling one caller
        # must not cancel the others' wait.
        item.spooled = loop.create_future()
        self._spool_submit(item, loop)
        await item.spooled

    def _submit(self, item: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        if not self.on_loop:
            super()._submit(item, loop)
            return
        if self.spooled:
            # ``append``: through the spool too (one order for all), committed at once.
            self._spool_submit(item, loop)
            return
        self._adopt(loop)
        self._pending.append(item)
        if self._flush_handle is None and self._handoff is None:
            # Records appended until this runs (the rest of this loop iteration)
            # share its transaction.
            self._flush_handle = loop.call_soon(self._flush)

    def _adopt(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        old = self._loop
        if old is not None and not old.is_closed() and (self._handoff is not None or self._pending):
            raise StorageError("the audit log is in use by another event loop")
        # Records left by a closed loop (their callers are gone) go with the next batch.
        self._loop, self._flush_handle, self._handoff, self._ckpt_task = loop, None, None, None
        self._spool_handle = self._opening = None

    # --- the spool: "process" durability on the loop ------------------------------------

    def _spool_now(self, item: _Pending, loop: asyncio.AbstractEventLoop) -> bool:
        """Write ``item`` to the spool at once when nothing is queued ahead of it and
        the spool is open, and say so; raise if that failed.

        Its caller then goes on without suspending: a ``write()`` of one line costs
        about a microsecond, where waiting for a shared write at the end of the
        loop iteration costs a future, a task step and the resumption of every
        coroutine up the request's stack (``bench/gateway.py`` at concurrency 16:
        13.8, 0.4 and 6.0 µs of CPU per request more in three same-run comparisons,
        +2 to +5 % RPS). Records queue (and share a write) while the spool is
        being opened, behind records already queued, and while a commit is due: a
        caller recording in a loop that never suspends otherwise would keep the
        loop from ever running the commit.
        """
        if self._loop is not loop or self._spooling:
            return False
        due = self._flush_handle
        if due is not None:
            when = None if self._flush_soon else getattr(due, "when", None)  # (a timer's)
            if when is None or loop.time() >= when():
                return False
        spool = self._spool
        if spool is None or not spool.is_open or self._opening is not None:
            return False
        self._line(item)
        error = self._spool_write(spool, [item])
        if error is not None:
            raise error
        return True

    def _line(self, item: _Pending) -> None:
        if len(self._pending) > _MAX_BACKLOG:
            raise StorageError(
                f"audit log {self.path}: {len(self._pending)} records wait for the database "
                f"({self._ingest_error!r}); refusing more"
            )
        try:
            item.line = (item.body + "\n").encode()
        except UnicodeEncodeError as exc:
            raise StorageError(f"call record {item.fields[1]!r} is not valid UTF-8 text: {exc}") from None

    def _spool_submit(self, item: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``item`` for the spool (its ``spooled`` future is done once it is there)."""
        self._line(item)
        self._adopt(loop)
        self._spooling.append(item)
        if self._spool_handle is None and self._opening is None:
            # Records queued until this runs (the rest of this loop iteration) share one write.
            self._spool_handle = loop.call_soon(self._spool_flush)

    def _spool_flush(self) -> None:
        """Write the queued records to the spool in one ``write()``; wake their callers."""
        self._spool_handle = None
        if not self._spooling:
            return
        loop = self._loop
        assert loop is not None
        spool = self._spool
        if spool is None or not spool.is_open:
            if self._opening is None:  # the first write opens the database, from a thread
                self._opening = loop.create_task(self._open_spool(), name="brickwork-audit-open")
            return
        batch, self._spooling = self._spooling, []
        if batch and self._spool_write(spool, batch) is None:
            for item in batch:
                spooled = item.spooled
                if spooled is not None:
                    item.spooled = None
                    if not spooled.done():
                        spooled.set_result(None)

    def _spool_write(self, spool: Spool, batch: list[_Pending]) -> StorageError | None:
        """Write ``batch`` in one ``write()`` and queue it for the database; the error
        (its waiting callers failed with it) if the write failed."""
        try:
            spool.write(b"".join(item.line for item in batch))
        except Exception as exc:
            error = StorageError(f"audit log spool {spool.path}: {exc}")
            _fail_spooling(batch, error)
            if spool.failed:  # the failed write could not be undone
                self._abandon_spool(error)
            return error
        end = spool.size - sum(len(item.line) for item in batch)
        for item in batch:
            end += len(item.line)
            item.end, item.line = end, b""
        self._pending.extend(batch)
        self._schedule_ingest(urgent=any(item.future is not None for item in batch))
        return None

    def _abandon_spool(self, error: BaseException) -> None:
        """Leave this spool, and the records in it not yet committed, to recovery (ours,
        when the next record opens a new spool, or the next opener's): close it, so
        its lock goes, and forget those records, so they are never committed twice."""
        spool, self._spool = self._spool, None
        if spool is not None:
            spool.close()
            self._recovered = False
        left, self._pending = self._pending, []
        _fail(left, error)  # only ``append`` callers wait: the rest were answered (durable)
        waiting, self._spooling = self._spooling, []
        _fail_spooling(waiting, error)

    def _maybe_cut_back(self) -> None:
        """Keep the spool short: once all of it is committed and it has grown past
        :data:`~brickwork.storage._audit_spool.MAX_BYTES`, empty it."""
        spool = self._spool
        if spool is None or not spool.usable or spool.committed != spool.size or self._handoff is not None:
            return
        if spool.held < spool_limits.MAX_BYTES:
            return
        try:
            spool.cut_back()
        except OSError:
            log.warning(
                "audit log %s: could not cut the spool back; starting another", self.path, exc_info=True
            )
            spool.close()  # all of it is committed: whoever opens the log next deletes it
            self._spool = None

    async def _open_spool(self) -> None:
        try:
            await self._thread(lambda: self._locked(self._open_sync))
        except BaseException as exc:
            self._opening = None
            batch, self._spooling = self._spooling, []
            error = exc if isinstance(exc, StorageError) else StorageError(f"audit log: {exc!r}")
            _fail_spooling(batch, error)
            if not isinstance(exc, Exception):
                raise
            return
        self._opening = None
        if self._spooling:
            self._spool_flush()

    def _locked(self, fn: Callable[[], None]) -> None:
        with self._write_lock:
            fn()

    def _schedule_ingest(self, *, urgent: bool) -> None:
        """Commit the spooled records soon: at once if asked or many, else after a moment."""
        loop = self._loop
        if loop is None or self._handoff is not None or self._ingest_error is not None:
            return  # the thread's batch first, or the retry after a refusal: both call back
        handle = self._flush_handle
        if urgent or len(self._pending) >= _INGEST_BATCH:
            if handle is not None and not self._flush_soon:
                handle.cancel()
                handle = None
            if handle is None:
                self._flush_handle, self._flush_soon = loop.call_soon(self._flush), True
        elif handle is None:
            self._flush_handle = loop.call_later(_INGEST_DELAY, self._flush)
            self._flush_soon = False

    def _refused(self, batch: list[_Pending], exc: BaseException) -> None:
        """A batch the database did not take: spooled records wait and are tried again
        (they are durable already); others fail their callers."""
        if not self.spooled:
            _fail(batch, exc)
            return
        self._ingest_error = exc
        self._pending[:0] = batch
        log.error(
            "audit log %s: could not commit %d records (kept, tried again): %r", self.path, len(batch), exc
        )
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._loop is not None:
            self._flush_handle = self._loop.call_later(_RETRY_DELAY, self._flush)
            self._flush_soon = False

    def _flush(self) -> None:
        """Commit what is pending in one transaction, on the loop, unless it would wait."""
        self._flush_handle = None
        if self._handoff is not None or not self._pending:
            return  # the thread's batch first; it calls back when done
        assert self._loop is not None
        batch = self._pending[: self.max_batch]
        del self._pending[: len(batch)]
        conn = self._loop_conn
        if conn is None or self._restart_in_thread:
            self._hand_off(batch, checkpoint_first=self._restart_in_thread)
            return
        mark = self._mark(batch)
        try:
            rows = _insert(conn, batch, wait=False, mark=mark)
        except _Busy:
            self._hand_off(batch)
            return
        except (sqlite3.Error, OSError) as exc:
            self._drop_stuck(conn)
            self._refused(batch, StorageError(f"audit log {self.path}: {exc}"))
            return
        except Exception as exc:
            self._drop_stuck(conn)
            self._refused(batch, exc)
            return
        self._committed(batch, rows, mark)
        if self._pending:
            self._flush_handle, self._flush_soon = self._loop.call_soon(self._flush), True
        self._count_commit(batch)

    def _committed(self, batch: list[_Pending], rows: list[_Row], mark: SpoolMark | None) -> None:
        self._ingest_error = None
        spool = self._spool
        if mark is not None and spool is not None and mark.name == spool.name:
            spool.committed = mark.ingested
        self._settle(batch, rows)
        self._maybe_cut_back()

    def _drop_stuck(self, conn: sqlite3.Connection) -> None:
        """A loop connection left inside a transaction (its rollback failed too) would
        fail every later batch: close it; the next batch reopens one from a thread."""
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.close()
            self._loop_conn = None

    def _hand_off(self, batch: list[_Pending], *, checkpoint_first: bool = False) -> None:
        assert self._loop is not None
        self._restart_in_thread = False
        self._handoff = self._loop.create_task(
            self._write_in_thread(batch, checkpoint_first), name="brickwork-audit-thread-write"
        )

    async def _write_in_thread(self, batch: list[_Pending], checkpoint_first: bool) -> None:
        mark = self._mark(batch)
        try:
            rows = await self._thread(lambda: self._write_sync(batch, checkpoint_first, mark))
        except asyncio.CancelledError:
            # The loop is going away: nobody must wait forever. (The batch may still
            # commit: its callers get an error, never a false "ok".)
            self._handoff = None
            error = StorageError("the audit writer stopped")
            _fail(batch, error)
            if self.spooled:
                # Whether it commits or not, the spool's mark says so: recovery decides.
                self._abandon_spool(error)
            else:
                left, self._pending = self._pending, []
                _fail(left, error)
            raise
        except Exception as exc:
            self._handoff = None
            self._refused(batch, exc)
            return
        self._handoff = None
        self._committed(batch, rows, mark)
        if self._pending and self._flush_handle is None and self._loop is not None:
            self._flush_handle, self._flush_soon = self._loop.call_soon(self._flush), True

    async def aclose(self) -> None:
        """Write every pending record, checkpoint the WAL, then close the database."""
        if not self.on_loop:
            await super().aclose()
            return
        self._closed = True
        if self._loop is None or self._loop is asyncio.get_running_loop():
            try:
                await self._drain()
            except StorageError as exc:
                # Still in the spool, which is kept: whoever opens the log next moves them.
                log.exception("audit log %s: closed with records not committed", self.path)
                self._abandon_spool(exc)
            if self._ckpt_task is not None:
                await asyncio.wait([self._ckpt_task])
        else:
            # Its loop is gone: nothing can wait for these records any more; the
            # spooled ones are left to whoever opens the log next.
            self._abandon_spool(StorageError("the audit log was closed from another event loop"))
        spool, self._spool = self._spool, None
        if spool is not None:
            if spool.committed == spool.size and self._write_conn is not None and not self._pending:
                await self._thread(lambda: self._locked(lambda: spool.remove(self._write_conn)))  # type: ignore[arg-type]
            else:
                spool.close()
        if self._loop_conn is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                await asyncio.to_thread(self._checkpoint_sync)
        await self._close()

    async def _drain(self) -> None:
        """Write and commit everything queued and spooled now (raise if the database refuses)."""
        if not self.on_loop or self._loop is not asyncio.get_running_loop():
            return
        while self._spooling or self._opening is not None or self._pending or self._handoff is not None:
            if self._opening is not None:
                await asyncio.wait([self._opening])
            elif self._spooling:
                if self._spool_handle is not None:
                    self._spool_handle.cancel()
                self._spool_flush()
                if self._spooling and self._opening is None:  # the spool could not be opened
                    raise StorageError(f"audit log {self.path}: could not open the spool")
            elif self._handoff is not None:
                await asyncio.wait([self._handoff])
            else:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                self._flush_handle = None
                self._ingest_error = None
                self._flush()
                if self._ingest_error is not None:
                    if self._flush_handle is not None:
                        self._flush_handle.cancel()
                        self._flush_handle = None
                    raise StorageError(f"audit log {self.path}: {self._ingest_error}")

    async def verify(self) -> VerifyReport:
        await self._settle_spools()
        return await super().verify()

    async def export(self, out: TextIO, since_seq: int = 0) -> int:
        await self._settle_spools()
        return await super().export(out, since_seq)

    async def _settle_spools(self) -> None:
        """Before reading: this process's records committed, dead processes' spools taken over."""
        await self._drain()
        if not self._recovered:
            # (No spool of our own for a reader: only the takeover.)
            await self._thread(lambda: self._locked(self._recover_sync))

    # --- reading and closing -------------------------------------------------------

    async def _read(self, after_seq: int, limit: int) -> list[_Row]:
        def read() -> list[_Row]:
            with self._read_lock:
                if self._read_conn is None:
                    self._read_conn = self._connect()
                cursor = self._read_conn.execute(
                    f"SELECT {', '.join(_ALL)} FROM audit_log WHERE seq > ? ORDER BY seq LIMIT ?",
                    (after_seq, limit),
                )
                return [tuple(row) for row in cursor.fetchall()]

        return await self._thread(read)

    async def _close(self) -> None:
        def close() -> None:
            with self._write_lock, self._ckpt_lock, self._read_lock:
                for conn in (self._loop_conn, self._write_conn, self._ckpt_conn, self._read_conn):
                    if conn is not None:
                        conn.close()
                self._loop_conn = self._write_conn = self._ckpt_conn = self._read_conn = None

        await asyncio.to_thread(close)
