"""``python -m brickwork.gateway`` (the same command as ``brickwork serve``) as a real
process: kill -9 under load loses no audit record of an answer a client got, and
SIGTERM drains the requests in flight and flushes the audit log.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from gateway_stack import UPSTREAM_KEY, free_port

from brickwork.storage.audit import SQLiteAuditLog
from brickwork.storage.keys import SQLiteKeyStore
from brickwork.testing.upstream import FakeUpstream, Fault

pytestmark = pytest.mark.timeout(90)

#: uvicorn re-raises the signal once it has shut down gracefully, so a drained
#: server ends "killed by SIGTERM" (what supervisors expect), or 0.
GRACEFUL = (0, -signal.SIGTERM)


class Server:
    """One gateway process on a free port, with the stores of ``home``."""

    def __init__(self, home: Path, config: Path | None = None) -> None:
        self.home = home
        self.config = config
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.log = home / f"server-{self.port}.log"

    def start(self) -> Server:
        args = [
            sys.executable,
            "-m",
            "brickwork.gateway",
            "--port",
            str(self.port),
            "--keys",
            f"sqlite:///{self.home / 'keys.db'}",
            "--audit",
            f"sqlite:///{self.home / 'audit.db'}",
            "--graceful-timeout",
            "10",
            "--log-level",
            "warning",
        ]
        if self.config is not None:
            args += ["--config", str(self.config)]
        env = {**os.environ, "BRICKWORK_HOME": str(self.home), "UPSTREAM_KEY": UPSTREAM_KEY}
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        return self

    async def ready(self, within: float = 30.0) -> None:
        deadline = time.monotonic() + within
        async with httpx2.AsyncClient() as client:
            while time.monotonic() < deadline:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise AssertionError(f"the server exited: {self.log.read_text()[-3000:]}")
                try:
                    if (await client.get(self.url + "/readyz")).status_code == 200:
                        return
                except httpx2.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the server did not get ready: {self.log.read_text()[-3000:]}")

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 20.0) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path


async def make_key(home: Path, plugins: list[str]) -> str:
    store = SQLiteKeyStore(home / "keys.db")
    try:
        _, raw = await store.create(tenant="crash", plugins=plugins)
    finally:
        await store.aclose()
    return raw


async def audit_trace_ids(home: Path) -> tuple[set[str], bool, int]:
    log = SQLiteAuditLog(home / "audit.db")
    try:
        report = await log.verify()
        out = io.StringIO()
        await log.export(out)
    finally:
        await log.aclose()
    ids = {json.loads(line)["record"]["trace_id"] for line in out.getvalue().splitlines() if line}
    return ids, report.ok, report.count


async def until(event: asyncio.Event, refused: list[str]) -> None:
    try:
        await asyncio.wait_for(event.wait(), 30)
    except TimeoutError:
        raise AssertionError(f"too few answers in 30 s; refused: {refused[:5]}") from None


@pytest.fixture
async def servers(home: Path) -> AsyncIterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


async def test_kill_9_under_load_loses_no_record_of_an_answer(home: Path, servers: list[Server]) -> None:
    raw = await make_key(home, ["sentiment"])
    first = Server(home).start()
    servers.append(first)
    await first.ready()
    answered: list[str] = []
    refused: list[str] = []  # an answer that is not a 200 (there should be none)
    failures = 0
    stop = asyncio.Event()
    enough = asyncio.Event()
    wanted = 150

    async def worker(n: int, url: str) -> None:
        nonlocal failures
        async with httpx2.AsyncClient(base_url=url, timeout=10) as client:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    response = await client.post(
                        "/v1/plugins/sentiment@1.0.0/invoke",  # rules, no model
                        json={"input": f"worker {n} request {i} was good"},  # distinct: no cache hits
                        headers={"Authorization": f"Bearer {raw}"},
                    )
                except httpx2.TransportError:
                    failures += 1
                    await asyncio.sleep(0.01)
                    continue
                if response.status_code != 200:
                    refused.append(f"{response.status_code} {response.text[:200]}")
                else:
                    answered.append(response.json()["trace_id"])
                    if len(answered) >= wanted:
                        enough.set()

    workers = [asyncio.create_task(worker(n, first.url)) for n in range(12)]
    await until(enough, refused)  # well under way
    first.signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    await asyncio.sleep(0.2)  # requests in flight at the kill fail on the client side
    stop.set()
    await asyncio.gather(*workers)
    before_restart = list(answered)

    second = Server(home).start()
    servers.append(second)
    await second.ready()
    stop.clear()
    enough.clear()
    wanted = len(before_restart) + 40
    workers = [asyncio.create_task(worker(n, second.url)) for n in range(4)]
    await until(enough, refused)
    stop.set()
    await asyncio.gather(*workers)
    second.signal(signal.SIGTERM)
    assert second.wait() in GRACEFUL

    assert refused == []
    recorded, chain_ok, count = await audit_trace_ids(home)
    assert chain_ok
    missing = [trace for trace in answered if trace not in recorded]
    assert missing == [], f"{len(missing)} of {len(answered)} answers have no audit record"
    assert len(before_restart) >= 150
    assert count >= len(answered)  # requests cut off by the kill may have records without answers
    assert len(set(answered)) == len(answered)


async def test_sigterm_drains_requests_in_flight_and_flushes_the_audit_log(
    home: Path, servers: list[Server]
) -> None:
    async with FakeUpstream(api_key=UPSTREAM_KEY) as upstream:
        config = home / "brickwork.yaml"
        config.write_text(
            "providers:\n"
            "  up:\n"
            "    type: openai\n"
            f"    base_url: {upstream.openai_url}\n"
            "    api_key_env: UPSTREAM_KEY\n"
        )
        raw = await make_key(home, ["up:*"])
        server = Server(home, config).start()
        servers.append(server)
        await server.ready()
        upstream.enqueue(Fault(text="slow answer", delay=1.5))
        async with httpx2.AsyncClient(base_url=server.url, timeout=20) as client:
            slow = asyncio.create_task(
                client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "up:fake-model",
                        "messages": [{"role": "user", "content": "take your time"}],
                    },
                    headers={"Authorization": f"Bearer {raw}"},
                )
            )
            while not upstream.requests:  # noqa: ASYNC110 - the fake upstream has no event for it
                await asyncio.sleep(0.02)
            server.signal(signal.SIGTERM)
            response = await slow
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"] == "slow answer"
        assert server.wait() in GRACEFUL
    recorded, chain_ok, _ = await audit_trace_ids(home)
    assert chain_ok
    assert response.json()["brickwork"]["trace_id"] in recorded
    log = server.log.read_text()
    assert raw not in log
    assert raw.split("_", 2)[2] not in log
    assert UPSTREAM_KEY not in log


@pytest.mark.parametrize("threshold", [(10_000, 20, 20), None])
def test_serving_tunes_the_garbage_collector(threshold: tuple[int, int, int] | None) -> None:
    import gc

    from brickwork.gateway.server import ServeOptions, tune_gc

    before = gc.get_threshold()
    try:
        tune_gc(ServeOptions(gc_threshold=threshold))
        assert gc.get_threshold() == (threshold or before)
        assert gc.get_freeze_count() > 0  # what was loaded is out of the collector's way
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_a_served_runtime_records_to_the_audit_log_and_metrics_not_memory(tmp_path: Path) -> None:
    from brickwork.gateway.server import ServeOptions, open_gateway
    from brickwork.runtime.recording import MemoryRecorder
    from brickwork.storage.audit import SQLiteAuditLog

    gateway = open_gateway(
        ServeOptions(keys=f"sqlite:///{tmp_path / 'keys.db'}", audit=f"sqlite:///{tmp_path / 'audit.db'}")
    )
    kinds = [type(r) for r in gateway.orchestrator.recorders]
    assert MemoryRecorder not in kinds
    assert SQLiteAuditLog in kinds
    assert any(type(r).__name__ == "MetricsRecorder" for r in gateway.orchestrator.recorders)


async def test_a_connection_s_writes_of_one_loop_iteration_leave_in_one_send() -> None:
    from brickwork.gateway.server import _CoalescedWrites

    class Transport:
        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.closed = self.aborted = False

        def write(self, data: bytes) -> None:
            self.sent.append(data)

        def is_closing(self) -> bool:
            return self.closed or self.aborted

        def close(self) -> None:
            self.closed = True

        def abort(self) -> None:
            self.aborted = True

        def get_extra_info(self, name: str) -> str:
            return f"info:{name}"

    raw = Transport()
    transport = _CoalescedWrites(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
    transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
    transport.write(memoryview(b"ok"))
    assert raw.sent == []  # not yet: the rest of this iteration may add to it
    await asyncio.sleep(0)
    assert raw.sent == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"]
    transport.write(b"bye")
    transport.close()  # what waits is written before the close
    assert raw.sent[-1] == b"bye"
    assert raw.closed
    assert transport.get_extra_info("peername") == "info:peername"  # the rest is the transport's
    other = Transport()
    aborted = _CoalescedWrites(other, asyncio.get_running_loop())  # type: ignore[arg-type]
    aborted.write(b"never")
    aborted.abort()
    await asyncio.sleep(0)
    assert other.sent == []
