"""What one durable audit record costs, alone and under concurrency.

Appends records to a fresh SQLite audit log (WAL, durability "process") from
1, 16 and 64 concurrent writers and prints records/s, CPU µs per record (all
threads of the process, until every record is committed), the median latency of
one ``record()`` and the mean number of records per transaction, for three write
paths of the same code:

* ``spool``: the default; ``record()`` returns once the record is in the
  process's spool file (one ``write()`` per record, made at once; records queue
  and share a write only while the spool opens or a commit is due), and the records are
  committed within about 50 ms, many per transaction, on the loop's thread.
* ``loop``: ``spool=False``; a batch is committed on the event loop's thread, in a
  ``loop.call_soon`` callback, before ``record()`` returns.
* ``thread``: ``thread_writes=True``; every batch goes to a thread by
  ``asyncio.to_thread`` from a writer task, which is how every "process" commit
  was made before the loop path existed.

With 1 writer on the ``loop`` path every record is its own transaction: the cost
an idle gateway paid before the spool.

    .venv/bin/python bench/audit_log.py [--records 6000] [--path spool|loop|thread|all]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from brickwork.contracts.record import CallRecord
from brickwork.contracts.request import RouteDecision
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


async def concurrent(path: Path, writers: int, records: int, write_path: str) -> None:
    log = SQLiteAuditLog(path, thread_writes=write_path == "thread", spool=write_path == "spool")
    rec = record()
    for _ in range(200):  # open, migrate, warm up
        await log.record(rec)
    batches = log.batches
    latencies: list[float] = []

    async def writer() -> None:
        clock = time.perf_counter
        for _ in range(records // writers):
            start = clock()
            await log.record(rec)
            latencies.append(clock() - start)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(writers)))
    await log._drain()  # the spool's records committed too: their cost counts
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    done = (records // writers) * writers
    print(
        f"{write_path:6} {writers:3} writers  {done / wall:9,.0f} rec/s  {cpu / done * 1e6:6.0f} µs CPU/rec"
        f"  p50 {statistics.median(latencies) * 1e6:7.0f} µs"
        f"  mean batch {done / max(1, log.batches - batches):6.1f}"
    )
    await log.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--path", choices=["spool", "loop", "thread", "all"], default="all")
    args = parser.parse_args()
    paths = ["thread", "loop", "spool"] if args.path == "all" else [args.path]
    with tempfile.TemporaryDirectory() as tmp:
        for write_path in paths:
            for writers in (1, 16, 64):
                db = Path(tmp) / f"{write_path}-{writers}.db"
                asyncio.run(concurrent(db, writers, args.records, write_path))


if __name__ == "__main__":
    main()
