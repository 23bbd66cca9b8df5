"""MariaDB killed in the middle of a run: records spool, replay in order, none lost, none twice.

Uses a MariaDB server of its own (fresh datadir under tmp_path, its own port and
socket, no grant tables), started and killed by the test; the shared server on
3306 is never touched.
"""

import asyncio
import time

import pytest
from sqlalchemy import text

from smps.store.db import Store
from smps.store.writer import DecisionWriter
from tests.store_db import make_decision, mariadb_connect

pytestmark = pytest.mark.mariadb


async def test_server_killed_mid_run_loses_nothing_and_duplicates_nothing(
    private_mariadb, tmp_path
):
    conn = await mariadb_connect(port=private_mariadb.port)
    async with conn.cursor() as cursor:
        await cursor.execute("CREATE DATABASE smps CHARACTER SET utf8mb4")
    conn.close()
    store = await Store.open(private_mariadb.url("smps"))
    writer = DecisionWriter(
        store,
        tmp_path / "spool",
        batch_size=200,
        flush_interval=0.01,
        buffer_limit=1000,
        retry_initial=0.05,
        retry_max=0.2,
        write_timeout=5,
    )
    await writer.start()
    total, killed_at = 20_000, 5_000
    try:
        for i in range(total):
            writer.put(make_decision(i))
            if i % 1000 == 999:  # the data plane's running totals, read now and then
                writer.add_totals("plane", {("", "block"): i + 1})
            if i == killed_at:
                private_mariadb.kill()  # in the middle of whatever the writer was doing
            if i % 100 == 0:
                await asyncio.sleep(0.002)
        deadline = time.monotonic() + 30
        while writer.spooled == 0 or writer.pending > 1000:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        assert writer.written < total
        private_mariadb.start()
        deadline = time.monotonic() + 60
        while writer.written + writer.skipped < total:
            assert time.monotonic() < deadline, (writer.written, writer.skipped, writer.stats())
            await asyncio.sleep(0.05)
    finally:
        await writer.close()
    async with store.engine.connect() as db:
        sequences = list(
            (await db.execute(text("SELECT sequence FROM decisions ORDER BY id"))).scalars()
        )
        counted = (
            await db.execute(text("SELECT SUM(count) FROM minute_counters WHERE account = ''"))
        ).scalar()
    await store.close()
    assert sequences == list(range(total))  # none lost, none twice, in order
    assert counted == total  # counters exactly once too
    assert writer.spooled > 0
    assert writer.dropped == 0
