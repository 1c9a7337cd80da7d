"""The SQLite audit log's default write path: commits on the event loop, never waiting there.

With ``durability="process"`` a commit is a write into the OS's page cache, so
:class:`SQLiteAuditLog` makes it on the loop's thread, in one transaction per loop
iteration. These tests hold it to what that must not cost: the loop never blocks on
another connection's lock, the WAL is checkpointed (from a thread), closing flushes,
errors and cancellations lose nothing and invent nothing.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from unittest.mock import patch

import pytest
from test_audit import call, independent_check

from brickwork.contracts.errors import StorageError
from brickwork.contracts.record import CallRecord
from brickwork.storage import SQLiteAuditLog, _audit_chain


def _unchecked(record: CallRecord, future: asyncio.Future[int] | None) -> _audit_chain._Pending:
    """A pending record built without the checks of ``_pending`` (to reach the table)."""
    fields = (record.time, record.trace_id, record.tenant, record.plugin, record.version, record.outcome)
    return _audit_chain._Pending(_audit_chain.record_json(record), fields, future)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit.db"


@pytest.fixture(params=[False, True], ids=["loop", "thread"])
async def log(path: Path, request: pytest.FixtureRequest) -> AsyncIterator[SQLiteAuditLog]:
    """A log on either write path, already opened by a first record (seq 1)."""
    audit = SQLiteAuditLog(path, thread_writes=request.param)
    assert await audit.append(call(0)) == 1
    yield audit
    await audit.aclose()


@pytest.fixture
async def loop_log(path: Path) -> AsyncIterator[SQLiteAuditLog]:
    """A log on the default (loop) path, already opened by a first record (seq 1)."""
    audit = SQLiteAuditLog(path)
    assert audit.on_loop
    assert await audit.append(call(0)) == 1
    yield audit
    await audit.aclose()


@pytest.fixture
def locker(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection to the log's file, as another process would hold it."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


async def trace_ids(log: SQLiteAuditLog) -> list[str]:
    out = io.StringIO()
    await log.export(out)
    lines = out.getvalue().splitlines()
    independent_check(lines)
    return [json.loads(line)["record"]["trace_id"] for line in lines]


async def test_records_appended_in_one_loop_iteration_share_one_transaction(
    loop_log: SQLiteAuditLog,
) -> None:
    batches, written = loop_log.batches, loop_log.written
    seqs = await asyncio.gather(*(loop_log.append(call(i)) for i in range(1, 51)))
    assert seqs == list(range(2, 52))
    assert loop_log.batches == batches + 1
    assert loop_log.written == written + 50


async def test_1000_concurrent_appends_make_a_gapless_chain(log: SQLiteAuditLog) -> None:
    seqs = await asyncio.gather(*(log.append(call(i)) for i in range(1, 1001)))
    assert seqs == list(range(2, 1002))
    report = await log.verify()
    assert report.ok, report
    assert report.count == 1001
    assert await trace_ids(log) == [f"trace-{i}" for i in range(1001)]


async def test_a_locked_database_does_not_block_the_loop(
    loop_log: SQLiteAuditLog, locker: sqlite3.Connection
) -> None:
    locker.execute("BEGIN IMMEDIATE")  # another process is writing, and takes its time
    first = [asyncio.create_task(loop_log.append(call(i))) for i in range(1, 11)]
    ticks: list[float] = []
    for _ in range(20):
        ticks.append(time.monotonic())
        await asyncio.sleep(0.01)
    later = [asyncio.create_task(loop_log.append(call(i))) for i in range(11, 21)]
    for _ in range(5):
        ticks.append(time.monotonic())
        await asyncio.sleep(0.01)
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert max(gaps) < 0.25, f"the loop stalled for {max(gaps):.3f}s"
    assert not any(task.done() for task in first + later)  # nothing acknowledged before a commit
    locker.execute("COMMIT")
    async with asyncio.timeout(10):
        seqs = await asyncio.gather(*first, *later)
    assert seqs == list(range(2, 22))  # committed once the lock was released, in call order
    assert await trace_ids(loop_log) == [f"trace-{i}" for i in range(21)]
    assert await loop_log.append(call(21)) == 22  # and back on the loop


async def test_appends_from_another_process_interleave_into_one_chain(loop_log: SQLiteAuditLog) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys, time
        from brickwork.contracts.record import CallRecord
        from brickwork.storage import SQLiteAuditLog

        async def main(path):
            log = SQLiteAuditLog(path)
            for i in range(300):
                await log.append(CallRecord(trace_id=f"other-{i}", tenant="acme", time=time.time(), depth=0))
            await log.aclose()

        asyncio.run(main(sys.argv[1]))
        """
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", script, loop_log.path, stderr=subprocess.PIPE
    )
    mine = 0
    while proc.returncode is None:
        await asyncio.gather(*(loop_log.append(call(mine + i)) for i in range(8)))
        mine += 8
        await asyncio.sleep(0)
        if mine > 20_000:
            break
    _, stderr = await proc.communicate()
    assert proc.returncode == 0, stderr.decode()
    report = await loop_log.verify()
    assert report.ok, report
    assert report.count == 1 + mine + 300


async def test_the_wal_is_checkpointed_and_stays_short(loop_log: SQLiteAuditLog, path: Path) -> None:
    wal = Path(f"{path}-wal")
    largest = 0
    for i in range(1_500):  # one record per commit: several WAL pages each
        await loop_log.append(call(i))
        if i % 100 == 0:
            largest = max(largest, size(wal))
    for _ in range(40):  # and in groups
        await asyncio.gather(*(loop_log.append(call(i)) for i in range(250)))
        largest = max(largest, size(wal))
    assert loop_log.checkpoints >= 2
    # Without checkpoints these 11,500 records would make a WAL of over 40 MB. (The
    # checkpoints run in a thread: on a loaded machine they lag a little behind.)
    assert largest < 24 * 2**20, f"the WAL grew to {largest} bytes"
    assert size(path) > 4 * 2**20  # the rows went into the database file
    assert (await loop_log.verify()).count == 11_501


async def test_a_checkpoint_never_waits_for_a_writer(
    loop_log: SQLiteAuditLog, locker: sqlite3.Connection
) -> None:
    # Another process holds the write lock: a passive checkpoint needs none, so even
    # the log's first one runs at once. (It once opened its connection first, whose
    # migrations check waits for the write lock: under a steady stream of commits
    # that wait let the WAL grow to 16-26 MB.)
    locker.execute("BEGIN IMMEDIATE")
    try:
        async with asyncio.timeout(5):
            await asyncio.to_thread(loop_log._checkpoint_sync)
    finally:
        locker.execute("ROLLBACK")
    assert loop_log.checkpoints == 1


async def test_close_writes_records_waiting_behind_a_lock(
    path: Path, loop_log: SQLiteAuditLog, locker: sqlite3.Connection
) -> None:
    locker.execute("BEGIN IMMEDIATE")
    tasks = [asyncio.create_task(loop_log.append(call(i))) for i in range(1, 21)]
    await asyncio.sleep(0.05)
    asyncio.get_running_loop().call_later(0.1, locker.execute, "COMMIT")
    async with asyncio.timeout(10):
        await loop_log.aclose()
    assert [task.result() for task in tasks] == list(range(2, 22))
    fresh = SQLiteAuditLog(path)
    try:
        assert (await fresh.verify()).count == 21
    finally:
        await fresh.aclose()


async def test_a_record_the_table_would_refuse_is_refused_alone_and_the_log_goes_on(
    log: SQLiteAuditLog,
) -> None:
    results = await asyncio.gather(
        log.append(call(1)),
        log.append(call(2, tenant=None)),  # the NOT NULL column would refuse it: refused at once
        log.append(call(3)),
        return_exceptions=True,
    )
    assert results[0] == 2, results
    assert results[2] == 3, results
    assert isinstance(results[1], StorageError), results
    with pytest.raises(StorageError, match="tenant"):
        await log.record(call(5, tenant=None))
    assert await log.append(call(4)) == 4  # no gap
    report = await log.verify()
    assert report.ok, report
    assert await trace_ids(log) == ["trace-0", "trace-1", "trace-3", "trace-4"]


async def test_a_failed_batch_fails_its_callers_and_the_log_goes_on(path: Path) -> None:
    # Without a spool, a batch the database refuses fails every caller in it.
    log = SQLiteAuditLog(path, spool=False)
    try:
        assert await log.append(call(0)) == 1
        broken = call(2)
        broken.trace_id = None  # type: ignore[assignment]  # past the check, to the NOT NULL column
        batches = log.batches
        with patch("brickwork.storage._audit_chain._pending", _unchecked):
            results = await asyncio.gather(
                log.append(call(1)), log.append(broken), log.append(call(3)), return_exceptions=True
            )
        assert all(isinstance(result, StorageError) for result in results), results
        assert log.batches == batches
        assert await log.append(call(4)) == 2  # no gap: nothing of the failed batch stayed
        assert (await log.verify()).ok
    finally:
        await log.aclose()


async def test_a_cancelled_caller_s_record_is_written_once(log: SQLiteAuditLog) -> None:
    task = asyncio.create_task(log.append(call(1)))
    await asyncio.sleep(0)  # queued, not yet committed
    task.cancel()
    assert await log.append(call(2)) == 3
    assert task.cancelled()
    assert await trace_ids(log) == ["trace-0", "trace-1", "trace-2"]


async def test_a_caller_cancelled_while_its_batch_waits_for_a_lock_is_written_once(
    loop_log: SQLiteAuditLog, locker: sqlite3.Connection
) -> None:
    locker.execute("BEGIN IMMEDIATE")
    task = asyncio.create_task(loop_log.append(call(1)))
    await asyncio.sleep(0.05)  # handed to a thread, which waits for the lock
    task.cancel()
    locker.execute("COMMIT")
    async with asyncio.timeout(10):
        assert await loop_log.append(call(2)) == 3
    assert task.cancelled()
    assert await trace_ids(loop_log) == ["trace-0", "trace-1", "trace-2"]


async def test_the_loop_connection_never_waits_nor_checkpoints(loop_log: SQLiteAuditLog) -> None:
    conn = loop_log._loop_conn
    assert conn is not None
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 0
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL: no fsync per commit


@pytest.mark.parametrize("durability", ["process", "power"])
async def test_power_durability_and_thread_writes_keep_writes_off_the_loop(
    path: Path, durability: str
) -> None:
    log = SQLiteAuditLog(path, durability=durability, thread_writes=True)  # type: ignore[arg-type]
    assert not log.on_loop
    assert not SQLiteAuditLog(path, durability="power").on_loop
    try:
        assert await asyncio.gather(*(log.append(call(i)) for i in range(100))) == list(range(1, 101))
        assert log._loop_conn is None
        assert (await log.verify()).count == 100
    finally:
        await log.aclose()


def test_a_log_can_be_used_again_from_a_new_event_loop(path: Path) -> None:
    log = SQLiteAuditLog(path)

    async def some(first: int) -> list[int]:
        return list(await asyncio.gather(*(log.append(call(first + i)) for i in range(10))))

    assert asyncio.run(some(0)) == list(range(1, 11))
    assert asyncio.run(some(10)) == list(range(11, 21))

    async def close() -> None:
        assert (await log.verify()).count == 20
        await log.aclose()

    asyncio.run(close())


async def test_a_long_wal_is_truncated_at_a_checkpoint(
    loop_log: SQLiteAuditLog, path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # When the WAL does not start over after passive checkpoints (other processes
    # keep appending behind each one), a checkpoint that finds it long truncates it,
    # waiting briefly for the writers to pause, so it cannot grow without bound.
    import brickwork.storage._audit_sqlite_ckpt as audit_module

    monkeypatch.setattr(audit_module, "_CHECKPOINT_BEHIND_PAGES", 10)
    for i in range(1, 400):
        await loop_log.append(call(i))
    wal = Path(f"{path}-wal")
    before = loop_log.truncations
    await asyncio.to_thread(loop_log._checkpoint_sync)
    assert loop_log.truncations == before + 1
    assert size(wal) == 0
    # and the log goes on, chained as before
    assert await loop_log.append(call(400)) == 401
    assert (await loop_log.verify()).ok
