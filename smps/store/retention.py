"""Retention: expired decisions, traces, counters and ledger entries deleted a chunk
at a time on the writer's connection (on MySQL, decisions by whole daily partitions)."""

from __future__ import annotations

import logging
import time

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from smps.store import partitions, schema

log = logging.getLogger("smps.store.writer")  # the writer's log, as before the split


LEDGER_DAYS = 7
RETENTION_CHUNK = 2000
_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000


def purge_expired(
    conn: Connection, retention_days: int, *, chunk: int, now_us: int | None = None
) -> int:
    """Delete at most ``chunk`` expired rows from each kept table; returns rows deleted.

    Decisions, traces and counters expire after ``retention_days`` (0: never);
    the batch ledger after LEDGER_DAYS. Ids are selected first and deleted by
    key, which both engines accept (MySQL refuses LIMIT inside IN subqueries).
    On MySQL, decisions are in daily partitions instead: whole days are dropped,
    and days ahead added (:func:`smps.store.partitions.maintain`).
    """
    now_us = time.time_ns() // 1000 if now_us is None else now_us
    cutoff = now_us - retention_days * _US_PER_DAY
    with conn.begin():
        dropped = partitions.maintain(conn, retention_days, now_us)
    if dropped:
        log.info("retention: dropped decision partitions %s", ", ".join(dropped))
    ledger = schema.writer_batches
    plans = [
        (ledger, ledger.c.batch_id, ledger.c.committed_us < now_us - LEDGER_DAYS * _US_PER_DAY)
    ]
    if retention_days:
        if dropped is None:
            decisions = schema.decisions
            plans.append((decisions, decisions.c.id, decisions.c.decided_us < cutoff))
        plans.append((schema.traces, schema.traces.c.id, schema.traces.c.ts_us < cutoff))
    deleted = 0
    for table, key, expired in plans:
        with conn.begin():
            keys = conn.execute(select(key).where(expired).limit(chunk)).scalars().all()
            if keys:
                conn.execute(delete(table).where(key.in_(keys)))
        deleted = max(deleted, len(keys))
    if retention_days:
        counters = schema.minute_counters
        with conn.begin():
            # Counters are few (minutes x accounts x verdicts): one statement suffices.
            conn.execute(delete(counters).where(counters.c.minute < cutoff // _US_PER_MINUTE))
    return deleted
