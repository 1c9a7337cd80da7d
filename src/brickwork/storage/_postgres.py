"""One PostgreSQL connection, opened when first used and opened again after a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg

from brickwork.contracts.errors import StorageError
from brickwork.storage.urls import redact_url

__all__ = ["PgConn", "PgConnection"]

PgConn = psycopg.AsyncConnection[tuple[Any, ...]]


class PgConnection:
    """A lazily opened autocommit connection, lent to one task at a time.

    A connection that fails (server restart, network cut) is dropped, so the next
    use connects afresh; the failing call gets a :class:`StorageError`.
    """

    def __init__(
        self,
        dsn: str,
        *,
        setup: Callable[[PgConn], Awaitable[object]] | None = None,
        connect_timeout: float = 5.0,
    ) -> None:
        self.dsn = dsn
        self._setup = setup
        self._connect_timeout = connect_timeout
        self._conn: PgConn | None = None
        self._lock = asyncio.Lock()

    async def connect(self) -> PgConn:
        """A new connection of our own (the caller closes it)."""
        try:
            conn: PgConn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, connect_timeout=max(1, round(self._connect_timeout))
            )
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to PostgreSQL at {redact_url(self.dsn)}: {exc}") from exc
        return conn

    @asynccontextmanager
    async def use(self) -> AsyncIterator[PgConn]:
        async with self._lock:
            if self._conn is None or self._conn.closed:
                conn = await self.connect()
                try:
                    if self._setup is not None:
                        await self._setup(conn)
                except BaseException:
                    await conn.close()
                    raise
                self._conn = conn
            try:
                yield self._conn
            except psycopg.Error as exc:
                if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or self._conn.broken:
                    await self._drop()
                raise StorageError(f"PostgreSQL: {type(exc).__name__}: {exc}") from exc
            except BaseException:
                # Cancelled mid-query: the connection's state is unknown.
                if self._conn is not None and not self._conn.closed and self._conn.info.transaction_status:
                    await self._drop()
                raise

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.closed:
            with suppress(psycopg.Error):
                await conn.close()

    async def aclose(self) -> None:
        async with self._lock:
            await self._drop()
