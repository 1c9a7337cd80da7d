"""The SQLite audit log's spool: a record is durable after one ``write()``.

With ``durability="process"`` a record only has to survive a crash of the server
process, and a ``write()`` into a file does that as well as a SQLite commit does
(both end in the OS's page cache), at a fraction of the cost: a commit takes
row, index and WAL page writes and half a dozen file locks. So each process
appends its records' canonical JSON, one line each, to a spool file of its own
(``<database>-spool-<pid>-<random>``), wakes the callers, and moves the records
into the hash-chained table within about 50 ms, many per transaction.

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
row the dead process would have written. Its first line, ``#<n>``, says how many
bytes of records the spool had held before that line (the mark counts from the
spool's start): once everything in it is in the log and it has grown past
:data:`MAX_BYTES`, the file is cut back to a new first line, and goes on.
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

#: A spool all in the log is cut back once it holds this many bytes of records.
MAX_BYTES = 16 << 20

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
        #: Bytes of records written since the spool began (what a mark counts),
        #: how many of them were before the file's first line, that line's length,
        #: and how many are committed to the log (the mark last committed).
        self.size = 0
        self.base = 0
        self.header = 0
        self.committed = 0
        #: A failed write could not be undone: no more records go here.
        self.failed = False
        self._fd: int | None = None

    @property
    def is_open(self) -> bool:
        return self._fd is not None

    @property
    def usable(self) -> bool:
        return self._fd is not None and not self.failed

    def open(self, conn: sqlite3.Connection) -> None:
        """Create, lock and start the file, then register it (blocking: in a thread).

        In that order: an opener recovering spools meanwhile finds either no row
        (and leaves the file alone) or a row whose file is locked (alive).
        """
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _write_all(fd, b"#0\n")
            conn.execute("INSERT INTO audit_spool (name, ingested) VALUES (?, 0)", (self.name,))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            raise
        self.header = 3
        self._fd = fd

    def write(self, data: bytes) -> int:
        """Append ``data`` (whole lines); return the spool's size after it.

        A failed write is undone (the file cut back to its last whole line); if
        that fails too, the spool takes no more records (:attr:`failed`).
        """
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
        except OSError:
            try:
                os.ftruncate(self._fd, self.header + self.size - self.base)
            except OSError:
                self.failed = True
            raise
        self.size += len(data)
        return self.size

    def cut_back(self) -> None:
        """Empty the file (call only when all of it is in the log): a new first line
        carries the count on. (Cut before the line is written, a crash leaves an
        empty file: nothing to recover, rightly.)"""
        assert self._fd is not None
        line = f"#{self.size}\n".encode()
        os.ftruncate(self._fd, 0)
        self.header = 0
        _write_all(self._fd, line)
        self.header, self.base = len(line), self.size

    @property
    def held(self) -> int:
        """Bytes of records in the file now."""
        return self.size - self.base

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


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def recover_spools(conn: sqlite3.Connection, database: str, insert: Insert) -> int:
    """Append what spools of dead processes hold past their mark; delete them.

    Returns the number of records recovered. Blocking: call it from a thread,
    with a connection that may wait for the write lock.
    """
    directory = Path(database).parent
    recovered = 0
    names = {str(name) for (name,) in conn.execute("SELECT name FROM audit_spool").fetchall()}
    for name in sorted(names):
        path = directory / name
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
            moved = _recover_one(conn, name, fd, insert)
            if moved is None:
                continue
            recovered += moved
            with contextlib.suppress(FileNotFoundError):  # another opener was quicker
                os.unlink(path)
            conn.execute("DELETE FROM audit_spool WHERE name = ?", (name,))
        finally:
            os.close(fd)
    # A file without a row: its process died between making and registering it,
    # before it took a record. Removed once its lock shows that.
    for path in directory.glob(f"{Path(database).name}-spool-*"):
        if path.name not in names:
            _remove_orphan(conn, path)
    return recovered


def _remove_orphan(conn: sqlite3.Connection, path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # alive: about to register it
        registered = conn.execute("SELECT 1 FROM audit_spool WHERE name = ?", (path.name,)).fetchone()
        if registered is None and os.read(fd, 64).rstrip(b"\n") in (b"", b"#0"):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    finally:
        os.close(fd)


def _recover_one(conn: sqlite3.Connection, name: str, fd: int, insert: Insert) -> int | None:
    """Chain what the spool holds past its mark; the count, or ``None`` to leave it be."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    data = b"".join(chunks)
    # Its owner is dead and we hold its lock: nobody else moves the mark now.
    row = conn.execute("SELECT ingested FROM audit_spool WHERE name = ?", (name,)).fetchone()
    if row is None:
        return None  # another opener took it over and removed it meanwhile
    # The first line says how many bytes of records came before the file's start.
    first, _, records = data.partition(b"\n")
    if not first.startswith(b"#") or not first[1:].isdigit():
        if data:
            log.error("audit log: spool %s does not start with its count line; left as it is", name)
            return None
        return 0  # cut back (or just made) and then the process died: nothing in it
    base = int(first[1:])
    start = max(0, int(row[0]) - base)
    batch = _parse(records, start, name)
    if batch:
        insert(conn, batch, SpoolMark(name, base + len(records)))
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
