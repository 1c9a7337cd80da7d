"""``brickwork audit verify | export``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import psycopg
import pytest
import typer
from typer.testing import CliRunner

from brickwork.cli.audit import register
from brickwork.contracts.record import CallRecord
from brickwork.storage import open_audit_log

runner = CliRunner()


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def fill(url: str, n: int) -> None:
    async def once() -> None:
        log = open_audit_log(url)
        try:
            await asyncio.gather(
                *(
                    log.record(CallRecord(trace_id=f"t{i}", tenant="acme", time=float(i), depth=0))
                    for i in range(n)
                )
            )
        finally:
            await log.aclose()

    asyncio.run(once())


def tamper(url: str, sql: str) -> None:
    if url.startswith("postgresql://"):
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql)  # type: ignore[arg-type]
    else:
        with sqlite3.connect(url.removeprefix("sqlite://")) as conn:
            conn.execute(sql)
        conn.close()


def test_verify_then_break_the_chain(app: typer.Typer, store_url: str) -> None:
    fill(store_url, 12)
    result = runner.invoke(app, ["audit", "verify", "--audit", store_url])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: 12 records, chain intact, head ")
    tamper(store_url, "UPDATE audit_log SET body = replace(body, 'acme', 'evil') WHERE seq = 7")
    broken = runner.invoke(app, ["audit", "verify", "--audit", store_url])
    assert broken.exit_code == 1
    assert "broken at seq 7" in broken.stderr
    as_json = runner.invoke(app, ["audit", "verify", "--json", "--audit", store_url])
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert (report["ok"], report["count"], report["first_bad_seq"]) == (False, 6, 7)


def test_export_to_file_and_stdout(app: typer.Typer, store_url: str, tmp_path: Path) -> None:
    fill(store_url, 5)
    out = tmp_path / "audit.jsonl"
    result = runner.invoke(app, ["audit", "export", "-o", str(out), "--audit", store_url])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["seq"] for r in rows] == [1, 2, 3, 4, 5]
    assert {r["record"]["tenant"] for r in rows} == {"acme"}
    assert "exported 5 records" in result.stderr
    tail = runner.invoke(app, ["audit", "export", "--since", "3", "--audit", store_url])
    assert tail.exit_code == 0, tail.output
    assert [json.loads(line)["seq"] for line in tail.stdout.splitlines()] == [4, 5]


def test_env_default_and_a_missing_log(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRICKWORK_AUDIT", raising=False)
    monkeypatch.setenv("BRICKWORK_HOME", str(tmp_path))
    missing = runner.invoke(app, ["audit", "verify"])
    assert missing.exit_code == 1
    assert f"no audit log at {tmp_path / 'audit.db'}" in missing.stderr
    assert not (tmp_path / "audit.db").exists()
    out = tmp_path / "x.jsonl"
    assert runner.invoke(app, ["audit", "export", "-o", str(out)]).exit_code == 1
    assert not out.exists()
    fill(str(tmp_path / "audit.db"), 2)
    assert runner.invoke(app, ["audit", "verify"]).stdout.startswith("ok: 2 records")
