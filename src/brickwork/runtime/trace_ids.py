"""Trace ids: one per request, sortable by time."""

from __future__ import annotations

import os
import random
import time

__all__ = ["new_trace_id"]

#: Trace ids need to be unique, not secret: a PRNG seeded from the OS (and reseeded
#: in a forked child) gives the random bits without a system call per request.
_trace_rng = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _trace_rng.seed(os.urandom(32)))


def new_trace_id() -> str:
    """32 hex digits: the time in milliseconds (12), then 80 random bits (20).

    Time first, like a UUIDv7, so that ids made one after another sort together:
    the audit log's index on ``trace_id`` then takes a batch of records into one or
    two B-tree pages, where random ids would each dirty a page of their own (about
    6 KB more written per record, to the WAL and again at checkpoints). The 80
    random bits keep ids unique within a millisecond, and the right-most 7 bytes
    random, as W3C Trace Context asks of a trace id.
    """
    return f"{time.time_ns() // 1_000_000 & 0xFFFF_FFFF_FFFF:012x}{_trace_rng.getrandbits(80):020x}"
