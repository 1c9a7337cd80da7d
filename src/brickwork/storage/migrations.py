"""Schema migrations: small named functions, applied in order, recorded in a table.

Each store has its own list (``component``), e.g. ``[m001_initial]`` for the
keys store. A migration returns the SQL statements for a dialect; the runner
applies every migration not yet in ``brickwork_migrations`` for that component,
each in one transaction together with its bookkeeping row, so a crash never
leaves a migration half applied. Migrations are never edited once released: a
change is a new function appended to the list.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any, Literal

import psycopg

__all__ = ["MIGRATIONS_TABLE", "Dialect", "Migration", "apply_postgres", "apply_sqlite"]

Dialect = Literal["sqlite", "postgres"]
Migration = Callable[[Dialect], Sequence[str]]

MIGRATIONS_TABLE = "brickwork_migrations"

_CREATE = f"""CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} (
    component TEXT NOT NULL,
    name TEXT NOT NULL,
    applied_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (component, name)
)"""

#: Any constant: it serialises migration runs of replicas starting at once.
_PG_LOCK = 0x627277_6D6967  # "brw" "mig"


def apply_sqlite(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> list[str]:
    """Apply what is missing; return the names applied now.

    ``conn`` must be in autocommit mode (``isolation_level=None``): the runner
    opens its own ``BEGIN IMMEDIATE`` transactions, which also serialise
    processes that open the same file at once.
    """
    applied_now: list[str] = []
    conn.execute(_CREATE)
    for migration in migrations:
        name = migration.__name__
        conn.execute("BEGIN IMMEDIATE")
        try:
            done = conn.execute(
                f"SELECT 1 FROM {MIGRATIONS_TABLE} WHERE component = ? AND name = ?", (component, name)
            ).fetchone()
            if done is None:
                for statement in migration("sqlite"):
                    conn.execute(statement)
                conn.execute(
                    f"INSERT INTO {MIGRATIONS_TABLE} (component, name, applied_at) VALUES (?, ?, ?)",
                    (component, name, time.time()),
                )
                applied_now.append(name)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return applied_now


async def apply_postgres(
    conn: psycopg.AsyncConnection[Any], component: str, migrations: Sequence[Migration]
) -> list[str]:
    """Apply what is missing, in one transaction under an advisory lock."""
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_PG_LOCK,))
        await conn.execute(_CREATE)
        cursor = await conn.execute(f"SELECT name FROM {MIGRATIONS_TABLE} WHERE component = %s", (component,))
        done = {str(row[0]) for row in await cursor.fetchall()}
        for migration in migrations:
            name = migration.__name__
            if name in done:
                continue
            for statement in migration("postgres"):
                await conn.execute(statement)
            await conn.execute(
                f"INSERT INTO {MIGRATIONS_TABLE} (component, name, applied_at) VALUES (%s, %s, %s)",
                (component, name, time.time()),
            )
            applied_now.append(name)
    return applied_now
