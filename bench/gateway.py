"""The gateway's cost per request, against a bare proxy and the LiteLLM proxy.

One command, one run, loopback only, bounded in time::

    .venv/bin/python bench/gateway.py [--seconds 3] [--rounds 2] [--litellm 1.82.6 | --no-litellm]

Every server is its own process, all OpenAI-compatible, all in front of one mock
upstream (:class:`brickwork.testing.upstream.FakeUpstream`):

(a) the upstream, called directly — the floor;
(b) a bare pass-through: Starlette + one aiohttp session, no auth, no checks;
(c) Brickwork's full path: ``python -m brickwork.gateway`` (uvicorn, uvloop,
    httptools) with key authentication, routing to the ``passthrough-up`` plugin
    and its default policies (timeout, breaker, bulkhead), Prometheus metrics
    and the SQLite audit log (group commit, durability "process": WAL with
    ``synchronous=NORMAL``, every answered record survives a kill -9), calling
    ``up:fake-model``;
(c0) the same without the audit log (``--audit off``), to show how much of (c) the
    durable record is (skip with ``--no-diagnostic``);
(d) the LiteLLM proxy (``litellm --config``), installed into a venv of its own
    under ``~/.cache/brickwork-bench`` (reused on later runs), one worker, no
    database.

For each, at concurrency 1, 16 and 64 (a warm-up, then ``--seconds`` of closed-loop
load from one aiohttp client process): requests per second, the server's CPU time
per request (user + system, its whole process tree, from ``/proc``), and the p50
and p99 latency added to the upstream's at the same concurrency. Every point is
measured ``--rounds`` times, interleaved, and keeps its best pass. Max RPS is the
best of the three concurrencies; CPU per request is taken at that concurrency.
Everything shares this machine's cores, so numbers are for comparison, not for a
capacity plan.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CONCURRENCY = (1, 16, 64)
#: Clean LiteLLM release (1.82.7 and 1.82.8 were the compromised uploads: never those).
LITELLM_VERSION = "1.82.6"
BAD_LITELLM = {"1.82.7", "1.82.8"}
UPSTREAM_KEY = "sk-bench-upstream"
PROMPT = {"role": "user", "content": "Say hello to the benchmark, politely and briefly."}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- the servers under test (run as subcommands of this file) -----------------------


async def run_upstream() -> None:
    from brickwork.testing.upstream import FakeUpstream

    async with FakeUpstream(api_key=UPSTREAM_KEY) as upstream:
        print(f"READY {upstream.url}", flush=True)
        while True:  # it records every request: keep the record from growing
            await asyncio.sleep(1)
            upstream.requests.clear()


def run_bare(port: int, upstream: str) -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    session: aiohttp.ClientSession | None = None

    async def chat(request: Request) -> Response:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=256))
        body = await request.body()
        async with session.post(
            upstream + "/v1/chat/completions",
            data=body,
            headers={"content-type": "application/json", "authorization": f"Bearer {UPSTREAM_KEY}"},
        ) as reply:
            payload = await reply.read()
            return Response(payload, status_code=reply.status, media_type="application/json")

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


# --- processes --------------------------------------------------------------------------


def free_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of ``pid`` and every process below it."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    total, stack = 0.0, [pid]
    while stack:
        current = stack.pop()
        total += times.get(current, 0.0)
        stack.extend(child for child, parent in parents.items() if parent == current)
    return total


@dataclass
class Target:
    name: str
    url: str
    model: str
    process: subprocess.Popen[bytes]
    headers: dict[str, str] = field(default_factory=dict)
    results: dict[int, Result] = field(default_factory=dict)


@dataclass
class Result:
    rps: float
    cpu_us: float
    p50_ms: float
    p99_ms: float
    errors: int


def spawn(args: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,  # its whole group is stopped at the end
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


async def wait_ready(target: Target, within: float, logs: Path) -> None:
    body = {"model": target.model, "messages": [PROMPT], "max_tokens": 16}
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if target.process.poll() is not None:
                raise SystemExit(f"{target.name} exited:\n{tails(logs)}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.post(target.url, json=body, headers=target.headers) as reply:
                    text = await reply.text()
                    if reply.status == 200:
                        return
                    raise SystemExit(f"{target.name} answered {reply.status}: {text[:500]}")
            await asyncio.sleep(0.2)
    raise SystemExit(f"{target.name} did not start within {within:.0f}s:\n{tails(logs)}")


def tails(logs: Path) -> str:
    """The end of every server log (the directory goes away with the run)."""
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-1500:]}" for log in sorted(logs.glob("*.log"))
    )


# --- load ---------------------------------------------------------------------------------


async def load(target: Target, concurrency: int, seconds: float, warmup: float) -> Result:
    body = json.dumps({"model": target.model, "messages": [PROMPT], "max_tokens": 16}).encode()
    headers = {"content-type": "application/json", **target.headers}
    latencies: list[float] = []
    errors = 0
    measuring = False
    stop_at = 0.0
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal errors
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                try:
                    async with session.post(target.url, data=body, headers=headers) as reply:
                        await reply.read()
                        ok = reply.status == 200
                except (aiohttp.ClientError, OSError):
                    ok = False
                if measuring:
                    if ok:
                        latencies.append(time.perf_counter() - started)
                    else:
                        errors += 1

        stop_at = time.perf_counter() + warmup
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        measuring = True
        cpu0 = tree_cpu(target.process.pid)
        began = time.perf_counter()
        stop_at = began + seconds
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu = tree_cpu(target.process.pid) - cpu0
    latencies.sort()
    done = len(latencies)
    if not done:
        return Result(0.0, float("nan"), float("nan"), float("nan"), errors)
    return Result(
        rps=done / elapsed,
        cpu_us=cpu / done * 1e6,
        p50_ms=latencies[done // 2] * 1000,
        p99_ms=latencies[min(done - 1, int(done * 0.99))] * 1000,
        errors=errors,
    )


# --- setting up each target ---------------------------------------------------------------


def start_upstream(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "upstream"],
        stdout=subprocess.PIPE,
        stderr=(tmp / "upstream.log").open("ab"),
        start_new_session=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().decode().strip()
    if not line.startswith("READY "):
        raise SystemExit(f"the upstream did not start: {line!r}")
    return process, line.split(" ", 1)[1]


def start_brickwork(
    tmp: Path, upstream: str, *, audit: bool = True
) -> tuple[subprocess.Popen[bytes], str, str]:
    from brickwork.storage.keys import SQLiteKeyStore

    config = tmp / "brickwork.yaml"
    config.write_text(
        f"providers:\n  up:\n    type: openai\n    base_url: {upstream}/v1\n    api_key_env: UPSTREAM_KEY\n"
    )

    async def key() -> str:
        store = SQLiteKeyStore(tmp / "keys.db")
        try:
            _, raw = await store.create(tenant="bench", plugins=["up:*"], name="bench")
        finally:
            await store.aclose()
        return raw

    raw = asyncio.run(key())
    port = free_port()
    name = "brickwork" if audit else "brickwork-no-audit"
    process = spawn(
        [
            sys.executable,
            "-m",
            "brickwork.gateway",
            "--config",
            str(config),
            "--port",
            str(port),
            "--keys",
            f"sqlite:///{tmp / 'keys.db'}",
            "--audit",
            f"sqlite:///{tmp / 'audit.db'}" if audit else "off",
            "--log-level",
            "warning",
        ],
        tmp / f"{name}.log",
        env={"UPSTREAM_KEY": UPSTREAM_KEY, "BRICKWORK_HOME": str(tmp)},
    )
    return process, f"http://127.0.0.1:{port}/v1/chat/completions", raw


def litellm_venv(version: str) -> Path:
    if version in BAD_LITELLM:
        raise SystemExit(f"litellm {version} is a compromised release; pick another")
    venv = Path.home() / ".cache" / "brickwork-bench" / f"litellm-{version}"
    marker = venv / ".installed"
    if not marker.exists():
        print(f"installing litellm[proxy]=={version} into {venv} (once) …", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [
                str(venv / "bin" / "pip"),
                "install",
                "-q",
                "--disable-pip-version-check",
                f"litellm[proxy]=={version}",
            ],
            check=True,
            timeout=240,
        )
        marker.touch()
    return venv


def start_litellm(tmp: Path, upstream: str, version: str) -> tuple[subprocess.Popen[bytes], str]:
    venv = litellm_venv(version)
    config = tmp / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: fake-model\n"
        "    litellm_params:\n"
        "      model: openai/fake-model\n"
        f"      api_base: {upstream}/v1\n"
        f"      api_key: {UPSTREAM_KEY}\n"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  drop_params: true\n"
    )
    port = free_port()
    process = spawn(
        [str(venv / "bin" / "litellm"), "--config", str(config), "--port", str(port), "--num_workers", "1"],
        tmp / "litellm.log",
        env={"LITELLM_LOG": "ERROR", "LITELLM_TELEMETRY": "False", "DISABLE_SCHEMA_UPDATE": "true"},
    )
    return process, f"http://127.0.0.1:{port}/v1/chat/completions"


# --- the run ------------------------------------------------------------------------------


def table(targets: list[Target]) -> Iterator[str]:
    base = targets[0].results
    head = ["target", "max RPS", "CPU µs/req"]
    for c in CONCURRENCY:
        head += [f"+p50 @{c} (ms)", f"+p99 @{c} (ms)"]
    yield "| " + " | ".join(head) + " |"
    yield "|" + "---|" * len(head)
    for target in targets:
        best = max(target.results.values(), key=lambda r: r.rps)
        row = [target.name, f"{best.rps:,.0f}", f"{best.cpu_us:,.0f}"]
        for c in CONCURRENCY:
            r = target.results[c]
            if target is targets[0]:
                row += [f"({r.p50_ms:.2f})", f"({r.p99_ms:.2f})"]
            else:
                row += [f"{r.p50_ms - base[c].p50_ms:+.2f}", f"{r.p99_ms - base[c].p99_ms:+.2f}"]
        yield "| " + " | ".join(row) + " |"


async def measure(targets: list[Target], seconds: float, warmup: float, rounds: int) -> None:
    """``rounds`` passes over every target and concurrency; each point keeps its best
    pass (highest RPS), so a burst of load from elsewhere on the machine during one
    pass does not decide the comparison."""
    for n in range(rounds):
        for target in targets:
            for c in CONCURRENCY:
                r = await load(target, c, seconds, warmup)
                print(
                    f"  pass {n + 1}  {target.name:<30} c={c:<3} {r.rps:8,.0f} rps  "
                    f"{r.cpu_us:7,.0f} µs CPU/req  p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:6.2f} ms",
                    flush=True,
                )
                if r.errors:
                    raise SystemExit(f"{target.name}: {r.errors} requests failed; see its log")
                best = target.results.get(c)
                if best is None or r.rps > best.rps:
                    target.results[c] = r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", nargs="?", default="bench", choices=["bench", "upstream", "bare"])
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per point")
    parser.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds per point")
    parser.add_argument("--rounds", type=int, default=2, help="passes over every point (best kept)")
    parser.add_argument("--litellm", default=LITELLM_VERSION, help="LiteLLM version to compare with")
    parser.add_argument("--no-litellm", action="store_true", help="skip (d)")
    parser.add_argument("--no-diagnostic", action="store_true", help="skip (c0): Brickwork without audit")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--upstream", default="")
    args = parser.parse_args()
    import uvloop

    if args.role == "upstream":
        uvloop.run(run_upstream())
        return
    if args.role == "bare":
        run_bare(args.port, args.upstream)
        return
    started = time.monotonic()
    print(
        f"bench/gateway.py on {platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="brickwork-bench-") as name:
        tmp = Path(name)
        processes: list[subprocess.Popen[bytes]] = []
        try:
            targets = start_targets(tmp, args, processes)

            async def run() -> None:
                for target in targets:
                    await wait_ready(target, 120, tmp)
                await measure(targets, args.seconds, args.warmup, args.rounds)

            uvloop.run(run())
        finally:
            for process in reversed(processes):
                stop(process)
        report(targets, tmp)
    print(f"total run {time.monotonic() - started:.0f}s")


def start_targets(
    tmp: Path, args: argparse.Namespace, processes: list[subprocess.Popen[bytes]]
) -> list[Target]:
    upstream_process, upstream = start_upstream(tmp)
    processes.append(upstream_process)
    chat = "/v1/chat/completions"
    targets = [
        Target(
            "(a) upstream direct",
            upstream + chat,
            "fake-model",
            upstream_process,
            {"authorization": f"Bearer {UPSTREAM_KEY}"},
        )
    ]
    port = free_port()
    bare = spawn(
        [sys.executable, __file__, "bare", "--port", str(port), "--upstream", upstream], tmp / "bare.log"
    )
    processes.append(bare)
    targets.append(Target("(b) Starlette+aiohttp bare", f"http://127.0.0.1:{port}{chat}", "fake-model", bare))
    variants = [("(c) Brickwork full path", True)]
    if not args.no_diagnostic:
        # The same without the audit log: how much of (c) the durable record is.
        variants.append(("(c0) Brickwork, audit off", False))
    for label, audit in variants:
        process, url, raw = start_brickwork(tmp, upstream, audit=audit)
        processes.append(process)
        targets.append(Target(label, url, "up:fake-model", process, {"authorization": f"Bearer {raw}"}))
    if not args.no_litellm:
        process, url = start_litellm(tmp, upstream, args.litellm)
        processes.append(process)
        targets.append(Target(f"(d) LiteLLM {args.litellm} proxy", url, "fake-model", process))
    return targets


def report(targets: list[Target], tmp: Path) -> None:
    print()
    for line in table(targets):
        print(line)
    print()
    best = {t.name.split(")")[0] + ")": max(t.results.values(), key=lambda r: r.rps) for t in targets}
    by = {t.name.split(")")[0] + ")": t for t in targets}
    bw, bare = best["(c)"], best["(b)"]
    print(f"CPU per request, Brickwork ÷ bare pass-through: {bw.cpu_us / bare.cpu_us:.2f}× (target ≤ 2×)")
    if "(c0)" in best:
        print(f"  without the audit log: {best['(c0)'].cpu_us / bare.cpu_us:.2f}×")
    added = by["(c)"].results[1].p50_ms - by["(a)"].results[1].p50_ms
    print(f"added p50 at concurrency 1, Brickwork: {added:.3f} ms (target ≤ 0.5 ms)")
    if "(c0)" in by:
        added0 = by["(c0)"].results[1].p50_ms - by["(a)"].results[1].p50_ms
        print(f"  without the audit log: {added0:.3f} ms")
    if "(d)" in best:
        print(f"max RPS, Brickwork ÷ LiteLLM: {bw.rps / best['(d)'].rps:.1f}× (target ≥ 20×)")
    print(f"the audit log was a SQLite file (WAL, synchronous=NORMAL: survives kill -9) under {tmp.parent}")


if __name__ == "__main__":
    main()
