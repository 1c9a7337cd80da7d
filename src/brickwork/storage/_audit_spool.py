"""The SQLite audit log's spool: a record is durable after one ``write()``.

With ``durability="process"`` a record only has to survive a crash of the server
process, and a ``write()`` into a file does that as well as a SQLite commit does
(both end in the OS's page cache), at a fraction of the cost: a commit takes
row, index and WAL page writes and half a dozen file locks. So each process
appends its records' canonical JSON, one line each, to a spool file of its own
(``<database>-spool-<pid>-<random>``), wakes the callers, and moves the records
into the hash-chained table a few milliseconds later, many per transaction.

Nothing is lost or written twice:

* the table ``audit_spool`` says, per spool, how many of its bytes are in the
  log; a batch's rows and that number are committed in one transaction;
* a spool's row is made before its file, and removed after it (a row without a
  file is left-over bookkeeping);
* the owner holds an exclusive ``flock`` on its spool while it lives. Whoever
  opens the log next (another process, a restarted server, ``brickwork audit
  verify``) takes over the spools whose lock it can take (their process died),
  appends what they hold past their number, and deletes them.

A spool's lines are canonical JSON, so a recovered record's row is the very
row the dead process would have written.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import secrets
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from brickwork.storage._audit_chain import _FIELDS, _Pending, _Row

__all__ = ["Spool", "recover_spools"]

log = logging.getLogger(__name__)

Insert = Callable[[sqlite3.Connection, Sequence[_Pending], "SpoolMark | None"], list[_Row]]


@dataclass(frozen=True)
class SpoolMark:
    """A spool's name and how many of its bytes are in the log after a commit."""

    name: str
    ingested: int


class Spool:
    """This process's spool file (append only, owner-only, locked while it lives)."""

    def __init__(self, database: str) -> None:
        path = Path(database)
        self.name = f"{path.name}-spool-{os.getpid()}-{secrets.token_hex(4)}"
        self.path = path.with_name(self.name)
        self.size = 0
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    def open(self, conn: sqlite3.Connection) -> None:
        """Register the spool, then create and lock its file (blocking: in a thread)."""
        conn.execute("INSERT INTO audit_spool (name, ingested) VALUES (?, 0)", (self.name,))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def fileno(self) -> int:
        assert self._fd is not None
        return self._fd

    def write(self, data: bytes) -> int:
        """Append ``data`` (whole lines); return the spool's size after it."""
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        self.size += len(data)
        return self.size

    def remove(self, conn: sqlite3.Connection) -> None:
        """Delete the spool once everything in it is in the log (file first, then its row)."""
        self.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        conn.execute("DELETE FROM audit_spool WHERE name = ?", (self.name,))

    def close(self) -> None:
        """Close the file, keeping it (and the lock goes): a later opener recovers it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def recover_spools(conn: sqlite3.Connection, database: str, insert: Insert) -> int:
    """Append what spools of dead processes hold past their mark; delete them.

    Returns the number of records recovered. Blocking: call it from a thread,
    with a connection that may wait for the write lock.
    """
    directory = Path(database).parent
    recovered = 0
    for (name,) in conn.execute("SELECT name FROM audit_spool").fetchall():
        path = directory / str(name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            conn.execute("DELETE FROM audit_spool WHERE name = ?", (name,))
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its process is alive and moves it itself
            recovered += _recover_one(conn, str(name), fd, insert)
            os.unlink(path)
            conn.execute("DELETE FROM audit_spool WHERE name = ?", (name,))
        finally:
            os.close(fd)
    return recovered


def _recover_one(conn: sqlite3.Connection, name: str, fd: int, insert: Insert) -> int:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    data = b"".join(chunks)
    # The mark is read again under the write lock, in the transaction that moves
    # the rest: it is the committed truth about what is in the log.
    conn.execute("BEGIN IMMEDIATE")
    try:
        row = conn.execute("SELECT ingested FROM audit_spool WHERE name = ?", (name,)).fetchone()
        start = int(row[0]) if row is not None else len(data)
        batch = _parse(data, start, name)
    finally:
        conn.execute("ROLLBACK")
    if batch:
        insert(conn, batch, SpoolMark(name, len(data)))
        log.warning(
            "audit log: moved %d records from the spool of a process that died (%s)", len(batch), name
        )
    return len(batch)


def _parse(data: bytes, start: int, name: str) -> list[_Pending]:
    """The spool's complete lines from byte ``start`` on, as records to append."""
    lines = data[start:].split(b"\n")
    if lines[-1]:  # an unfinished last line: its write never returned, nobody was answered
        log.warning(
            "audit log: spool %s ends in an unfinished line (%d bytes), skipped", name, len(lines[-1])
        )
    batch: list[_Pending] = []
    for line in lines[:-1]:
        try:
            body = line.decode()
            record = json.loads(body)
            fields = tuple(record[field] for field in _FIELDS)
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            log.error("audit log: spool %s has an unreadable line (%d bytes), skipped", name, len(line))
            continue
        batch.append(_Pending(body, fields, None))
    return batch
