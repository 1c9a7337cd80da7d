"""Opening a SQLite store: owner-only file, WAL, ``synchronous`` FULL or NORMAL, migrated."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from brickwork.storage.migrations import Migration, apply_sqlite

__all__ = ["connect"]


def connect(
    path: str,
    component: str,
    migrations: Sequence[Migration],
    *,
    timeout: float = 30.0,
    synchronous: Literal["FULL", "NORMAL"] = "FULL",
) -> sqlite3.Connection:
    """A migrated autocommit connection usable from any thread (one at a time).

    A new file is created readable by its owner only.
    """
    if path != ":memory:":
        _create_private(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    try:
        _wal(conn, path, timeout)
        # FULL: a commit is fsynced before it returns, so it survives a power cut
        # too. NORMAL in WAL mode survives a crash of the process (the commit is in
        # the OS's WAL file) but not of the machine, and skips an fsync per commit.
        conn.execute(f"PRAGMA synchronous={'NORMAL' if synchronous == 'NORMAL' else 'FULL'}")
        apply_sqlite(conn, component, migrations)
    except BaseException:
        conn.close()
        raise
    return conn


def _create_private(path: str) -> None:
    """Create the file, owner-only, if it is missing; never open one that exists.

    Closing any descriptor of a file drops every POSIX lock this process holds on
    it, those of SQLite's open connections too: another process could then take
    the database for itself (e.g. checkpoint and delete the WAL on its close) under
    our connections' feet.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if os.path.exists(path):
        return
    with contextlib.suppress(FileExistsError):  # created meanwhile: it is not ours to open
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600))


def _wal(conn: sqlite3.Connection, path: str, timeout: float) -> None:
    # Switching to WAL needs the database to itself and SQLite answers "locked"
    # at once, without its busy handler, when another connection is opening the
    # same new file: retry. Once set, WAL mode is stored in the file.
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            if path == ":memory:" or str(mode).lower() == "wal":
                return
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
