"""Shared fixtures.

Every test runs with real model providers forbidden, unless it opts in. Stores
(keys, audit) are tested on SQLite and on a real PostgreSQL, each test in a schema
of its own: PostgreSQL must be up (``.ci/run`` starts it); those tests fail, never
skip, without it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from brickwork.testing import forbid_real_providers


@pytest.fixture(autouse=True)
def _no_real_providers() -> Iterator[None]:
    with forbid_real_providers():
        yield


PG_SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_dsn() -> Iterator[str]:
    """A DSN whose ``search_path`` is a fresh schema, dropped afterwards."""
    schema = f"bw_test_{secrets.token_hex(6)}"
    try:
        admin = psycopg.connect(PG_SERVER, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL is not reachable at {PG_SERVER} ({exc}); start it with "
            "`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`",
            pytrace=False,
        )
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield f"{PG_SERVER}?options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return str(request.getfixturevalue("pg_dsn"))
