"""The audit log: one hash-chained row per request, durable before the answer leaves.

Each :class:`~brickwork.runtime.recording.CallRecord` becomes one row: its
canonical JSON (``body``: tenant, route decision, plugin@version, prompt
version, models, cache hit, guard verdicts, tokens, cost, latency, outcome —
never input or output text, never a key), a gapless sequence number ``seq``
from 1, and::

    hash = sha256(prev_hash + canonical_json({"record": <record>, "seq": seq}))

where ``prev_hash`` is the previous row's hash (64 zeros before row 1) and
canonical JSON is ``json.dumps(..., sort_keys=True, separators=(",", ":"),
ensure_ascii=False)``. An exported line is itself canonical JSON,
``{"hash": ..., "prev_hash": ..., "record": {...}, "seq": n}``, so anyone can
check a chain from an export with nothing but SHA-256.

**Durability.** The logs are *required* recorders: :meth:`record` returns only
after the row is committed (SQLite in WAL mode, ``synchronous`` NORMAL or FULL by
the ``durability`` asked for;
a PostgreSQL commit), so an answer whose record was not written is never
given, also if the server process dies a moment later.

**Group commit.** Records are not written one transaction each: every record
waiting at that moment is written in one transaction, then each caller is woken.
Under load, batches grow by themselves. The chain's head is read inside that
transaction, under a write lock (``BEGIN IMMEDIATE`` / ``LOCK TABLE``), so several
processes or replicas may append to one log, and after a crash the chain
continues from the last committed row.

**Who writes.** PostgreSQL: a writer task, with the async driver. SQLite with
``durability="power"``: a writer task hands each batch to a thread, because the
commit's fsync must not stall the event loop. SQLite with the default
``durability="process"``: a commit is only a write into the OS's page cache, far
cheaper than the hop to a thread and back, so it is made *on the event loop's
thread*: the first record waiting schedules a flush with ``loop.call_soon``, and
the flush commits all records appended until it runs (the rest of that loop
iteration) in one transaction. The loop never waits on a lock or the disk:

* its connection has a zero busy timeout: when another connection or process
  holds the write lock, that batch goes to a thread that waits for it as usual
  (later records wait behind it, to keep the call order);
* its automatic checkpoint is off (a checkpoint fsyncs); a passive checkpoint runs
  from a thread, on a connection of its own, after about 1,000 WAL pages (or a
  second and 100 pages), so the WAL stays short. The commit after it is made
  from a thread too, since it may restart the WAL, which fsyncs the new header;
* the first commit, which opens and migrates the database, is made from a thread.

(One exception, only where several processes append to one file: after another
process's checkpoint, a loop commit may be the one to restart the WAL, and
fsync its header, about once per checkpoint.)

:meth:`aclose` commits every pending record, then checkpoints.

**What the chain proves.** :meth:`verify` finds an edited, deleted or reordered
row, or an inserted one. It cannot see rows cut from the *end*, nor a chain
rewritten from some row on by someone able to write the database: for that,
keep the head hash (in :class:`VerifyReport`) somewhere else now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TextIO, TypeVar

from brickwork.contracts.errors import ConfigurationError, StorageError
from brickwork.runtime.recording import CallRecord
from brickwork.storage._postgres import PgConn, PgConnection
from brickwork.storage._sqlite import connect
from brickwork.storage.migrations import Dialect, apply_postgres
from brickwork.storage.urls import is_postgres, sqlite_path

__all__ = [
    "GENESIS_HASH",
    "AuditLog",
    "PostgresAuditLog",
    "SQLiteAuditLog",
    "VerifyReport",
    "canonical_json",
    "chain_hash",
    "open_audit_log",
]

T = TypeVar("T")

GENESIS_HASH = "0" * 64

#: Columns besides ``body`` copied out of the record, so rows can be queried.
#: :meth:`verify` checks that each equals the hashed record's value.
_FIELDS = ("time", "trace_id", "tenant", "plugin", "version", "outcome")
_ALL = ("seq", *_FIELDS, "body", "prev_hash", "hash")
_READ_CHUNK = 2_000
_MIN_SEQ = -(2**63)


#: One encoder for every record: ``json.dumps`` with options builds a new one each call.
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value that the chain hashes."""
    return _ENCODER.encode(value)


def chain_hash(prev_hash: str, seq: int, body: str) -> str:
    """The hash of row ``seq`` whose record's canonical JSON is ``body``."""
    # canonical_json({"record": record, "seq": seq}), spelled without re-encoding body.
    text = f'{prev_hash}{{"record":{body},"seq":{seq}}}'
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class VerifyReport:
    """What :meth:`AuditLog.verify` found.

    Attributes:
        ok: the whole chain is intact.
        count: rows checked and found good (all rows when ``ok``).
        first_bad_seq: the first sequence number that is wrong (missing, edited,
            out of place); ``None`` when ``ok``.
        reason: what is wrong with it.
        head: the hash of the last good row (``GENESIS_HASH`` for an empty log);
            keep it elsewhere to detect later truncation or rewriting.
    """

    ok: bool
    count: int
    first_bad_seq: int | None = None
    reason: str | None = None
    head: str = GENESIS_HASH


class AuditLog(Protocol):
    """A required recorder with a verifiable chain."""

    required: bool

    async def record(self, record: CallRecord) -> None: ...

    async def append(self, record: CallRecord) -> int: ...

    async def verify(self) -> VerifyReport: ...

    async def export(self, out: TextIO, since_seq: int = 0) -> int: ...

    async def aclose(self) -> None: ...


@dataclass
class _Pending:
    body: str
    fields: tuple[Any, ...]
    future: asyncio.Future[int]


_Row = tuple[Any, ...]  # in the order of _ALL


def m001_initial(dialect: Dialect) -> list[str]:
    seq = "INTEGER" if dialect == "sqlite" else "BIGINT"
    return [
        f"""CREATE TABLE audit_log (
            seq {seq} PRIMARY KEY,
            time DOUBLE PRECISION NOT NULL,
            trace_id TEXT NOT NULL,
            tenant TEXT NOT NULL,
            plugin TEXT,
            version TEXT,
            outcome TEXT NOT NULL,
            body TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        )""",
        "CREATE INDEX audit_log_tenant_time ON audit_log (tenant, time)",
        "CREATE INDEX audit_log_trace ON audit_log (trace_id)",
    ]


MIGRATIONS = [m001_initial]


def _chain(head: tuple[int, str] | None, batch: Sequence[_Pending]) -> list[_Row]:
    seq, prev = head if head is not None else (0, GENESIS_HASH)
    rows: list[_Row] = []
    for item in batch:
        seq += 1
        digest = chain_hash(prev, seq, item.body)
        rows.append((seq, *item.fields, item.body, prev, digest))
        prev = digest
    return rows


class _GroupCommitLog:
    """The writer task, verify and export; subclasses talk to the database."""

    required = True

    def __init__(self, *, max_batch: int = 5_000) -> None:
        self.max_batch = max_batch
        #: Transactions written and records in them (to see group commit at work).
        self.batches = 0
        self.written = 0
        self._pending: list[_Pending] = []
        self._inflight: list[_Pending] = []
        self._wakeup: asyncio.Event | None = None
        self._writer: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    # --- the database, by subclasses ---------------------------------------------

    async def _write(self, batch: Sequence[_Pending]) -> list[_Row]:
        """Append ``batch`` in one transaction, chained after the stored head."""
        raise NotImplementedError

    async def _read(self, after_seq: int, limit: int) -> list[_Row]:
        """Rows with ``seq > after_seq`` in order, at most ``limit``."""
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    # --- writing --------------------------------------------------------------------

    async def record(self, record: CallRecord) -> None:
        """Append ``record``; return once it is durably committed."""
        await self.append(record)

    async def append(self, record: CallRecord) -> int:
        """:meth:`record`, returning the row's sequence number."""
        if self._closed:
            raise StorageError("the audit log is closed")
        try:
            data = record.to_dict()
            body = canonical_json(data)
        except (TypeError, ValueError) as exc:
            raise StorageError(f"call record {record.trace_id} is not JSON-serialisable: {exc}") from exc
        fields = tuple(data[name] for name in _FIELDS)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._submit(_Pending(body, fields, future), loop)
        return await future

    def _submit(self, item: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        """Queue ``item`` and see that it gets written: here, by waking the writer task."""
        wakeup = self._start(loop)
        self._pending.append(item)
        wakeup.set()

    def _start(self, loop: asyncio.AbstractEventLoop) -> asyncio.Event:
        if self._loop is not loop:
            if self._writer is not None and not self._writer.done():
                raise StorageError("the audit log is in use by another event loop")
            self._loop, self._wakeup, self._writer = loop, asyncio.Event(), None
        assert self._wakeup is not None
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_loop(), name="brickwork-audit-writer")
        return self._wakeup

    async def _write_loop(self) -> None:
        assert self._wakeup is not None
        wakeup = self._wakeup
        try:
            while True:
                if not self._pending:
                    if self._closed:
                        return
                    wakeup.clear()
                    await wakeup.wait()
                    continue
                batch = self._pending[: self.max_batch]
                del self._pending[: len(batch)]
                self._inflight = batch
                try:
                    rows = await self._write(batch)
                except Exception as exc:
                    self._inflight = []
                    _fail(batch, exc)
                    continue
                self._inflight = []
                self._settle(batch, rows)
        finally:
            # Only on cancellation or a bug: nobody must wait forever. (A batch being
            # written may still commit: its callers get an error, never a false "ok".)
            left, self._pending, self._inflight = [*self._inflight, *self._pending], [], []
            for item in left:
                if not item.future.done():
                    item.future.set_exception(StorageError("the audit writer stopped"))

    def _settle(self, batch: Sequence[_Pending], rows: Sequence[_Row]) -> None:
        """Count a committed batch and wake its callers with their sequence numbers."""
        self.batches += 1
        self.written += len(rows)
        for item, row in zip(batch, rows, strict=True):
            if _waiting(item):
                item.future.set_result(row[0])

    async def aclose(self) -> None:
        """Write every pending record, then close the database."""
        self._closed = True
        writer = self._writer
        if writer is not None and not writer.done() and self._wakeup is not None:
            if self._loop is asyncio.get_running_loop():
                self._wakeup.set()
                await asyncio.shield(writer)
            else:
                writer.cancel()
        await self._close()

    # --- reading --------------------------------------------------------------------

    async def verify(self) -> VerifyReport:
        """Check the whole chain: sequence, links, hashes, and that columns match records."""
        expected, prev, count = 1, GENESIS_HASH, 0
        after = _MIN_SEQ  # the first read also shows rows put before the chain's start
        while True:
            rows = await self._read(after, _READ_CHUNK)
            after = rows[-1][0] if rows else after
            if not rows:
                return VerifyReport(ok=True, count=count, head=prev)
            for row in rows:
                problem = _check_row(row, expected, prev)
                if problem is not None:
                    bad = min(row[0], expected)
                    return VerifyReport(ok=False, count=count, first_bad_seq=bad, reason=problem, head=prev)
                prev = row[-1]
                expected += 1
                count += 1

    async def export(self, out: TextIO, since_seq: int = 0) -> int:
        """Write rows with ``seq > since_seq`` to ``out`` as JSON lines; return how many."""
        after, count = since_seq, 0
        while True:
            rows = await self._read(after, _READ_CHUNK)
            if not rows:
                return count
            for row in rows:
                seq, body, prev_hash, digest = row[0], row[-3], row[-2], row[-1]
                # Canonical JSON (keys in order), with the stored body verbatim so the
                # line hashes exactly as stored.
                out.write(f'{{"hash":"{digest}","prev_hash":"{prev_hash}","record":{body},"seq":{seq}}}\n')
                count += 1
            after = rows[-1][0]


def _fail(batch: Sequence[_Pending], exc: BaseException) -> None:
    """Fail every caller of a batch that was not committed, with a :class:`StorageError`."""
    error = exc if isinstance(exc, StorageError) else StorageError(f"audit log: {exc!r}")
    for item in batch:
        if _waiting(item):
            item.future.set_exception(error)


def _waiting(item: _Pending) -> bool:
    """Whether the caller still waits (it may have been cancelled, or its loop closed)."""
    return not item.future.done() and not item.future.get_loop().is_closed()


def _check_row(row: _Row, expected: int, prev: str) -> str | None:
    seq, body, prev_hash, digest = row[0], row[-3], row[-2], row[-1]
    if seq < 1:
        return f"row {seq} lies outside the chain (sequence numbers start at 1)"
    if seq != expected:
        return f"row {expected} is missing (the next row is {seq})"
    if prev_hash != prev:
        return f"row {seq} does not link to row {seq - 1} (one of them was altered or replaced)"
    if chain_hash(prev, seq, body) != digest:
        return f"row {seq} does not match its hash (edited, or moved from another position)"
    try:
        record = json.loads(body)
    except ValueError:
        return f"row {seq} holds invalid JSON"
    for name, value in zip(_FIELDS, row[1 : 1 + len(_FIELDS)], strict=True):
        if not isinstance(record, dict) or record.get(name) != value:
            return f"row {seq}: column {name!r} differs from the hashed record"
    return None


# --- SQLite ----------------------------------------------------------------------

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
_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (the low byte of extended codes)
_INSERT = f"INSERT INTO audit_log ({', '.join(_ALL)}) VALUES ({', '.join('?' * len(_ALL))})"
_HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"


class _Busy(Exception):
    """Another connection holds the write lock: write this batch from a thread."""


class SQLiteAuditLog(_GroupCommitLog):
    """The audit log in a SQLite file, in WAL mode.

    ``durability="process"`` (the default) commits with ``synchronous=NORMAL``: a
    record whose ``record()`` returned survives a crash or ``kill -9`` of the server
    process, which is the promise the gateway makes, without an fsync per commit.
    Such a commit is only a write into the OS's page cache, so it is made on the
    event loop's thread, without a hop to a thread and back (see the module
    docstring). ``durability="power"`` uses ``synchronous=FULL``: it also survives
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
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.durability = durability
        self.path = str(path)
        if self.path == ":memory:":
            raise ConfigurationError("the audit log must be a file: an in-memory one would lose records")
        #: Commit on the event loop's thread (see the class docstring).
        self.on_loop = durability == "process" and not thread_writes
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

    def _write_sync(self, batch: Sequence[_Pending], checkpoint_first: bool = False) -> list[_Row]:
        # The lock matters only when an abandoned thread (its loop gone) still writes.
        with self._write_lock:
            if self._write_conn is None:
                self._write_conn = self._connect()
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
            if checkpoint_first:
                with contextlib.suppress(sqlite3.Error):  # a checkpoint is only housekeeping
                    self._checkpoint_sync()
            return _insert(self._write_conn, batch)

    # --- the loop path: "process" -----------------------------------------------------

    def _submit(self, item: _Pending, loop: asyncio.AbstractEventLoop) -> None:
        if not self.on_loop:
            super()._submit(item, loop)
            return
        if self._loop is not loop:
            old = self._loop
            if old is not None and not old.is_closed() and (self._handoff is not None or self._pending):
                raise StorageError("the audit log is in use by another event loop")
            # Records left by a closed loop (their callers are gone) go with the next batch.
            self._loop, self._flush_handle, self._handoff, self._ckpt_task = loop, None, None, None
        self._pending.append(item)
        if self._flush_handle is None and self._handoff is None:
            # Records appended until this runs (the rest of this loop iteration)
            # share its transaction.
            self._flush_handle = loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Commit what is pending in one transaction, on the loop, unless it would wait."""
        self._flush_handle = None
        if self._handoff is not None or not self._pending:
            return  # the thread's batch first; it calls back when done
        assert self._loop is not None
        batch = self._pending[: self.max_batch]
        del self._pending[: len(batch)]
        if self._pending:
            self._flush_handle = self._loop.call_soon(self._flush)
        conn = self._loop_conn
        if conn is None or self._restart_in_thread:
            self._hand_off(batch, checkpoint_first=self._restart_in_thread)
            return
        try:
            rows = _insert(conn, batch, wait=False)
        except _Busy:
            self._hand_off(batch)
            return
        except (sqlite3.Error, OSError) as exc:
            self._drop_stuck(conn)
            _fail(batch, StorageError(f"audit log {self.path}: {exc}"))
            return
        except Exception as exc:
            self._drop_stuck(conn)
            _fail(batch, exc)
            return
        self._settle(batch, rows)
        size = sum(len(item.body) for item in batch) + _ROW_BYTES * len(batch)
        self._unchecked_pages += _PAGES_PER_COMMIT + size // _BYTES_PER_PAGE
        self._maybe_checkpoint()

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
        try:
            rows = await self._thread(lambda: self._write_sync(batch, checkpoint_first))
        except asyncio.CancelledError:
            # The loop is going away: nobody must wait forever. (The batch may still
            # commit: its callers get an error, never a false "ok".)
            self._handoff = None
            left, self._pending = [*batch, *self._pending], []
            _fail(left, StorageError("the audit writer stopped"))
            raise
        except Exception as exc:
            _fail(batch, exc)
        else:
            self._settle(batch, rows)
        self._handoff = None
        if self._pending and self._flush_handle is None and self._loop is not None:
            self._flush_handle = self._loop.call_soon(self._flush)

    # --- checkpoints -----------------------------------------------------------------

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

    async def aclose(self) -> None:
        """Write every pending record, checkpoint the WAL, then close the database."""
        if not self.on_loop:
            await super().aclose()
            return
        self._closed = True
        if self._loop is asyncio.get_running_loop():
            while self._pending or self._handoff is not None:
                if self._handoff is not None:
                    await asyncio.wait([self._handoff])
                    continue
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                self._flush()
            if self._ckpt_task is not None:
                await asyncio.wait([self._ckpt_task])
        else:
            # Its loop is gone: nothing can wait for these records any more.
            left, self._pending = self._pending, []
            _fail(left, StorageError("the audit log was closed from another event loop"))
        if self._loop_conn is not None:
            with contextlib.suppress(sqlite3.Error, OSError):
                await asyncio.to_thread(self._checkpoint_sync)
        await self._close()

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


def _insert(conn: sqlite3.Connection, batch: Sequence[_Pending], *, wait: bool = True) -> list[_Row]:
    """Append ``batch`` in one transaction after the stored head.

    With ``wait=False`` (the loop's connection, whose busy timeout is zero) a
    database locked by another connection raises :class:`_Busy`, with nothing written.
    """
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if not wait and exc.sqlite_errorcode & 0xFF in _BUSY:
            raise _Busy from exc
        raise
    try:
        # The head is read under the write lock: other processes may append too.
        rows = _chain(conn.execute(_HEAD).fetchone(), batch)
        conn.executemany(_INSERT, rows)
        conn.execute("COMMIT")
    except BaseException as exc:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        if (
            not wait
            and isinstance(exc, sqlite3.OperationalError)
            and exc.sqlite_errorcode & 0xFF in _BUSY
            and not conn.in_transaction
        ):
            raise _Busy from exc
        raise
    return rows


# --- PostgreSQL ------------------------------------------------------------------


class PostgresAuditLog(_GroupCommitLog):
    """The audit log in PostgreSQL, shared by every replica.

    Each batch is one transaction that takes ``LOCK TABLE audit_log IN EXCLUSIVE
    MODE`` (readers still read), reads the head, and appends with ``COPY``.
    """

    def __init__(self, dsn: str, *, max_batch: int = 5_000) -> None:
        super().__init__(max_batch=max_batch)
        self.dsn = dsn
        self._writer_conn = PgConnection(dsn, setup=self._migrate)
        self._reader_conn = PgConnection(dsn, setup=self._migrate)

    @staticmethod
    async def _migrate(conn: PgConn) -> None:
        await apply_postgres(conn, "audit", MIGRATIONS)

    async def _write(self, batch: Sequence[_Pending]) -> list[_Row]:
        async with self._writer_conn.use() as conn, conn.transaction():
            await conn.execute("LOCK TABLE audit_log IN EXCLUSIVE MODE")
            cursor = await conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
            head = await cursor.fetchone()
            rows = _chain((int(head[0]), str(head[1])) if head else None, batch)
            async with cursor.copy(f"COPY audit_log ({', '.join(_ALL)}) FROM STDIN") as copy:
                for row in rows:
                    await copy.write_row(row)
        return rows

    async def _read(self, after_seq: int, limit: int) -> list[_Row]:
        async with self._reader_conn.use() as conn:
            cursor = await conn.execute(
                f"SELECT {', '.join(_ALL)} FROM audit_log WHERE seq > %s ORDER BY seq LIMIT %s",
                (after_seq, limit),
            )
            rows = await cursor.fetchall()
        return [(int(row[0]), *row[1:]) for row in rows]

    async def _close(self) -> None:
        await self._writer_conn.aclose()
        await self._reader_conn.aclose()


def open_audit_log(url: str, **options: Any) -> SQLiteAuditLog | PostgresAuditLog:
    """An audit log for ``url``: ``sqlite:///path``, a file path, or ``postgresql://...``."""
    if is_postgres(url):
        return PostgresAuditLog(url, **options)
    return SQLiteAuditLog(sqlite_path(url), **options)
