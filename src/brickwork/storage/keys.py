"""API keys: who may call which plugins, for which tenant, under which limits.

A raw key looks like ``bw_<id>_<secret>``: ``id`` is 16 hex digits, stored in
the clear and shown by ``brickwork keys list``; ``secret`` is 32 random bytes
(``secrets.token_urlsafe``) and is shown once, when the key is created. Only a
SHA-256 hash of it is stored.

Authentication is on every request's path, so :class:`KeyStore` implementations
keep authenticated keys in a small in-process cache for ``cache_ttl`` seconds
(default 5). Revoking through the same store instance takes effect at once;
a revocation made elsewhere (the CLI, another replica) is seen within
``cache_ttl``. Expiry is checked on every call, cached or not. Failed lookups
are not cached: they cost a query, but cannot fill memory.

::

    store = open_key_store("sqlite:///var/lib/brickwork/keys.db")
    key, raw = await store.create(tenant="acme", plugins=["sentiment*", "openai:*"])
    principal = await store.authenticate(raw)   # ApiKey, or AuthenticationError
"""

from __future__ import annotations

import asyncio
import builtins
import hashlib
import hmac
import json
import os
import re
import secrets
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from fnmatch import fnmatchcase
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ValidationError

from brickwork.contracts.clock import SystemClock
from brickwork.contracts.errors import (
    AuthenticationError,
    InvalidRequestError,
    KeyNotFoundError,
    StorageError,
)
from brickwork.contracts.policy import BudgetPolicy, RateLimitPolicy
from brickwork.storage._postgres import PgConn, PgConnection
from brickwork.storage._sqlite import connect
from brickwork.storage.migrations import Dialect, apply_postgres
from brickwork.storage.urls import is_postgres, sqlite_path

__all__ = [
    "ApiKey",
    "KeyStore",
    "PostgresKeyStore",
    "SQLiteKeyStore",
    "open_key_store",
]

T = TypeVar("T")

KEY_PREFIX = "bw"
_ID_BYTES = 8
_SECRET_BYTES = 32
_RAW_RE = re.compile(r"bw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_PATTERN_RE = re.compile(r"[A-Za-z0-9_.:*?\[\]!/-]{1,200}")
_INVALID = "invalid API key"
_MISSING_HASH = "0" * 64  # compared against when the id is unknown, to spend the same time


class _Time(Protocol):
    """The part of :class:`~brickwork.contracts.clock.Clock` a key store uses."""

    def now(self) -> float: ...
    def time(self) -> float: ...


@dataclass(frozen=True)
class ApiKey:
    """One API key, without its secret. A :class:`~brickwork.contracts.request.Principal`.

    Attributes:
        plugins: ``fnmatch`` patterns over plugin names (``sentiment*``) and model ids
            of passthrough calls (``openai:*``). Matching is case-sensitive.
        admin: may use the admin API. It grants no plugin: ``plugins`` still decides.
        expires_at: wall-clock seconds; ``None`` for never.
        rate_limit: a ``RateLimitPolicy``-shaped override for this key's calls.
        budget: a ``BudgetPolicy``-shaped override for this key's calls.
    """

    id: str
    tenant: str
    plugins: tuple[str, ...]
    admin: bool = False
    expires_at: float | None = None
    rate_limit: dict[str, Any] | None = None
    budget: dict[str, Any] | None = None
    name: str = ""
    created_at: float = 0.0
    revoked: bool = False

    def __hash__(self) -> int:  # the dict fields are not hashable; the id identifies the key
        return hash(self.id)

    def allows(self, plugin: str) -> bool:
        """Whether ``plugin`` (a plugin name or a ``provider:model`` id) matches a pattern."""
        return any(fnmatchcase(plugin, pattern) for pattern in self.plugins)

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """Everything about the key that may be shown (there is no secret in it)."""
        data = asdict(self)
        data["plugins"] = list(self.plugins)
        return data


class KeyStore(Protocol):
    """Where API keys live. Implementations: :class:`SQLiteKeyStore`, :class:`PostgresKeyStore`."""

    async def create(
        self,
        *,
        tenant: str,
        plugins: Sequence[str],
        admin: bool = False,
        expires_at: float | None = None,
        rate_limit: dict[str, Any] | None = None,
        budget: dict[str, Any] | None = None,
        name: str = "",
    ) -> tuple[ApiKey, str]:
        """Create a key; return it and its raw form, which is never available again."""
        ...

    async def authenticate(self, raw: str) -> ApiKey:
        """The key ``raw`` stands for. Raises :class:`AuthenticationError`."""
        ...

    async def list(self) -> builtins.list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        ...

    async def revoke(self, key_id: str) -> None:
        """Revoke a key (again is fine). Raises :class:`KeyNotFoundError`."""
        ...

    async def aclose(self) -> None: ...


def _secret_hash(key_id: str, secret: str) -> str:
    # SHA-256, not a slow password hash: the secret is 256 random bits, so there is
    # no dictionary to try and brute force is out of reach either way, while a slow
    # hash (bcrypt, argon2) would add milliseconds of CPU to every request. The id
    # is hashed with it so a hash is bound to its row.
    return hashlib.sha256(f"{key_id}:{secret}".encode()).hexdigest()


@dataclass(frozen=True)
class _Row:
    key: ApiKey
    secret_hash: str


def _validate_override(model: type[BaseModel], value: dict[str, Any] | None, what: str) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        raise InvalidRequestError(f"{what} must be a mapping")
    try:
        model.model_validate(value)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or what}: {e['msg']}" for e in exc.errors())
        raise InvalidRequestError(f"{what}: {problems}") from None


class _KeyStoreBase:
    """Validation, hashing and the authentication cache; subclasses do the storage."""

    def __init__(self, *, cache_ttl: float = 5.0, cache_size: int = 10_000, clock: _Time | None = None):
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self.clock: _Time = clock or SystemClock()
        # sha256(raw key) → (key, monotonic time it was read). Keyed by a digest so
        # raw keys are not kept in a long-lived structure.
        self._cache: dict[str, tuple[ApiKey, float]] = {}
        self._revocations = 0  # counts revoke() calls, to spot one racing a read
        #: key id → the read of it in flight (and the revocation count when it began):
        #: when a busy key's cache entry expires, the requests that find it missing
        #: share one read instead of each asking the store.
        self._reads: dict[str, tuple[asyncio.Task[_Row | None], int]] = {}

    # --- storage, by subclasses -------------------------------------------------

    async def _insert(self, row: _Row) -> None:
        raise NotImplementedError

    async def _fetch(self, key_id: str) -> _Row | None:
        raise NotImplementedError

    async def _fetch_all(self) -> builtins.list[ApiKey]:
        raise NotImplementedError

    async def _mark_revoked(self, key_id: str, now: float) -> bool:
        raise NotImplementedError

    # --- the API ------------------------------------------------------------------

    async def create(
        self,
        *,
        tenant: str,
        plugins: Sequence[str],
        admin: bool = False,
        expires_at: float | None = None,
        rate_limit: dict[str, Any] | None = None,
        budget: dict[str, Any] | None = None,
        name: str = "",
    ) -> tuple[ApiKey, str]:
        if not isinstance(tenant, str) or not tenant or len(tenant) > 128 or not tenant.isprintable():
            raise InvalidRequestError("tenant must be 1–128 printable characters")
        if isinstance(plugins, str):
            raise InvalidRequestError("plugins must be a list of patterns, not one string")
        patterns = tuple(plugins)
        if not patterns:
            raise InvalidRequestError("a key needs at least one plugin pattern (use '*' for all)")
        for pattern in patterns:
            if not isinstance(pattern, str) or not _PATTERN_RE.fullmatch(pattern):
                raise InvalidRequestError(
                    f"plugin pattern {pattern!r}: use letters, digits, '_.:-/' and the wildcards '*?[]!'"
                )
        now = self.clock.time()
        if expires_at is not None and expires_at <= now:
            raise InvalidRequestError("expires_at is in the past")
        _validate_override(RateLimitPolicy, rate_limit, "rate_limit")
        _validate_override(BudgetPolicy, budget, "budget")
        if not isinstance(name, str) or len(name) > 200 or not name.isprintable():
            raise InvalidRequestError("name must be at most 200 printable characters")
        key_id = secrets.token_hex(_ID_BYTES)
        secret = secrets.token_urlsafe(_SECRET_BYTES)
        key = ApiKey(
            id=key_id,
            tenant=tenant,
            plugins=patterns,
            admin=bool(admin),
            expires_at=expires_at,
            rate_limit=dict(rate_limit) if rate_limit is not None else None,
            budget=dict(budget) if budget is not None else None,
            name=name,
            created_at=now,
        )
        await self._insert(_Row(key, _secret_hash(key_id, secret)))
        return key, f"{KEY_PREFIX}_{key_id}_{secret}"

    async def authenticate(self, raw: str) -> ApiKey:
        match = _RAW_RE.fullmatch(raw) if isinstance(raw, str) else None
        if match is None:
            raise AuthenticationError("malformed API key: expected bw_<id>_<secret>")
        key_id, secret = match.groups()
        digest = hashlib.sha256(raw.encode()).hexdigest()
        now = self.clock.now()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self.cache_ttl:
            key = cached[0]
        else:
            row, revocations = await self._read(key_id)
            expected = row.secret_hash if row is not None else _MISSING_HASH
            matches = hmac.compare_digest(expected, _secret_hash(key_id, secret))
            if row is None or not matches:
                self._cache.pop(digest, None)
                raise AuthenticationError(_INVALID)
            key = row.key
            if revocations == self._revocations:  # else a revoke raced this read: no cache
                self._remember(digest, key, now)
        if key.revoked:
            raise AuthenticationError("API key revoked")
        if key.expired(self.clock.time()):
            raise AuthenticationError("API key expired")
        return key

    async def _read(self, key_id: str) -> tuple[_Row | None, int]:
        """The stored row of ``key_id``, and the revocation count from before it was read."""
        loop = asyncio.get_running_loop()
        shared = self._reads.get(key_id)
        # (Not a read that began before a revocation: it may miss it.)
        if shared is None or shared[1] != self._revocations or shared[0].get_loop() is not loop:
            task = loop.create_task(self._fetch(key_id))
            shared = (task, self._revocations)
            self._reads[key_id] = shared

            def forget(done: asyncio.Task[_Row | None], key_id: str = key_id) -> None:
                if self._reads.get(key_id, (None,))[0] is done:
                    del self._reads[key_id]

            task.add_done_callback(forget)
        task, revocations = shared
        # Shielded: one caller giving up (a client hanging up) must not cancel the
        # read the others wait for.
        return await asyncio.shield(task), revocations

    async def list(self) -> builtins.list[ApiKey]:
        return await self._fetch_all()

    async def revoke(self, key_id: str) -> None:
        self._revocations += 1  # before the write: a read in flight must not cache
        if not await self._mark_revoked(key_id, self.clock.time()):
            raise KeyNotFoundError(f"no API key with id {key_id!r}")
        for digest, (key, _) in builtins.list(self._cache.items()):
            if key.id == key_id:
                del self._cache[digest]

    def _remember(self, digest: str, key: ApiKey, now: float) -> None:
        if self.cache_ttl <= 0:
            return
        self._cache.pop(digest, None)
        while len(self._cache) >= self.cache_size:
            del self._cache[next(iter(self._cache))]  # the oldest entry
        self._cache[digest] = (key, now)


# --- rows ------------------------------------------------------------------------

_COLUMNS = (
    "id, secret_hash, tenant, plugins, admin, expires_at, rate_limit, budget, name, created_at, revoked_at"
)


def m001_initial(dialect: Dialect) -> list[str]:
    return [
        """CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            secret_hash TEXT NOT NULL,
            tenant TEXT NOT NULL,
            plugins TEXT NOT NULL,
            admin BOOLEAN NOT NULL,
            expires_at DOUBLE PRECISION,
            rate_limit TEXT,
            budget TEXT,
            name TEXT NOT NULL,
            created_at DOUBLE PRECISION NOT NULL,
            revoked_at DOUBLE PRECISION
        )""",
    ]


MIGRATIONS = [m001_initial]


def _params(row: _Row) -> tuple[object, ...]:
    key = row.key
    return (
        key.id,
        row.secret_hash,
        key.tenant,
        json.dumps(list(key.plugins)),
        key.admin,
        key.expires_at,
        None if key.rate_limit is None else json.dumps(key.rate_limit, sort_keys=True),
        None if key.budget is None else json.dumps(key.budget, sort_keys=True),
        key.name,
        key.created_at,
        None,
    )


def _from_db(values: Sequence[Any]) -> _Row:
    (key_id, secret_hash, tenant, plugins, admin, expires_at, rate_limit, budget, name, created, revoked) = (
        values
    )
    key = ApiKey(
        id=str(key_id),
        tenant=str(tenant),
        plugins=tuple(json.loads(plugins)),
        admin=bool(admin),
        expires_at=None if expires_at is None else float(expires_at),
        rate_limit=None if rate_limit is None else json.loads(rate_limit),
        budget=None if budget is None else json.loads(budget),
        name=str(name),
        created_at=float(created),
        revoked=revoked is not None,
    )
    return _Row(key, str(secret_hash))


# --- SQLite ----------------------------------------------------------------------


class SQLiteKeyStore(_KeyStoreBase):
    """Keys in a SQLite file (WAL), used through a worker thread.

    The file is created readable by its owner only.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        cache_ttl: float = 5.0,
        cache_size: int = 10_000,
        clock: _Time | None = None,
    ) -> None:
        super().__init__(cache_ttl=cache_ttl, cache_size=cache_size, clock=clock)
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _db(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.path, "keys", MIGRATIONS, timeout=10.0)
        return self._conn

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def call() -> T:
            with self._lock:
                return fn(self._db())

        try:
            return await asyncio.to_thread(call)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"key store {self.path}: {exc}") from exc

    async def _insert(self, row: _Row) -> None:
        insert = f"INSERT INTO api_keys ({_COLUMNS}) VALUES ({', '.join('?' * 11)})"
        await self._run(lambda db: db.execute(insert, _params(row)))

    async def _fetch(self, key_id: str) -> _Row | None:
        values = await self._run(
            lambda db: db.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = ?", (key_id,)).fetchone()
        )
        return None if values is None else _from_db(values)

    async def _fetch_all(self) -> builtins.list[ApiKey]:
        rows = await self._run(
            lambda db: db.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id").fetchall()
        )
        return [_from_db(values).key for values in rows]

    async def _mark_revoked(self, key_id: str, now: float) -> bool:
        def revoke(db: sqlite3.Connection) -> bool:
            db.execute(
                "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL", (now, key_id)
            )
            return db.execute("SELECT 1 FROM api_keys WHERE id = ?", (key_id,)).fetchone() is not None

        return await self._run(revoke)

    async def aclose(self) -> None:
        def close() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(close)


# --- PostgreSQL ------------------------------------------------------------------


class PostgresKeyStore(_KeyStoreBase):
    """Keys in PostgreSQL (psycopg 3), for several replicas sharing one set of keys.

    One connection, opened on first use; the cache keeps it off the hot path.
    """

    def __init__(
        self,
        dsn: str,
        *,
        cache_ttl: float = 5.0,
        cache_size: int = 10_000,
        clock: _Time | None = None,
    ) -> None:
        super().__init__(cache_ttl=cache_ttl, cache_size=cache_size, clock=clock)
        self.dsn = dsn
        self._pg = PgConnection(dsn, setup=self._migrate)

    @staticmethod
    async def _migrate(conn: PgConn) -> None:
        await apply_postgres(conn, "keys", MIGRATIONS)

    async def _insert(self, row: _Row) -> None:
        async with self._pg.use() as conn:
            await conn.execute(
                f"INSERT INTO api_keys ({_COLUMNS}) VALUES ({', '.join(['%s'] * 11)})", _params(row)
            )

    async def _fetch(self, key_id: str) -> _Row | None:
        async with self._pg.use() as conn:
            cursor = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys WHERE id = %s", (key_id,))
            values = await cursor.fetchone()
        return None if values is None else _from_db(values)

    async def _fetch_all(self) -> builtins.list[ApiKey]:
        async with self._pg.use() as conn:
            cursor = await conn.execute(f"SELECT {_COLUMNS} FROM api_keys ORDER BY created_at, id")
            rows = await cursor.fetchall()
        return [_from_db(values).key for values in rows]

    async def _mark_revoked(self, key_id: str, now: float) -> bool:
        async with self._pg.use() as conn:
            await conn.execute(
                "UPDATE api_keys SET revoked_at = %s WHERE id = %s AND revoked_at IS NULL", (now, key_id)
            )
            cursor = await conn.execute("SELECT 1 FROM api_keys WHERE id = %s", (key_id,))
            return await cursor.fetchone() is not None

    async def aclose(self) -> None:
        await self._pg.aclose()


def open_key_store(url: str, **options: Any) -> KeyStore:
    """A key store for ``url``: ``sqlite:///path``, a file path, or ``postgresql://...``.

    ``options`` (``cache_ttl``, ``cache_size``, ``clock``) go to the store.
    """
    if is_postgres(url):
        return PostgresKeyStore(url, **options)
    return SQLiteKeyStore(sqlite_path(url), **options)
