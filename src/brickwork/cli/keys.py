"""``brickwork keys create | list | revoke``: API keys for the gateway.

The raw key is printed once, by ``create``, on standard output alone (details go
to standard error), so ``KEY=$(brickwork keys create ...)`` captures just the key.
Nothing prints a key's hash or raw form again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from brickwork.cli.options import JsonOption
from brickwork.contracts.errors import BrickworkError, InvalidRequestError
from brickwork.storage.keys import ApiKey, KeyStore, open_key_store
from brickwork.storage.urls import KEYS_ENV, default_keys_url

__all__ = ["parse_duration", "register"]

T = TypeVar("T")

_UNITS = {"s": 1, "m": 60, "h": 3_600, "d": 86_400, "w": 604_800, "y": 31_536_000}
_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdwy]?)")

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=f"Key store URL (sqlite:///path or postgresql://...). Default: ${KEYS_ENV}, "
        "else sqlite:///$BRICKWORK_HOME/keys.db.",
        envvar=KEYS_ENV,
        show_envvar=False,
    ),
]


def parse_duration(text: str) -> float:
    """Seconds in ``30d``, ``12h``, ``15m``, ``90s``, ``2w``, ``1y`` or a plain number of seconds."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None or float(match.group(1)) <= 0:
        raise InvalidRequestError(f"duration {text!r}: write e.g. 90s, 15m, 12h, 30d, 2w")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def register(app: typer.Typer) -> None:
    """Add the ``keys`` command group to ``app``."""
    app.add_typer(_keys_app(), name="keys")


def _run(url: str | None, action: Callable[[KeyStore], Awaitable[T]]) -> T:
    async def once() -> T:
        store = open_key_store(url or default_keys_url())
        try:
            return await action(store)
        finally:
            await store.aclose()

    return asyncio.run(once())


def _fail(err: Console, error: BrickworkError, as_json: bool) -> typer.Exit:
    if as_json:
        print(json.dumps({"error": error.to_dict()}))
    else:
        err.print(f"[bold red]error[/] {escape(f'[{error.code}]')}: {escape(error.message)}")
    return typer.Exit(code=1)


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _status(key: ApiKey, now: float) -> str:
    if key.revoked:
        return "revoked"
    return "expired" if key.expired(now) else "active"


def _listing(key: ApiKey, now: float) -> dict[str, Any]:
    return key.to_dict() | {"status": _status(key, now)}


def _keys_app() -> typer.Typer:
    keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
    out = Console()
    err = Console(stderr=True, soft_wrap=True, highlight=False)

    @keys_app.command("create")
    def create(
        tenant: Annotated[str, typer.Option(help="Tenant the key's calls are made for.")],
        plugins: Annotated[
            list[str],
            typer.Option(
                help="Patterns of plugins (and provider:model ids) the key may use: repeat the "
                "option or separate with commas, e.g. 'sentiment*,summarize' --plugins 'openai:*'."
            ),
        ],
        admin: Annotated[bool, typer.Option("--admin", help="May use the admin API.")] = False,
        expires_in: Annotated[
            str | None, typer.Option("--expires-in", help="Lifetime, e.g. 30d, 12h. Default: never.")
        ] = None,
        rate_limit_requests: Annotated[
            int | None, typer.Option("--rate-limit-requests", help="Requests allowed per window.")
        ] = None,
        rate_limit_window: Annotated[
            float | None, typer.Option("--rate-limit-window", help="Window in seconds (default 60).")
        ] = None,
        budget_usd: Annotated[
            float | None, typer.Option("--budget-usd", help="Spend limit in USD per budget period.")
        ] = None,
        budget_period: Annotated[
            str | None, typer.Option("--budget-period", help="Budget period, e.g. 1d, 30d (default 1d).")
        ] = None,
        name: Annotated[str, typer.Option("--name", help="A note to recognise the key by.")] = "",
        store: StoreOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Create a key and print it. It is shown this once: store it now."""
        try:
            patterns = [p.strip() for item in plugins for p in item.split(",") if p.strip()]
            expires_at = time.time() + parse_duration(expires_in) if expires_in else None
            rate_limit: dict[str, Any] | None = None
            if rate_limit_requests is not None:
                rate_limit = {"requests": rate_limit_requests}
                if rate_limit_window is not None:
                    rate_limit["window"] = rate_limit_window
            elif rate_limit_window is not None:
                raise InvalidRequestError("--rate-limit-window needs --rate-limit-requests")
            budget: dict[str, Any] | None = None
            if budget_usd is not None:
                budget = {"limit": budget_usd}
                if budget_period is not None:
                    budget["period"] = parse_duration(budget_period)
            elif budget_period is not None:
                raise InvalidRequestError("--budget-period needs --budget-usd")

            async def action(ks: KeyStore) -> tuple[ApiKey, str]:
                return await ks.create(
                    tenant=tenant,
                    plugins=patterns,
                    admin=admin,
                    expires_at=expires_at,
                    rate_limit=rate_limit,
                    budget=budget,
                    name=name,
                )

            key, raw = _run(store, action)
        except BrickworkError as exc:
            raise _fail(err, exc, as_json) from None
        if as_json:
            print(json.dumps({"key": raw, **key.to_dict()}, indent=2))
            return
        err.print(
            f"created key [bold]{key.id}[/] for tenant {escape(key.tenant)}: "
            f"plugins {escape(', '.join(key.plugins))}, expires {_when(key.expires_at)}"
        )
        err.print("[yellow]This is the only time the key is shown. Store it now.[/]")
        print(raw)

    @keys_app.command("list")
    def list_keys(store: StoreOption = None, as_json: JsonOption = False) -> None:
        """List keys (ids and settings; never a key or its hash)."""

        async def action(ks: KeyStore) -> list[ApiKey]:
            return await ks.list()

        try:
            keys = _run(store, action)
        except BrickworkError as exc:
            raise _fail(err, exc, as_json) from None
        now = time.time()
        if as_json:
            print(json.dumps([_listing(k, now) for k in keys], indent=2))
            return
        if not keys:
            err.print("no keys")
            return
        table = Table(title="API keys")
        table.add_column("id", no_wrap=True)
        for column in ("name", "tenant", "plugins", "admin", "limits", "expires", "status"):
            table.add_column(column, overflow="fold")
        for key in keys:
            limits = []
            if key.rate_limit:
                limits.append(", ".join(f"{k}={v}" for k, v in sorted(key.rate_limit.items())))
            if key.budget:
                limits.append("budget " + ", ".join(f"{k}={v}" for k, v in sorted(key.budget.items())))
            table.add_row(
                key.id,
                escape(key.name) or "-",
                escape(key.tenant),
                escape(", ".join(key.plugins)),
                "yes" if key.admin else "",
                escape("; ".join(limits)) or "-",
                _when(key.expires_at),
                _status(key, now),
            )
        out.print(table)

    @keys_app.command("revoke")
    def revoke(
        key_id: Annotated[str, typer.Argument(help="The key's id (from `keys list`).")],
        store: StoreOption = None,
        as_json: JsonOption = False,
    ) -> None:
        """Revoke a key. Gateways stop accepting it within their key cache's lifetime (seconds)."""

        async def action(ks: KeyStore) -> None:
            await ks.revoke(key_id)

        try:
            _run(store, action)
        except BrickworkError as exc:
            raise _fail(err, exc, as_json) from None
        if as_json:
            print(json.dumps({"revoked": key_id}))
        else:
            err.print(f"revoked key [bold]{escape(key_id)}[/]")

    return keys_app
