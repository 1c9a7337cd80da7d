"""Logs are JSON lines, and no key or secret reaches them."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from brickwork.contracts.record import CallRecord
from brickwork.observability import configure_logging, redact, redact_text
from brickwork.observability.logging import REDACTED, is_secret_key
from brickwork.runtime.recording import LogRecorder

RAW_KEY = "bw_0123456789abcdef_Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXg"
OPENAI = "sk-proj-AbCdEfGhIjKlMnOpQrStUvWx0123456789"
ANTHROPIC = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize(
    ("text", "leaked", "kept"),
    [
        (f"key {RAW_KEY} used", RAW_KEY.split("_")[2], "bw_0123456789abcdef_"),
        (f"Authorization: Bearer {RAW_KEY}", RAW_KEY, "Authorization: Bearer "),
        ("authorization: bearer eyJhbGciOi.eyJzdWIi.sig-nat_ure", "eyJhbGciOi", "bearer "),
        (f"calling with {OPENAI}.", OPENAI[3:], "sk-"),
        (f"anthropic={ANTHROPIC}", ANTHROPIC[3:], "anthropic=sk-"),
        ("aws AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE", "aws "),
        ("gh ghp_aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789", "ghp_aBcDeFgHiJ", "gh "),
    ],
)
def test_secrets_in_text_are_redacted(text: str, leaked: str, kept: str) -> None:
    out = redact_text(text)
    assert leaked not in out
    assert kept in out
    assert REDACTED in out


@pytest.mark.parametrize(
    "text", ["task-abcdefghijklmnop", "max_tokens=512", "the bw_ prefix", "risk-free", "skill-based"]
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


@pytest.mark.parametrize(
    "key",
    [
        "api_key",
        "API_KEY",
        "apiKey",
        "apikey",
        "X-Api-Key",
        "authorization",
        "Authorization",
        "password",
        "db_password",
        "token",
        "access_token",
        "refreshToken",
        "secret",
        "client_secret",
        "Cookie",
        "private_key",
    ],
)
def test_secret_mapping_keys(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_tokens",
        "input_tokens",
        "output_tokens",
        "tokens",
        "key",
        "monkey",
        "keyboard",
        "secretary",
        "trace_id",
    ],
)
def test_ordinary_mapping_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_walks_nested_data_without_changing_it() -> None:
    data = {
        "usage": {"input_tokens": 10, "max_tokens": 64},
        "headers": [{"Authorization": "whatever"}, {"X-Api-Key": 12345}],
        "note": f"used {RAW_KEY}",
        "password": None,
    }
    out = redact(data)
    assert out == {
        "usage": {"input_tokens": 10, "max_tokens": 64},
        "headers": [{"Authorization": REDACTED}, {"X-Api-Key": REDACTED}],
        "note": f"used bw_0123456789abcdef_{REDACTED}",
        "password": REDACTED,
    }
    assert data["headers"][0] == {"Authorization": "whatever"}  # the caller's data is untouched


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    level, handlers = root.level, list(root.handlers)
    buffer = io.StringIO()
    configure_logging("INFO", json=True, stream=io.StringIO())
    configure_logging("DEBUG", json=True, stream=buffer)  # replaces the first one
    yield buffer
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


def lines(buffer: io.StringIO) -> list[dict[str, object]]:
    """Our lines (asyncio logs at DEBUG too)."""
    parsed = [json.loads(line) for line in buffer.getvalue().splitlines()]
    return [line for line in parsed if str(line["logger"]).startswith("brickwork")]


def test_json_lines_with_args_extras_and_exceptions_redacted(stream: io.StringIO) -> None:
    ours = [h for h in logging.getLogger().handlers if getattr(h, "_brickwork", False)]
    assert len(ours) == 1
    log = logging.getLogger("brickwork.test")
    log.info("authenticated %s for %s", RAW_KEY, "acme")
    log.warning("upstream said %(err)s", {"err": f"bad key {OPENAI}", "api_key": OPENAI})
    log.info(
        "call", extra={"brickwork": {"headers": {"authorization": f"Bearer {RAW_KEY}"}, "max_tokens": 5}}
    )
    try:
        raise RuntimeError(f"provider rejected {OPENAI}")
    except RuntimeError:
        log.exception("failed with %s", ValueError(f"token {RAW_KEY}"))
    text = stream.getvalue()
    assert RAW_KEY.split("_")[2] not in text
    assert OPENAI[3:] not in text
    first, second, third, fourth = lines(stream)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "INFO"
    assert first["logger"] == "brickwork.test"
    assert first["message"] == f"authenticated bw_0123456789abcdef_{REDACTED} for acme"
    assert second["message"] == f"upstream said bad key sk-{REDACTED}"
    assert third["brickwork"] == {"headers": {"authorization": REDACTED}, "max_tokens": 5}
    assert "RuntimeError: provider rejected sk-" in str(fourth["exception"])
    assert fourth["message"] == f"failed with token bw_0123456789abcdef_{REDACTED}"


async def test_log_recorder_lines_keep_their_numbers(stream: io.StringIO) -> None:
    record = CallRecord(trace_id="abc", tenant="acme", time=1.0, depth=0, plugin="sentiment", version="1.0.0")
    record.usage.input_tokens, record.usage.output_tokens = 12, 3
    record.error = f"upstream refused key {OPENAI}"
    await LogRecorder().record(record)
    (line,) = lines(stream)
    assert line["logger"] == "brickwork.calls"
    extra = line["brickwork"]
    assert isinstance(extra, dict)
    assert extra["usage"] == {"input_tokens": 12, "output_tokens": 3, "calls": 0}
    assert extra["plugin"] == "sentiment"
    assert extra["error"] == f"upstream refused key sk-{REDACTED}"


def test_text_format_is_redacted_too() -> None:
    root = logging.getLogger()
    buffer = io.StringIO()
    handler = configure_logging("INFO", json=False, stream=buffer)
    try:
        logging.getLogger("brickwork.test").info(
            "key %s", RAW_KEY, extra={"brickwork": {"password": "hunter2"}}
        )
    finally:
        root.removeHandler(handler)
    out = buffer.getvalue()
    assert "brickwork.test: key bw_0123456789abcdef_[REDACTED]" in out
    assert "hunter2" not in out
