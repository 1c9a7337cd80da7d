"""The load tools of ``bench/gateway.py``: its lean mock upstream answers a well-formed
chat completion (and errors), and its lean load generator counts what it gets."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import aiohttp
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "gateway.py"


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("bench_gateway", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look themselves up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture
async def upstream(bench: ModuleType) -> AsyncIterator[str]:
    server = await bench.serve_lean_upstream()
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


async def test_the_lean_upstream_answers_like_openai(bench: ModuleType, upstream: str) -> None:
    auth = {"authorization": f"Bearer {bench.UPSTREAM_KEY}"}
    body = {"model": "some-model", "messages": [bench.PROMPT]}
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{upstream}/v1/chat/completions", json=body, headers=auth) as reply:
            assert reply.status == 200
            assert reply.content_type == "application/json"
            answer = await reply.json()
        async with session.post(f"{upstream}/v1/chat/completions", json=body, headers=auth) as reply:
            assert (await reply.json())["id"] != answer["id"]
        async with session.post(f"{upstream}/v1/chat/completions", json=body) as reply:
            assert reply.status == 401
            assert (await reply.json())["error"]["type"] == "authentication_error"
        async with session.get(f"{upstream}/v1/models", headers=auth) as reply:
            assert [m["id"] for m in (await reply.json())["data"]] == ["fake-model"]
        async with session.get(f"{upstream}/elsewhere", headers=auth) as reply:
            assert reply.status == 404
    assert answer["object"] == "chat.completion"
    assert answer["model"] == "some-model"
    assert answer["choices"][0]["message"]["role"] == "assistant"
    assert answer["choices"][0]["finish_reason"] == "stop"
    usage = answer["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


async def test_the_lean_upstream_answers_pipelined_requests_in_pieces(
    bench: ModuleType, upstream: str
) -> None:
    body = json.dumps({"model": "m", "messages": []}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (bench.UPSTREAM_KEY.encode(), len(body), body)
    )
    last = request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    data = request + request + last
    port = int(upstream.rsplit(":", 1)[1])
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for i in range(0, len(data), 50):
        writer.write(data[i : i + 50])
        await writer.drain()
    answers = await asyncio.wait_for(reader.read(), 2)  # the server closes after the third
    writer.close()
    await writer.wait_closed()
    assert answers.count(b"HTTP/1.1 200 OK\r\n") == 3
    assert answers.count(b"connection: close\r\n") == 1


async def test_the_lean_load_generator_counts_answers_and_errors(bench: ModuleType, upstream: str) -> None:
    me = SimpleNamespace(pid=os.getpid())  # tree_cpu reads only the pid
    auth = {"authorization": f"Bearer {bench.UPSTREAM_KEY}"}
    good = bench.Target("up", f"{upstream}/v1/chat/completions", "fake-model", me, auth)
    result = await bench.load(good, 4, 0.2, 0.05)
    assert result.errors == 0
    assert result.rps > 0
    assert 0 < result.p50_ms <= result.p99_ms
    bad = bench.Target("up", f"{upstream}/v1/chat/completions", "fake-model", me, {})
    result = await bench.load(bad, 2, 0.1, 0.0)
    assert result.rps == 0
    assert result.errors > 0
    await asyncio.sleep(0.01)  # let the closed connections go
