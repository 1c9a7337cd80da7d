"""One transaction of the SQLite audit log: a batch chained after the stored head."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Sequence

from brickwork.storage._audit_chain import _ALL, _chain, _fail, _Pending, _Row
from brickwork.storage._audit_spool import SpoolMark

__all__ = ["_Busy", "_fail_spooling", "_insert"]

_BUSY = (5, 6)  # SQLITE_BUSY, SQLITE_LOCKED (the low byte of extended codes)
_INSERT = f"INSERT INTO audit_log ({', '.join(_ALL)}) VALUES ({', '.join('?' * len(_ALL))})"
_HEAD = "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"
_MARK = "UPDATE audit_spool SET ingested = ? WHERE name = ?"


class _Busy(Exception):
    """Another connection holds the write lock: write this batch from a thread."""


def _fail_spooling(batch: Sequence[_Pending], error: BaseException) -> None:
    """Fail the callers of records that did not reach the spool."""
    _fail(batch, error)
    for item in batch:
        spooled, item.spooled = item.spooled, None
        if spooled is not None and not spooled.done() and not spooled.get_loop().is_closed():
            spooled.set_exception(error)


def _insert(
    conn: sqlite3.Connection, batch: Sequence[_Pending], *, wait: bool = True, mark: SpoolMark | None = None
) -> list[_Row]:
    """Append ``batch`` in one transaction after the stored head (and, with ``mark``,
    record in the same transaction how much of that spool is in the log now).

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
        if mark is not None:
            conn.execute(_MARK, (mark.ingested, mark.name))
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
