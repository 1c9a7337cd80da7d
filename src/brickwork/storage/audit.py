"""The audit log: one hash-chained row per request, durable before the answer leaves.

Each :class:`~brickwork.contracts.record.CallRecord` becomes one row: its
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
once the record is durable (a PostgreSQL commit; for SQLite, a commit in WAL
mode with ``synchronous`` FULL for ``durability="power"``, or, for the default
``durability="process"``, its line written to the process's spool, see below), so
an answer whose record was not kept is never given, also if the server process
dies a moment later.

**Group commit.** Records are not written one transaction each: every record
waiting at that moment is written in one transaction, then each caller is woken.
Under load, batches grow by themselves. The chain's head is read inside that
transaction, under a write lock (``BEGIN IMMEDIATE`` / ``LOCK TABLE``), so several
processes or replicas may append to one log, and after a crash the chain
continues from the last committed row.

**Who writes.** PostgreSQL: a writer task, with the async driver. SQLite with
``durability="power"``: a writer task hands each batch to a thread, because the
commit's fsync must not stall the event loop. SQLite with the default
``durability="process"`` only has to survive a crash of the server process, and a
``write()`` into a file does that as well as a commit does. So a record is first
*spooled*: appended, one canonical-JSON line each, to this process's spool file
(``<database>-spool-<pid>-<random>``), and its caller is answered. Each record
is written at once, so its caller goes on without suspending (one small
``write()`` costs less than the task step that waiting for a shared one would);
records queue and share a write only while the spool is being opened or a commit
is due (so that a caller recording in a tight loop lets the commit run). Within about 50 ms (at
once for :meth:`append`, which returns the sequence number) the spooled records
are committed to the chain, many per transaction; the transaction also records
how much of the spool is in, so a record is never chained twice. A process that
dies leaves its spool behind (its ``flock`` on it goes with it); the next
process to open the log (a restarted server, ``brickwork audit verify``) chains
what it holds and deletes it. See :mod:`brickwork.storage._audit_spool`. The
commits themselves are made *on the event loop's thread* (a commit is only a
write into the OS's page cache, far cheaper than the hop to a thread and back).
The loop never waits on a lock or the disk:

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

:meth:`aclose` commits every pending record (and removes the spool), then
checkpoints. :meth:`verify` and :meth:`export` first commit this process's
spooled records, so they see everything recorded so far (another live process's
records show once it commits them, within about 50 ms after it recorded them).
``SQLiteAuditLog(..., spool=False)`` commits before answering instead (the way
before the spool; about three times the CPU and latency per record).

**What the chain proves.** :meth:`verify` finds an edited, deleted or reordered
row, or an inserted one. It cannot see rows cut from the *end*, nor a chain
rewritten from some row on by someone able to write the database: for that,
keep the head hash (in :class:`VerifyReport`) somewhere else now and then.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from brickwork.storage._audit_chain import (
    _ALL,
    GENESIS_HASH,
    MIGRATIONS,
    AuditLog,
    VerifyReport,
    _chain,
    _GroupCommitLog,
    _Pending,
    _Row,
    canonical_json,
    chain_hash,
)
from brickwork.storage._audit_sqlite import SQLiteAuditLog
from brickwork.storage._postgres import PgConn, PgConnection
from brickwork.storage.migrations import apply_postgres
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
