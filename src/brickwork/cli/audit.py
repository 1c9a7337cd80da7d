"""``brickwork audit verify | export``: check and read the hash-chained audit log."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from brickwork.cli.options import JsonOption
from brickwork.contracts.errors import BrickworkError, ConfigurationError
from brickwork.storage.audit import AuditLog, VerifyReport, open_audit_log
from brickwork.storage.urls import AUDIT_ENV, default_audit_url, is_postgres, sqlite_path

__all__ = ["register"]

T = TypeVar("T")

AuditOption = Annotated[
    str | None,
    typer.Option(
        "--audit",
        help=f"Audit log URL (sqlite:///path or postgresql://...). Default: ${AUDIT_ENV}, "
        "else sqlite:///$BRICKWORK_HOME/audit.db.",
        envvar=AUDIT_ENV,
        show_envvar=False,
    ),
]


def register(app: typer.Typer) -> None:
    """Add the ``audit`` command group to ``app``."""
    app.add_typer(_audit_app(), name="audit")


def _url(option: str | None) -> str:
    url = option or default_audit_url()
    if not is_postgres(url) and not os.path.exists(sqlite_path(url)):
        # Opening would create an empty log, and "0 records, ok" would hide a typo.
        raise ConfigurationError(f"no audit log at {sqlite_path(url)}")
    return url


def _run(option: str | None, action: Callable[[AuditLog], Awaitable[T]]) -> T:
    url = _url(option)

    async def once() -> T:
        log = open_audit_log(url)
        try:
            return await action(log)
        finally:
            await log.aclose()

    return asyncio.run(once())


def _audit_app() -> typer.Typer:
    audit_app = typer.Typer(help="Verify and export the audit log.", no_args_is_help=True)
    err = Console(stderr=True, soft_wrap=True, highlight=False)

    def fail(error: BrickworkError, as_json: bool) -> typer.Exit:
        if as_json:
            print(json.dumps({"error": error.to_dict()}))
        else:
            err.print(f"[bold red]error[/] {escape(f'[{error.code}]')}: {escape(error.message)}")
        return typer.Exit(code=1)

    @audit_app.command("verify")
    def verify(audit: AuditOption = None, as_json: JsonOption = False) -> None:
        """Check the hash chain from the first row to the last. Exit 1 if it is broken."""

        async def action(log: AuditLog) -> VerifyReport:
            return await log.verify()

        try:
            report = _run(audit, action)
        except BrickworkError as exc:
            raise fail(exc, as_json) from None
        if as_json:
            print(
                json.dumps(
                    {
                        "ok": report.ok,
                        "count": report.count,
                        "first_bad_seq": report.first_bad_seq,
                        "reason": report.reason,
                        "head": report.head,
                    }
                )
            )
        elif report.ok:
            print(f"ok: {report.count} records, chain intact, head {report.head}")
        else:
            err.print(
                f"[bold red]broken[/] at seq {report.first_bad_seq}: {escape(report.reason or '')} "
                f"({report.count} records before it are intact)"
            )
        if not report.ok:
            raise typer.Exit(code=1)

    @audit_app.command("export")
    def export(
        since: Annotated[int, typer.Option("--since", min=0, help="Only rows after this seq.")] = 0,
        output: Annotated[
            Path | None, typer.Option("--output", "-o", help="Write to FILE (default: standard output).")
        ] = None,
        audit: AuditOption = None,
    ) -> None:
        """Write records as JSON lines: {"hash", "prev_hash", "record", "seq"}, in seq order."""

        try:
            if output is None:

                async def to_stdout(log: AuditLog) -> int:
                    return await log.export(sys.stdout, since_seq=since)

                count = _run(audit, to_stdout)
                sys.stdout.flush()
            else:
                _url(audit)  # fail before creating the file
                with output.open("w", encoding="utf-8") as file:

                    async def to_file(log: AuditLog) -> int:
                        return await log.export(file, since_seq=since)

                    count = _run(audit, to_file)
        except BrickworkError as exc:
            raise fail(exc, False) from None
        err.print(f"exported {count} records" + (f" to {escape(str(output))}" if output else ""))

    return audit_app
