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

**Group commit.** Records are not written one transaction each: one writer task
takes every record waiting at that moment, writes them in one transaction
(one fsync), then wakes each caller. Under load, batches grow by themselves.
The writer reads the chain's head inside that transaction, under a write lock
(``BEGIN IMMEDIATE`` / ``LOCK TABLE``), so several processes or replicas may
append to one log, and after a crash the chain continues from the last
committed row.

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


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value that the chain hashes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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
        self._pending.append(_Pending(body, fields, future))
        self._start(loop).set()
        return await future

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
                    error = exc if isinstance(exc, StorageError) else StorageError(f"audit log: {exc!r}")
                    for item in batch:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                self._inflight = []
                self.batches += 1
                self.written += len(rows)
                for item, row in zip(batch, rows, strict=True):
                    if not item.future.done():  # the caller may have been cancelled
                        item.future.set_result(row[0])
        finally:
            # Only on cancellation or a bug: nobody must wait forever. (A batch being
            # written may still commit: its callers get an error, never a false "ok".)
            left, self._pending, self._inflight = [*self._inflight, *self._pending], [], []
            for item in left:
                if not item.future.done():
                    item.future.set_exception(StorageError("the audit writer stopped"))

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


class SQLiteAuditLog(_GroupCommitLog):
    """The audit log in a SQLite file, in WAL mode, written from a thread.

    ``durability="process"`` (the default) commits with ``synchronous=NORMAL``: a
    record whose ``record()`` returned survives a crash or ``kill -9`` of the server
    process, which is the promise the gateway makes, without an fsync per commit.
    ``durability="power"`` uses ``synchronous=FULL``: it also survives a power cut
    or kernel crash, at about a millisecond of fsync per commit (group commit
    shares it between concurrent requests). The file is created readable by its
    owner only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_batch: int = 5_000,
        durability: Literal["process", "power"] = "process",
    ) -> None:
        super().__init__(max_batch=max_batch)
        self.durability = durability
        self.path = str(path)
        if self.path == ":memory:":
            raise ConfigurationError("the audit log must be a file: an in-memory one would lose records")
        self._write_conn: sqlite3.Connection | None = None
        self._read_conn: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        sync: Literal["FULL", "NORMAL"] = "FULL" if self.durability == "power" else "NORMAL"
        return connect(self.path, "audit", MIGRATIONS, synchronous=sync)

    async def _thread(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"audit log {self.path}: {exc}") from exc

    async def _write(self, batch: Sequence[_Pending]) -> list[_Row]:
        return await self._thread(lambda: self._write_sync(batch))

    def _write_sync(self, batch: Sequence[_Pending]) -> list[_Row]:
        # Only the writer task calls this, one batch at a time.
        if self._write_conn is None:
            self._write_conn = self._connect()
        conn = self._write_conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            head = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
            rows = _chain(head, batch)
            conn.executemany(
                f"INSERT INTO audit_log ({', '.join(_ALL)}) VALUES ({', '.join('?' * len(_ALL))})", rows
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return rows

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
            with self._read_lock:
                for conn in (self._write_conn, self._read_conn):
                    if conn is not None:
                        conn.close()
                self._write_conn = self._read_conn = None

        await asyncio.to_thread(close)


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
