"""``brickwork keys``: the raw key is shown once, and never again by any command."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from brickwork.cli.keys import parse_duration, register
from brickwork.contracts.errors import AuthenticationError, InvalidRequestError
from brickwork.storage import ApiKey, open_key_store

runner = CliRunner()
RAW_RE = re.compile(r"bw_[0-9a-f]{16}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def app() -> typer.Typer:
    app = typer.Typer()
    register(app)
    return app


def authenticate(url: str, raw: str) -> ApiKey:
    async def once() -> ApiKey:
        store = open_key_store(url)
        try:
            return await store.authenticate(raw)
        finally:
            await store.aclose()

    return asyncio.run(once())


def test_create_list_revoke(app: typer.Typer, store_url: str) -> None:
    result = runner.invoke(
        app,
        [
            "keys",
            "create",
            "--tenant",
            "acme",
            "--plugins",
            "sentiment*, summarize",
            "--plugins",  # repeatable too
            "openai:*",
            "--name",
            "ci",
            "--expires-in",
            "30d",
            "--rate-limit-requests",
            "100",
            "--rate-limit-window",
            "60",
            "--budget-usd",
            "5",
            "--store",
            store_url,
        ],
    )
    assert result.exit_code == 0, result.output
    raw = result.stdout.strip()
    assert RAW_RE.fullmatch(raw), "stdout holds the key alone"
    assert "only time" in result.stderr
    key = authenticate(store_url, raw)
    assert key.tenant == "acme"
    assert key.plugins == ("sentiment*", "summarize", "openai:*")
    assert key.name == "ci"
    assert key.rate_limit == {"requests": 100, "window": 60.0}
    assert key.budget == {"limit": 5.0}
    assert key.expires_at is not None
    assert abs(key.expires_at - key.created_at - 30 * 86_400) < 5

    listed = runner.invoke(app, ["keys", "list", "--json", "--store", store_url])
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["id"] == key.id
    assert row["status"] == "active"
    secret = raw.split("_", 2)[2]
    table = runner.invoke(app, ["keys", "list", "--store", store_url])
    for output in (listed.output, table.output):
        assert secret not in output
        assert "hash" not in output
    assert key.id in table.output

    revoked = runner.invoke(app, ["keys", "revoke", key.id, "--store", store_url])
    assert revoked.exit_code == 0, revoked.output
    with pytest.raises(AuthenticationError, match="revoked"):
        authenticate(store_url, raw)
    again = runner.invoke(app, ["keys", "list", "--json", "--store", store_url])
    assert json.loads(again.stdout)[0]["status"] == "revoked"


def test_create_json_and_env_defaults(
    app: typer.Typer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("BRICKWORK_KEYS", raising=False)
    monkeypatch.setenv("BRICKWORK_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["keys", "create", "--tenant", "t", "--plugins", "*", "--admin", "--json"])
    assert result.exit_code == 0, result.output
    created = json.loads(result.stdout)
    assert created["admin"] is True
    assert RAW_RE.fullmatch(created["key"])
    assert (tmp_path / "home" / "keys.db").exists()
    assert authenticate(str(tmp_path / "home" / "keys.db"), created["key"]).id == created["id"]
    other = tmp_path / "other.db"
    monkeypatch.setenv("BRICKWORK_KEYS", f"sqlite:///{other}")
    assert runner.invoke(app, ["keys", "create", "--tenant", "t", "--plugins", "*"]).exit_code == 0
    assert other.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--plugins", "*", "--tenant", "t", "--expires-in", "soon"], "duration"),
        (["--plugins", " , ", "--tenant", "t"], "at least one"),
        (["--plugins", "*", "--tenant", "t", "--rate-limit-window", "5"], "needs --rate-limit-requests"),
        (["--plugins", "*", "--tenant", "t", "--budget-usd", "-1"], "budget"),
    ],
)
def test_create_refuses_bad_options(app: typer.Typer, tmp_path: Path, args: list[str], message: str) -> None:
    store = f"sqlite:///{tmp_path / 'k.db'}"
    result = runner.invoke(app, ["keys", "create", *args, "--store", store])
    assert result.exit_code == 1
    assert "error [invalid_request]" in result.stderr
    assert message in result.stderr
    assert result.stdout == ""


def test_revoke_unknown_key(app: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(app, ["keys", "revoke", "0123456789abcdef", "--store", str(tmp_path / "k.db")])
    assert result.exit_code == 1
    assert "error [key_not_found]" in result.stderr


def test_parse_duration() -> None:
    assert parse_duration("90") == 90
    assert parse_duration("15m") == 900
    assert parse_duration("12h") == 43_200
    assert parse_duration("30d") == 2_592_000
    assert parse_duration("2w") == 1_209_600
    for bad in ("", "d", "-1d", "0", "3 months"):
        with pytest.raises(InvalidRequestError):
            parse_duration(bad)
