"""The audit log's chain and its group-commit writer, shared by the SQLite and
PostgreSQL logs (see :mod:`brickwork.storage.audit` for what it promises)."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, TypeVar

from brickwork.contracts.errors import StorageError
from brickwork.contracts.record import CallRecord
from brickwork.storage._audit_json import canonical_json, record_json
from brickwork.storage.migrations import Dialect

__all__ = ["GENESIS_HASH", "MIGRATIONS", "AuditLog", "VerifyReport", "canonical_json", "chain_hash"]

T = TypeVar("T")

GENESIS_HASH = "0" * 64

#: Columns besides ``body`` copied out of the record, so rows can be queried.
#: :meth:`verify` checks that each equals the hashed record's value.
_FIELDS = ("time", "trace_id", "tenant", "plugin", "version", "outcome")
_ALL = ("seq", *_FIELDS, "body", "prev_hash", "hash")
_READ_CHUNK = 2_000
_MIN_SEQ = -(2**63)


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
    #: Resolved with the row's ``seq`` once committed; ``None`` when nobody asks
    #: (a record already made durable in a spool, see ``_audit_spool``).
    future: asyncio.Future[int] | None
    #: Where the record's line in the spool ends (0: not spooled).
    end: int = 0
    #: The line to spool (the body and a newline, UTF-8), until it is written.
    line: bytes = b""
    #: Resolved once the line is in the spool (for a caller who waits for that).
    spooled: asyncio.Future[None] | None = None


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


def m002_spool(dialect: Dialect) -> list[str]:
    """SQLite's spools (``_audit_spool``): how much of each one is in the log."""
    if dialect != "sqlite":
        return []
    return ["CREATE TABLE audit_spool (name TEXT PRIMARY KEY, ingested INTEGER NOT NULL)"]


MIGRATIONS = [m001_initial, m002_spool]


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
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._submit(_pending(record, future), loop)
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
                if item.future is not None and not item.future.done():
                    item.future.set_exception(StorageError("the audit writer stopped"))

    def _settle(self, batch: Sequence[_Pending], rows: Sequence[_Row]) -> None:
        """Count a committed batch and wake its callers with their sequence numbers."""
        self.batches += 1
        self.written += len(rows)
        for item, row in zip(batch, rows, strict=True):
            if _waiting(item):
                assert item.future is not None
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


def _pending(record: CallRecord, future: asyncio.Future[int] | None) -> _Pending:
    """A record to append: its canonical JSON and its queryable columns."""
    try:
        body = record_json(record)
    except (TypeError, ValueError) as exc:
        raise StorageError(f"call record {record.trace_id} is not JSON-serialisable: {exc}") from exc
    fields = (record.time, record.trace_id, record.tenant, record.plugin, record.version, record.outcome)
    # What the table would refuse is refused here, before the record is taken: once
    # taken (a spooled record's caller is answered), only the database being
    # unavailable may keep it out, and that passes.
    time, trace_id, tenant, plugin, version, outcome = fields
    if not isinstance(time, int | float) or isinstance(time, bool):
        raise StorageError(f"call record {trace_id!r} has no time")
    for name, value, required in (
        ("trace_id", trace_id, True),
        ("tenant", tenant, True),
        ("outcome", outcome, True),
        ("plugin", plugin, False),
        ("version", version, False),
    ):
        if not (isinstance(value, str) or (value is None and not required)):
            kind = type(value).__name__
            raise StorageError(f"call record {trace_id!r}: {name} must be a string, not {kind}")
    return _Pending(body, fields, future)


def _fail(batch: Sequence[_Pending], exc: BaseException) -> None:
    """Fail every caller of a batch that was not committed, with a :class:`StorageError`."""
    error = exc if isinstance(exc, StorageError) else StorageError(f"audit log: {exc!r}")
    for item in batch:
        if _waiting(item):
            assert item.future is not None
            item.future.set_exception(error)


def _waiting(item: _Pending) -> bool:
    """Whether the caller still waits (it may have been cancelled, or its loop closed)."""
    future = item.future
    return future is not None and not future.done() and not future.get_loop().is_closed()


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
