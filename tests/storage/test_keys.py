"""API keys: created once, stored only as a hash, refused when wrong, revoked or expired."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from brickwork.contracts.errors import (
    AuthenticationError,
    InvalidRequestError,
    KeyNotFoundError,
    PermissionDeniedError,
    StorageError,
)
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.recording import MemoryRecorder
from brickwork.runtime.registry import Registry
from brickwork.storage import ApiKey, PostgresKeyStore, SQLiteKeyStore, open_key_store
from brickwork.storage.keys import KeyStore
from brickwork.testing import FakeClock

RAW_RE = re.compile(r"bw_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def store(store_url: str, clock: FakeClock) -> AsyncIterator[KeyStore]:
    ks = open_key_store(store_url, clock=clock, cache_ttl=5.0)
    yield ks
    await ks.aclose()


def sqlite_bytes(path: str) -> bytes:
    """Everything a SQLite database holds on disk: the file and its write-ahead log."""
    return b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if os.path.exists(p))


def secret_of(raw: str) -> str:
    match = RAW_RE.fullmatch(raw)
    assert match, raw
    return match.group(2)


async def test_create_then_authenticate_round_trips_every_field(
    store: KeyStore, store_url: str, clock: FakeClock
) -> None:
    key, raw = await store.create(
        tenant="acme",
        plugins=["sentiment*", "summarize", "openai:*"],
        admin=True,
        expires_at=clock.time() + 3_600,
        rate_limit={"requests": 10, "window": 60},
        budget={"limit": 2.5},
        name="ci bot",
    )
    assert RAW_RE.fullmatch(raw)
    assert raw.split("_")[1] == key.id
    found = await store.authenticate(raw)
    assert found == key
    assert found.tenant == "acme"
    assert found.plugins == ("sentiment*", "summarize", "openai:*")
    assert found.admin is True
    assert found.rate_limit == {"requests": 10, "window": 60}
    assert found.budget == {"limit": 2.5}
    assert found.name == "ci bot"
    assert found.created_at == clock.time()
    assert not found.revoked
    # A fresh store (another process, another replica) reads the same key.
    other = open_key_store(store_url, clock=clock)
    try:
        assert await other.authenticate(raw) == key
    finally:
        await other.aclose()


async def test_keys_are_unique_and_carry_32_bytes_of_secret(store: KeyStore) -> None:
    raws = [(await store.create(tenant="t", plugins=["*"]))[1] for _ in range(5)]
    secrets_ = [secret_of(r) for r in raws]
    assert len(set(raws)) == len(set(secrets_)) == 5
    assert all(len(s) >= 43 for s in secrets_)  # token_urlsafe(32): 43 characters


async def test_the_raw_key_is_never_stored(store: KeyStore, backend: str) -> None:
    key, raw = await store.create(tenant="acme", plugins=["*"], name="n")
    secret = secret_of(raw)
    await store.authenticate(raw)
    if isinstance(store, SQLiteKeyStore):
        data = sqlite_bytes(store.path)
        assert key.id.encode() in data  # the row is there...
        assert secret.encode() not in data  # ...its secret is not
        assert raw.encode() not in data
        assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    else:
        assert isinstance(store, PostgresKeyStore)
        with psycopg.connect(store.dsn) as conn:
            rows = conn.execute("SELECT api_keys::text FROM api_keys").fetchall()
        text = " ".join(r[0] for r in rows)
        assert key.id in text
        assert secret not in text
        assert raw not in text


async def test_wrong_secret_and_unknown_id_get_the_same_answer(store: KeyStore) -> None:
    key, raw = await store.create(tenant="acme", plugins=["*"])
    secret = secret_of(raw)
    wrong_secret = f"bw_{key.id}_{'A' * 43}"
    unknown_id = f"bw_{'0' * 16}_{secret}"
    messages = []
    for attempt in (wrong_secret, unknown_id):
        with pytest.raises(AuthenticationError) as info:
            await store.authenticate(attempt)
        messages.append(info.value.message)
    assert messages[0] == messages[1] == "invalid API key"
    for malformed in ("", "bw_", raw + "x", raw[:-1], "Bearer " + raw, f"sk-{secret}"):
        with pytest.raises(AuthenticationError, match="malformed"):
            await store.authenticate(malformed)
    assert await store.authenticate(raw) == key  # the right one still works


async def test_expiry_is_checked_on_every_call_even_when_cached(store: KeyStore, clock: FakeClock) -> None:
    _, raw = await store.create(tenant="acme", plugins=["*"], expires_at=clock.time() + 60)
    await store.authenticate(raw)
    clock.advance(59)
    await store.authenticate(raw)  # cached now
    clock.advance(1)
    with pytest.raises(AuthenticationError, match="expired"):
        await store.authenticate(raw)


async def test_revocation_is_immediate_here_and_within_the_cache_ttl_elsewhere(
    store: KeyStore, store_url: str, clock: FakeClock
) -> None:
    key, raw = await store.create(tenant="acme", plugins=["*"])
    replica = open_key_store(store_url, clock=clock, cache_ttl=5.0)
    try:
        await replica.authenticate(raw)  # the replica caches it
        await store.revoke(key.id)
        with pytest.raises(AuthenticationError, match="revoked"):
            await store.authenticate(raw)
        clock.advance(4.9)
        assert (await replica.authenticate(raw)).id == key.id  # still within its cache TTL
        clock.advance(0.2)
        with pytest.raises(AuthenticationError, match="revoked"):
            await replica.authenticate(raw)
    finally:
        await replica.aclose()
    await store.revoke(key.id)  # revoking twice is fine
    with pytest.raises(KeyNotFoundError):
        await store.revoke("0123456789abcdef")


async def test_list_shows_every_key_without_secrets(store: KeyStore, clock: FakeClock) -> None:
    first, raw1 = await store.create(tenant="a", plugins=["x"], name="one")
    clock.advance(1)
    second, _ = await store.create(tenant="b", plugins=["y*"], name="two")
    await store.revoke(first.id)
    listed = await store.list()
    assert [k.id for k in listed] == [first.id, second.id]
    assert [k.revoked for k in listed] == [True, False]
    assert all(isinstance(k, ApiKey) for k in listed)
    assert secret_of(raw1) not in repr(listed)
    assert "hash" not in listed[0].to_dict()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"tenant": "", "plugins": ["*"]}, "tenant"),
        ({"tenant": "t", "plugins": []}, "at least one"),
        ({"tenant": "t", "plugins": "sentiment"}, "list"),
        ({"tenant": "t", "plugins": ["a b"]}, "pattern"),
        ({"tenant": "t", "plugins": ["*"], "rate_limit": {"window": 5}}, "rate_limit"),
        ({"tenant": "t", "plugins": ["*"], "rate_limit": {"requests": 0}}, "rate_limit"),
        ({"tenant": "t", "plugins": ["*"], "budget": {"limit": -1}}, "budget"),
        ({"tenant": "t", "plugins": ["*"], "budget": {"limit": 1, "bogus": 2}}, "budget"),
        ({"tenant": "t", "plugins": ["*"], "expires_at": 1.0}, "past"),
    ],
)
async def test_create_validates_its_input(tmp_path: Path, kwargs: dict[str, object], problem: str) -> None:
    store = SQLiteKeyStore(tmp_path / "k.db")
    try:
        with pytest.raises(InvalidRequestError, match=problem):
            await store.create(**kwargs)  # type: ignore[arg-type]
        assert await store.list() == []
    finally:
        await store.aclose()


def test_allows_matches_patterns_case_sensitively() -> None:
    key = ApiKey(id="k", tenant="t", plugins=("sentiment*", "summarize", "openai:*"))
    assert key.allows("sentiment")
    assert key.allows("sentiment-v2")
    assert key.allows("summarize")
    assert key.allows("openai:gpt-4o-mini")
    assert not key.allows("summarize2")
    assert not key.allows("Sentiment")
    assert not key.allows("anthropic:claude")
    assert not key.allows("translate")
    assert len({key, key}) == 1  # usable as a dict key despite its dict fields


class In(PluginInput):
    text: str


class Out(PluginOutput):
    text: str


class Echo(Plugin[In, Out]):
    name = "echo"
    version = "1.0.0"
    description = "Echo."

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(text=input.text)


class Shout(Echo):
    name = "shout"
    description = "Shout."


async def test_an_authenticated_key_is_a_principal_the_orchestrator_enforces(tmp_path: Path) -> None:
    store = SQLiteKeyStore(tmp_path / "k.db")
    registry = Registry()
    registry.add(Echo)
    registry.add(Shout)
    recorder = MemoryRecorder()
    orch = Orchestrator(registry, recorders=[recorder])
    try:
        _, raw = await store.create(tenant="acme", plugins=["ech*"])
        key = await store.authenticate(raw)
        envelope = await orch.handle({"plugin": "echo", "input": "hi", "tenant": "other"}, principal=key)
        assert envelope.output == {"text": "hi"}
        assert recorder.records[-1].tenant == "acme"
        with pytest.raises(PermissionDeniedError):
            await orch.handle({"plugin": "shout", "input": "hi"}, principal=key)
    finally:
        await store.aclose()
        await orch.aclose()


def test_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_key_store(f"sqlite:///{tmp_path}/a.db"), SQLiteKeyStore)
    assert open_key_store(f"sqlite:///{tmp_path}/a.db").path == f"{tmp_path}/a.db"  # type: ignore[attr-defined]
    assert open_key_store(f"sqlite://{tmp_path}/a.db").path == f"{tmp_path}/a.db"  # type: ignore[attr-defined]
    assert open_key_store(str(tmp_path / "b.db")).path == str(tmp_path / "b.db")  # type: ignore[attr-defined]
    assert isinstance(open_key_store("postgresql://u@h/db"), PostgresKeyStore)
    assert isinstance(open_key_store("postgres://u@h/db"), PostgresKeyStore)


async def test_an_unreachable_database_is_a_storage_error_not_an_auth_failure() -> None:
    store = PostgresKeyStore("postgresql://postgres@127.0.0.1:1/test")
    try:
        with pytest.raises(StorageError):
            await store.authenticate(f"bw_{'0' * 16}_{'A' * 43}")
    finally:
        await store.aclose()


async def test_an_unusable_file_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteKeyStore(blocker / "keys.db")
    try:
        with pytest.raises(StorageError):
            await store.list()
    finally:
        await store.aclose()


async def test_a_revoke_racing_an_authentication_is_not_undone_by_the_cache(tmp_path: Path) -> None:
    import asyncio

    from brickwork.storage.keys import SQLiteKeyStore

    store = SQLiteKeyStore(tmp_path / "k.db", cache_ttl=60)
    try:
        key, raw = await store.create(tenant="t", plugins=["*"])
        fetch = store._fetch
        gate = asyncio.Event()

        async def slow_fetch(key_id: str) -> object:
            row = await fetch(key_id)  # read before the revoke...
            await gate.wait()  # ...which lands while this read is in flight
            return row

        store._fetch = slow_fetch  # type: ignore[method-assign]
        reading = asyncio.create_task(store.authenticate(raw))
        await asyncio.sleep(0.05)
        await store.revoke(key.id)
        gate.set()
        await reading  # the stale row may answer this one call...
        store._fetch = fetch  # type: ignore[method-assign]
        with pytest.raises(AuthenticationError, match="revoked"):  # ...but is not cached
            await store.authenticate(raw)
    finally:
        await store.aclose()


async def test_requests_that_miss_the_cache_together_share_one_read(tmp_path: Path) -> None:
    import asyncio

    from brickwork.storage.keys import SQLiteKeyStore

    store = SQLiteKeyStore(tmp_path / "k.db", cache_ttl=60)
    try:
        key, raw = await store.create(tenant="t", plugins=["*"])
        fetch = store._fetch
        reads = 0
        gate = asyncio.Event()

        async def counted_fetch(key_id: str) -> object:
            nonlocal reads
            reads += 1
            await gate.wait()
            return await fetch(key_id)

        store._fetch = counted_fetch  # type: ignore[method-assign]
        waiting = [asyncio.create_task(store.authenticate(raw)) for _ in range(20)]
        await asyncio.sleep(0.05)
        waiting[0].cancel()  # one caller giving up does not cancel the others' read
        gate.set()
        found = await asyncio.gather(*waiting[1:])
        assert reads == 1
        assert {k.id for k in found} == {key.id}
        # A read that began before a revocation is not joined by a later caller.
        await store.revoke(key.id)
        with pytest.raises(AuthenticationError, match="revoked"):
            await store.authenticate(raw)
        assert reads == 2
    finally:
        await store.aclose()
