"""The audit log: every answered request is durably recorded, in a chain that shows tampering."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psycopg
import pytest

from brickwork.contracts.errors import RecordFailedError, StorageError
from brickwork.contracts.plugin import Context, Plugin, PluginInput, PluginOutput
from brickwork.contracts.provider import Usage
from brickwork.contracts.record import CallRecord
from brickwork.contracts.request import RouteDecision
from brickwork.runtime.orchestrator import Orchestrator
from brickwork.runtime.registry import Registry
from brickwork.storage import PostgresAuditLog, SQLiteAuditLog, open_audit_log
from brickwork.storage.audit import GENESIS_HASH, canonical_json, chain_hash

AuditLog = SQLiteAuditLog | PostgresAuditLog


def call(i: int, **changes: Any) -> CallRecord:
    record = CallRecord(
        trace_id=f"trace-{i}",
        tenant="acme",
        time=1_700_000_000.0 + i,
        depth=0,
        route=RouteDecision(method="explicit", ref="sentiment@1.0.0"),
        plugin="sentiment",
        version="1.0.0",
        prompt_version="3",
        models=["local:m"],
        usage=Usage(input_tokens=10 + i, output_tokens=2, calls=1),
        cost=0.001 * i,
        latency_ms=12.5,
        guard_verdicts=[{"guard": "size", "verdict": "pass"}],
    )
    for name, value in changes.items():
        setattr(record, name, value)
    return record


@pytest.fixture
async def log(store_url: str) -> AsyncIterator[AuditLog]:
    audit = open_audit_log(store_url)
    yield audit
    await audit.aclose()


def execute(url: str, sql: str, *params: object) -> None:
    """Tamper with the database directly, as someone with write access could."""
    if url.startswith("postgresql://"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
    else:
        conn = sqlite3.connect(url.removeprefix("sqlite://"), isolation_level=None)
        try:
            conn.execute(sql, params)
        finally:
            conn.close()


def sqlite_bytes(path: str) -> bytes:
    """Everything a SQLite database holds on disk: the file and its write-ahead log."""
    return b"".join(Path(p).read_bytes() for p in (path, path + "-wal") if os.path.exists(p))


def independent_check(lines: list[str]) -> None:
    """Check an export with nothing but json and sha256, as an auditor would."""
    prev = GENESIS_HASH
    for n, line in enumerate(lines, start=1):
        row = json.loads(line)
        assert row["seq"] == n
        assert row["prev_hash"] == prev
        canonical = json.dumps(
            {"record": row["record"], "seq": row["seq"]},
            sort_keys=True,
            separators=(",", ":"),
            ensure_ascii=False,
        )
        assert hashlib.sha256((prev + canonical).encode()).hexdigest() == row["hash"]
        prev = row["hash"]


async def test_records_are_numbered_chained_and_exported(log: AuditLog) -> None:
    seqs = [await log.append(call(i)) for i in range(1, 6)]
    assert seqs == [1, 2, 3, 4, 5]
    await log.record(call(6))
    report = await log.verify()
    assert report.ok
    assert report.count == 6
    assert report.first_bad_seq is None
    out = io.StringIO()
    assert await log.export(out) == 6
    lines = out.getvalue().splitlines()
    independent_check(lines)
    assert json.loads(lines[-1])["hash"] == report.head
    first = json.loads(lines[0])["record"]
    assert first == json.loads(json.dumps(call(1).to_dict()))  # every field of the CallRecord
    tail = io.StringIO()
    assert await log.export(tail, since_seq=4) == 2
    assert [json.loads(x)["seq"] for x in tail.getvalue().splitlines()] == [5, 6]


async def test_500_concurrent_records_are_all_durable_and_chained_in_call_order(
    log: AuditLog, store_url: str
) -> None:
    seqs = await asyncio.gather(*(log.append(call(i)) for i in range(500)))
    assert seqs == list(range(1, 501))  # in the order the calls were made, no gap
    assert log.written == 500
    assert log.batches < 50, "records should be committed in groups, not one transaction each"
    fresh = open_audit_log(store_url)  # another connection sees them: committed
    try:
        report = await fresh.verify()
        assert report.ok
        assert report.count == 500
        out = io.StringIO()
        await fresh.export(out)
        assert [json.loads(x)["record"]["trace_id"] for x in out.getvalue().splitlines()] == [
            f"trace-{i}" for i in range(500)
        ]
    finally:
        await fresh.aclose()


async def test_two_writers_on_one_log_keep_one_chain(log: AuditLog, store_url: str) -> None:
    other = open_audit_log(store_url)  # a second process or replica
    try:
        await asyncio.gather(
            *(log.append(call(i)) for i in range(150)), *(other.append(call(i)) for i in range(150))
        )
    finally:
        await other.aclose()
    report = await log.verify()
    assert report.ok
    assert report.count == 300


async def test_the_chain_continues_after_a_restart(log: AuditLog, store_url: str) -> None:
    for i in range(3):
        await log.append(call(i))
    head = (await log.verify()).head
    await log.aclose()
    reopened = open_audit_log(store_url)
    try:
        assert await reopened.append(call(3)) == 4
        out = io.StringIO()
        await reopened.export(out, since_seq=3)
        assert json.loads(out.getvalue())["prev_hash"] == head
        assert (await reopened.verify()).ok
    finally:
        await reopened.aclose()


def edit_body(url: str) -> None:
    execute(
        url,
        'UPDATE audit_log SET body = replace(body, \'"tenant":"acme"\', \'"tenant":"evil"\') WHERE seq = 3',
    )


def edit_column(url: str) -> None:
    execute(url, "UPDATE audit_log SET outcome = 'rate_limited' WHERE seq = 4")


def delete_row_2(url: str) -> None:
    execute(url, "DELETE FROM audit_log WHERE seq = 2")


def delete_row_1(url: str) -> None:
    execute(url, "DELETE FROM audit_log WHERE seq = 1")


def swap_rows_3_and_5(url: str) -> None:
    execute(url, "UPDATE audit_log SET seq = -5 WHERE seq = 5")
    execute(url, "UPDATE audit_log SET seq = 5 WHERE seq = 3")
    execute(url, "UPDATE audit_log SET seq = 3 WHERE seq = -5")


def swap_bodies_and_hashes_of_3_and_5(url: str) -> None:
    """Contents moved, links left alone: row 3 links right but hashes wrong."""
    execute(
        url,
        "UPDATE audit_log SET body = (SELECT body FROM audit_log WHERE seq = 5), "
        "hash = (SELECT hash FROM audit_log WHERE seq = 5) WHERE seq = 3",
    )


def rehash_row_2(url: str, row_1_hash: str) -> None:
    """Row 2 with another cost and its own hash recomputed: only the link to row 3 breaks."""
    body = canonical_json(call(2, cost=0.0).to_dict())
    execute(
        url, "UPDATE audit_log SET body = ?, hash = ? WHERE seq = 2", body, chain_hash(row_1_hash, 2, body)
    )


def insert_row_0(url: str) -> None:
    execute(
        url,
        "INSERT INTO audit_log SELECT 0, time, trace_id, tenant, plugin, version, outcome, body, prev_hash, hash FROM audit_log WHERE seq = 1",
    )


TAMPERING: dict[str, tuple[Callable[..., None], int, str]] = {
    "row put before the start": (insert_row_0, 0, "row 0 lies outside the chain"),
    "edited body": (edit_body, 3, "row 3 does not match its hash"),
    "edited column": (edit_column, 4, "column 'outcome' differs"),
    "deleted row": (delete_row_2, 2, "row 2 is missing (the next row is 3)"),
    "deleted first row": (delete_row_1, 1, "row 1 is missing"),
    "reordered rows": (swap_rows_3_and_5, 3, "row 3 does not link to row 2"),
    "moved content": (swap_bodies_and_hashes_of_3_and_5, 3, "row 3 does not match its hash"),
    "edited and rehashed": (rehash_row_2, 3, "row 3 does not link to row 2"),
}


@pytest.mark.parametrize("case", list(TAMPERING))
async def test_verify_finds_the_first_tampered_row(log: AuditLog, store_url: str, case: str) -> None:
    for i in range(1, 7):
        await log.append(call(i))
    out = io.StringIO()
    await log.export(out)
    row_1_hash = json.loads(out.getvalue().splitlines()[0])["hash"]
    assert (await log.verify()).ok
    tamper, bad_seq, reason = TAMPERING[case]
    if tamper is rehash_row_2:
        tamper(store_url, row_1_hash)
    else:
        tamper(store_url)
    report = await log.verify()
    assert not report.ok
    assert report.first_bad_seq == bad_seq
    assert reason in (report.reason or "")
    assert report.count == max(bad_seq - 1, 0)


async def test_close_writes_every_pending_record(log: AuditLog, store_url: str) -> None:
    tasks = [asyncio.create_task(log.append(call(i))) for i in range(100)]
    await asyncio.sleep(0)  # the appends are queued, not yet committed
    await log.aclose()
    assert sorted(t.result() for t in tasks) == list(range(1, 101))
    with pytest.raises(StorageError, match="closed"):
        await log.append(call(0))
    fresh = open_audit_log(store_url)
    try:
        assert (await fresh.verify()).count == 100
    finally:
        await fresh.aclose()


class In(PluginInput):
    text: str


class Out(PluginOutput):
    length: int


class Length(Plugin[In, Out]):
    name = "length"
    version = "1.0.0"
    description = "Counts characters."

    async def run(self, input: In, ctx: Context) -> Out:
        return Out(length=len(input.text))


async def test_orchestrated_calls_are_audited_without_their_text(store_url: str, backend: str) -> None:
    registry = Registry()
    registry.add(Length)
    audit = open_audit_log(store_url)
    orch = Orchestrator(registry, recorders=[audit])
    try:
        envelope = await orch.handle({"plugin": "length", "input": "my private words QX7Z", "tenant": "acme"})
        assert envelope.output == {"length": 21}
        out = io.StringIO()
        await audit.export(out)
        record = json.loads(out.getvalue())["record"]
        assert (record["tenant"], record["plugin"], record["version"], record["outcome"]) == (
            "acme",
            "length",
            "1.0.0",
            "ok",
        )
        assert record["trace_id"] == envelope.trace_id
        assert "QX7Z" not in out.getvalue()
    finally:
        await orch.aclose()
        await audit.aclose()
    if backend == "sqlite":
        assert b"QX7Z" not in sqlite_bytes(store_url.removeprefix("sqlite://"))


async def test_no_answer_is_given_when_the_audit_log_cannot_be_written() -> None:
    registry = Registry()
    registry.add(Length)
    audit = PostgresAuditLog("postgresql://postgres@127.0.0.1:1/test")  # nothing listens there
    orch = Orchestrator(registry, recorders=[audit])
    try:
        with pytest.raises(StorageError):
            await audit.append(call(1))
        with pytest.raises(RecordFailedError):
            await orch.handle({"plugin": "length", "input": "x"})
    finally:
        await orch.aclose()
        await audit.aclose()


CRASHER = textwrap.dedent(
    """
    import asyncio, sys, time
    from brickwork.contracts.record import CallRecord
    from brickwork.storage import open_audit_log

    async def main(url):
        log = open_audit_log(url)
        async def writer(w):
            i = 0
            while True:
                record = CallRecord(trace_id=f"w{w}-{i}", tenant="acme", time=time.time(), depth=0)
                seq = await log.append(record)
                sys.stdout.write(f"{seq}\\n")
                sys.stdout.flush()
                i += 1
        await asyncio.gather(*(writer(w) for w in range(16)))

    asyncio.run(main(sys.argv[1]))
    """
)


async def kill_after(script: Path, args: list[str], wanted: int) -> list[str]:
    """Run a writer that prints a line per acknowledged record; kill -9 it after ``wanted``.

    Returns every line it acknowledged (those still in the pipe at the kill too).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), *args, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    assert proc.stderr is not None
    acknowledged: list[str] = []
    try:
        async with asyncio.timeout(30):
            while len(acknowledged) < wanted:
                line = await proc.stdout.readline()
                if not line:
                    pytest.fail(f"the writer died early: {(await proc.stderr.read()).decode()}")
                acknowledged.append(line.decode().strip())
        proc.send_signal(signal.SIGKILL)
        acknowledged.extend((await proc.stdout.read()).decode().split())
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return acknowledged


async def test_every_acknowledged_record_survives_sigkill(store_url: str, tmp_path: Path) -> None:
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    # Killed mid-stream: batches are in flight.
    acknowledged = [int(x) for x in await kill_after(script, [store_url], 400)]
    assert len(set(acknowledged)) == len(acknowledged)

    after = open_audit_log(store_url)
    try:
        report = await after.verify()
        assert report.ok, report
        assert report.count >= max(acknowledged)  # gapless from 1, so every acknowledged seq is there
        out = io.StringIO()
        await after.export(out)
        stored = {json.loads(x)["seq"] for x in out.getvalue().splitlines()}
        assert set(acknowledged) <= stored
        assert await after.append(call(0)) == report.count + 1  # and the chain goes on
        assert (await after.verify()).ok
    finally:
        await after.aclose()


def test_the_log_file_is_private_and_in_memory_logs_are_refused(tmp_path: Path) -> None:
    from brickwork.contracts.errors import ConfigurationError

    async def once() -> None:
        audit = SQLiteAuditLog(tmp_path / "sub" / "audit.db")
        await audit.append(call(1))
        await audit.aclose()

    asyncio.run(once())
    assert oct(os.stat(tmp_path / "sub" / "audit.db").st_mode & 0o777) == "0o600"
    with pytest.raises(ConfigurationError):
        SQLiteAuditLog(":memory:")


def test_records_serialise_without_sharing_mutable_state() -> None:
    from brickwork.contracts.request import Attempt

    record = call(
        3,
        outcome="provider_timeout",
        error="timed out",
        degraded=True,
        cache_hit=True,
        fallbacks=[Attempt(plugin="a", version="1.0.0", code="provider_timeout", message="slow")],
        guard_verdicts=[{"guard": "pii", "verdict": "redacted", "spans": [[1, 4]]}],
    )
    data = record.to_dict()
    assert data["fallbacks"] == [
        {"plugin": "a", "version": "1.0.0", "code": "provider_timeout", "message": "slow"}
    ]
    data["models"].append("x")
    data["guard_verdicts"][0]["verdict"] = "changed"
    assert "x" not in record.models
    assert record.guard_verdicts[0]["verdict"] == "redacted"
    json.loads(canonical_json(data))


@pytest.mark.parametrize(("durability", "pragma"), [("process", 1), ("power", 2)])
async def test_durability_picks_the_fsync_policy(tmp_path: Path, durability: str, pragma: int) -> None:
    from brickwork.storage.audit import SQLiteAuditLog

    log = SQLiteAuditLog(tmp_path / "a.db", durability=durability)  # type: ignore[arg-type]
    try:
        await log.record(call(1))
        assert log._write_conn is not None
        # 1 = NORMAL (survives a process crash), 2 = FULL (survives a power cut too)
        assert log._write_conn.execute("PRAGMA synchronous").fetchone()[0] == pragma
        assert (await log.verify()).ok
    finally:
        await log.aclose()
