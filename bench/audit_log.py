"""What one durable audit record costs, alone and under concurrency.

Appends records to a fresh SQLite audit log (WAL, durability "process") from
1, 16 and 64 concurrent writers and prints records/s, CPU µs per record and the
mean batch size of the group commit. With 1 writer every record is its own
transaction, handed to the writer thread: the cost an idle gateway pays.

    .venv/bin/python bench/audit_log.py [--records 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from brickwork.contracts.request import RouteDecision
from brickwork.runtime.recording import CallRecord
from brickwork.storage.audit import SQLiteAuditLog


def record() -> CallRecord:
    return CallRecord(
        trace_id="a" * 32,
        tenant="bench",
        time=time.time(),
        depth=0,
        route=RouteDecision(method="explicit", ref="echo"),
        plugin="echo",
        version="1.0.0",
        models=["up:fake-model"],
    )


async def concurrent(path: Path, writers: int, records: int) -> None:
    log = SQLiteAuditLog(path)
    rec = record()
    await log.record(rec)  # open, migrate
    batches = log.batches

    async def writer() -> None:
        for _ in range(records // writers):
            await log.record(rec)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = (records // writers) * writers
    print(
        f"{writers:3} writers  {done / wall:9,.0f} rec/s  {cpu / done * 1e6:6.0f} µs CPU/rec"
        f"  mean batch {done / max(1, log.batches - batches):6.1f}"
    )
    await log.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for writers in (1, 16, 64):
            asyncio.run(concurrent(Path(tmp) / f"c{writers}.db", writers, args.records))


if __name__ == "__main__":
    main()
