# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""The batched writer on SQLite and MariaDB: bursts, multi-row statements, idempotency,
bounded memory, spooling while the database is unreachable, retention."""

import asyncio
import os
import threading
import time

import msgspec
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from smps.proxy.records import Decision, TraceEvent, should_record
from smps.store import decision_queries
from smps.store.batch_sql import SQLITE_ROWS, Batch
from smps.store.db import Store, create_engine
from smps.store.partitions import day_of
from smps.store.retention import purge_expired
from smps.store.rows import DECISION_COLUMNS, decision_row
from smps.store.writer import DecisionWriter
from smps.store.writer_runners import WRITER_NICE
from tests.helpers import until
from tests.store_db import database_url, make_decision, scalar, store  # noqa: F401


async def put_over_time(writer: DecisionWriter, count: int, every: int, pause: float) -> None:
    """Put ``count`` decisions, pausing ``pause`` s after each ``every``: traffic over time."""
    for i in range(count):
        writer.put(make_decision(i))
        if i % every == 0:
            await asyncio.sleep(pause)


async def test_burst_of_50000_written_once_in_multi_row_statements(store, tmp_path, request):
    inserts = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT INTO decisions"):
            if parameters:  # SQLite: an executemany of SQLITE_ROWS-row statements
                rows = len(parameters) * (len(parameters[0]) // len(DECISION_COLUMNS))
            else:  # MySQL: the rows rendered into the statement
                rows = statement.count("),(") + 1
            inserts.append((executemany, rows))

    # On every engine: the SQLite writer has a blocking engine of its own.
    event.listen(Engine, "before_cursor_execute", count)
    request.addfinalizer(lambda: event.remove(Engine, "before_cursor_execute", count))
    writer = DecisionWriter(store, tmp_path / "spool", batch_size=500, flush_interval=0.05)
    await writer.start()
    total = 50_000
    for i in range(total):
        writer.put(make_decision(i))
        if i % 5000 == 4999:  # the data plane's running totals, read now and then
            writer.add_totals("plane", {("", "block"): i + 1, ("fraud", "allow"): i + 1})
    await until(lambda: writer.written == total, timeout=60)
    if store.dialect == "mysql":
        # The server's own count of INSERT statements on the writer's session:
        # asyncmy turns each executemany into multi-row INSERTs.
        result = await writer._runner.run(
            lambda conn: conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Com_insert'").one()
        )
        server_inserts = int(result[1])
        # At most per 500-record batch: decisions, ledger, counters (plus the session's
        # earlier life in the pool); one row per statement would be 50,000.
        assert server_inserts <= 3 * total // 500 + 10
    await writer.close()

    assert await scalar(store, "SELECT COUNT(*) FROM decisions") == total
    assert await scalar(store, "SELECT COUNT(DISTINCT sequence) FROM decisions") == total
    # A 500-record batch each, or several together in one transaction when they queue up
    # (on SQLite, in statements of SQLITE_ROWS rows and one for the rest; on MySQL, in
    # statements of up to 1 MB).
    if store.dialect == "sqlite":
        assert all(many for many, _ in inserts)
    assert len(inserts) <= 2 * total // 500
    assert all(rows <= writer.transaction_records for _, rows in inserts)
    assert sum(rows for _, rows in inserts) == total
    assert await scalar(store, "SELECT SUM(count) FROM minute_counters WHERE account = ''") == total
    assert (
        await scalar(
            store,
            "SELECT SUM(count) FROM minute_counters WHERE account = 'fraud' AND verdict = 'allow'",
        )
        == total
    )
    assert writer.dropped == 0 and writer.spooled == 0


async def test_rows_keep_every_field(store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    decision = make_decision(
        7,
        at=1_700_000_000.123456,
        concat_ref=12,
        concat_part=2,
        concat_total=3,
        smsc='it\'s a \\ %s "smsc"',  # quotes, a backslash, a %s: SQL text, never code
        source_addr="Bücher-über-€",
        rule_id="loan-spam",
        fingerprint="5eed000000c0ffee",
    )
    writer.put(decision)
    await until(lambda: writer.written == 1, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        row = (await conn.execute(text("SELECT * FROM decisions"))).mappings().one()
    assert row["decided_us"] == 1_700_000_000_123_456
    assert row["arrived_us"] == 1_700_000_000_121_456
    assert (row["concat_ref"], row["concat_part"], row["concat_total"]) == (12, 2, 3)
    assert row["deciding_account"] == "antispam" and row["status"] == 0x66
    assert (row["smsc"], row["source_addr"]) == (decision.smsc, decision.source_addr)
    assert row["epoch"] is None and row["rule_id"] == "loan-spam"
    assert row["fingerprint"] == "5eed000000c0ffee"
    assert '"account":"fraud"' in row["results"]
    # Read back, the record is the one put: one struct from the dispatcher to the API.
    stored = await decision_queries.get_decision(store, row["id"])
    assert (
        Decision(**{name: getattr(stored, name) for name in Decision.__struct_fields__}) == decision
    )
    assert (stored.epoch, stored.decided_at) == (None, "2023-11-14T22:13:20.123456Z")


async def test_a_whole_message_keeps_the_sequence_of_each_part(store, tmp_path):
    """One row for a long message judged whole: its parts' sequence numbers in part
    order (0: never came), stored as JSON text and read back as numbers; a message in
    one piece and a part judged alone have none."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    whole = make_decision(1, concat_ref=0xBEEF, concat_total=3, parts=[41, 0, 4_294_967_295])
    alone = make_decision(2, concat_ref=9, concat_part=2, concat_total=2)
    single = make_decision(3)
    for decision in (whole, alone, single):
        writer.put(decision)
    await until(lambda: writer.written == 3, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence, parts FROM decisions ORDER BY id"))
        assert [tuple(row) for row in rows] == [(1, "[41,0,4294967295]"), (2, None), (3, None)]
    stored = await decision_queries.query_decisions(
        store, decision_queries.DecisionQuery(), limit=3
    )
    assert [(d.sequence, d.parts) for d in stored] == [(3, None), (2, None), (1, whole.parts)]
    first = stored[-1]
    assert (first.concat_ref, first.concat_part, first.concat_total) == (0xBEEF, None, 3)
    assert Decision(**{name: getattr(first, name) for name in Decision.__struct_fields__}) == whole


async def test_decisions_keep_their_fingerprint_and_are_found_by_it(store, tmp_path):
    """A message's content fingerprint (its campaign) is stored with its decision, NULL
    for one without text; the store's filter finds exactly that fingerprint's rows,
    newest first, written in multi-row statements like any."""
    wave = "5eed000000c0ffee"
    # In turn: the wave's text, no text, a text of its own.
    fingerprints = [(wave, None, f"{i:016x}")[i % 3] for i in range(3 * SQLITE_ROWS)]
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    for i, fingerprint in enumerate(fingerprints):
        writer.put(make_decision(i, fingerprint=fingerprint))
    await until(lambda: writer.written == len(fingerprints), timeout=60)
    await writer.close()
    assert await scalar(store, "SELECT COUNT(*) FROM decisions WHERE fingerprint IS NULL") == (
        SQLITE_ROWS
    )

    async def found(fingerprint: str) -> list[int]:
        query = decision_queries.DecisionQuery(fingerprint=fingerprint)
        rows = await decision_queries.query_decisions(store, query, limit=1000)
        assert {row.fingerprint for row in rows} <= {fingerprint}
        return [row.sequence for row in rows]

    assert await found(wave) == list(range(len(fingerprints) - 3, -1, -3))
    assert await found(f"{5:016x}") == [5]
    assert await found("5eed000000c0ffef") == []


def batch_of(batch_id: str, first: int, count: int) -> Batch:
    rows = [decision_row(make_decision(first + i), None) for i in range(count)]
    return Batch(batch_id, rows, [], [(29_000_000, "", "block", count)])


async def test_a_batch_committed_before_is_not_written_twice(store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool")
    batch = batch_of("b" * 32, 0, 10)
    await writer._write([batch])
    await writer._write([batch])  # a retry after an unknown outcome, or a replay from the spool
    await writer._discard_connection()
    assert await scalar(store, "SELECT COUNT(*) FROM decisions") == 10
    assert writer.written == 10 and writer.skipped == 10


async def test_a_group_holding_a_committed_batch_is_written_one_by_one(store, tmp_path):
    """Batches queued together share a transaction; when the first of them was committed
    before (its outcome lost with the connection), the others are still written, once."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    done = batch_of("a" * 32, 0, 10)
    await writer._write([done])
    writer._ready.extend([done, batch_of("b" * 32, 10, 10), batch_of("c" * 32, 20, 10)])
    writer._ready_records = 30
    await writer.start()
    await until(lambda: not writer._ready, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence FROM decisions ORDER BY id"))
        assert list(rows.scalars()) == list(range(30))
    assert writer.written == 30 and writer.skipped == 10 and writer.batches == 3


async def test_a_refused_batch_in_a_group_is_dropped_alone(store, tmp_path):
    """One batch the database refuses (here a NULL verdict) costs only its own records."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    bad = batch_of("b" * 32, 10, 10)
    bad = Batch(bad.batch_id, [(*row[:16], None, *row[17:]) for row in bad.decisions], [], [])
    writer._ready.extend([batch_of("a" * 32, 0, 10), bad, batch_of("c" * 32, 20, 10)])
    writer._ready_records = 30
    await writer.start()
    await until(lambda: not writer._ready, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence FROM decisions ORDER BY id"))
        assert list(rows.scalars()) == [*range(10), *range(20, 30)]
    assert writer.written == 20 and writer.dropped == 10


async def test_a_batch_spooled_before_the_epoch_column_is_replayed(store, tmp_path):
    """Rows spooled by an SMPS before migration 0003 have no epoch (nor rule_id, 0005,
    nor parts, 0007, nor fingerprint, 0008): NULL there."""
    from smps.store.spool import Spool

    old = batch_of("d" * 32, 0, 3)
    old = Batch(old.batch_id, [row[:-4] for row in old.decisions], [], old.counters)
    Spool(tmp_path / "spool", 1 << 20).append(msgspec.msgpack.encode(old))
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    await until(lambda: writer.written == 3, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT sequence, epoch, parts, fingerprint FROM decisions ORDER BY id")
        )
        assert [tuple(row) for row in rows] == [(i, None, None, None) for i in range(3)]


async def test_decisions_carry_the_lease_epoch_they_were_made_under(store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=30)
    await writer.start()
    writer.put(make_decision(0))  # no lease
    await writer.set_epoch(7)
    writer.put(make_decision(1))
    writer.put(make_decision(2))
    await writer.set_epoch(9)  # records buffered under 7 keep 7
    writer.put(make_decision(3))
    await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence, epoch FROM decisions ORDER BY id"))
        assert [tuple(row) for row in rows] == [(0, None), (1, 7), (2, 7), (3, 9)]
    newest = await decision_queries.query_decisions(
        store, decision_queries.DecisionQuery(), limit=1
    )
    assert newest[0].epoch == 9  # as the API shows it


async def test_traces_are_written_with_the_whole_event(store, tmp_path):
    def event(ts_us: int, kind: str, account: str | None, text: str) -> TraceEvent:
        return TraceEvent("m-1", ts_us, kind, "smps", "smsc1", "861", "862", "861", "862",
                          account=account, text=text)  # fmt: skip

    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put_trace(event(1_700_000_000_000_000, "copy_sent", "antispam", "hi"))
    writer.put_trace(event(1_700_000_000_000_500, "final", None, ""))
    await until(lambda: writer.written == 2, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text("SELECT * FROM traces ORDER BY id"))).mappings().all()
    assert [r["kind"] for r in rows] == ["copy_sent", "final"]
    assert rows[1]["account"] is None
    assert msgspec.json.decode(rows[0]["event"])["text"] == "hi"


async def test_unreachable_database_spools_then_replays_in_order(tmp_path):
    """A SQLite file that cannot be opened for a while: batches spool, then replay in order."""
    path = tmp_path / "smps.db"
    await (await Store.open(f"sqlite:///{path}")).close()
    path.rename(tmp_path / "away.db")
    path.mkdir()  # a directory where the database should be: every connect fails
    store = Store(create_engine(f"sqlite:///{path}"))
    writer = DecisionWriter(
        store,
        tmp_path / "spool",
        batch_size=100,
        flush_interval=0.01,
        buffer_limit=300,
        retry_initial=0.05,
        retry_max=0.1,
    )
    await writer.start()
    await put_over_time(writer, 2000, every=50, pause=0.002)
    # At most buffer_limit records stay in memory; the rest goes to the spool.
    await until(
        lambda: writer.spooled >= 1700 and writer.spooled + writer.pending == 2000, timeout=60
    )
    assert writer.written == 0
    # Failing for good (a few writes in a row): said for /health and in the metric,
    # and what waited in memory is spooled too.
    await until(lambda: writer.failing() is not None)
    assert writer.failing().startswith("database writer failing for ")
    assert "OperationalError" in writer.failing() and failing_gauge(writer) == 1
    await until(lambda: writer.spooled == 2000 and writer.pending == 0)
    path.rmdir()
    (tmp_path / "away.db").rename(path)
    await until(lambda: writer.written == 2000, timeout=60)
    assert writer.failing() is None and failing_gauge(writer) == 0
    await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence FROM decisions ORDER BY id"))
        assert list(rows.scalars()) == list(range(2000))
    assert writer.dropped == 0
    await store.close()


def failing_gauge(writer: DecisionWriter) -> float:
    (metric,) = [m for m in writer.collect() if m.name == "smps_db_writer_failing"]
    return metric.samples[0].value


async def test_sqlite_file_moved_away_spools_until_the_same_file_is_back(tmp_path, caplog):
    """While the file is not at its path nothing is written (a connection would write
    into it unseen); once the same file is back, the spool is replayed into it."""
    path = tmp_path / "smps.db"
    store = await Store.open(f"sqlite:///{path}")
    writer = DecisionWriter(
        store,
        tmp_path / "spool",
        flush_interval=0.01,
        retry_initial=0.05,
        retry_max=0.1,
        report_interval=0.05,
    )
    await writer.start()
    try:
        for i in range(100):
            writer.put(make_decision(i))
        await until(lambda: writer.written == 100)
        path.rename(tmp_path / "away.db")
        for i in range(100, 300):
            writer.put(make_decision(i))
        await until(lambda: writer.failing() is not None)
        assert f"database file {path} is gone (deleted or moved)" in writer.failing()
        await until(lambda: writer.spooled == 200 and writer.pending == 0)
        assert writer.written == 100 and failing_gauge(writer) == 1

        def summaries():
            return [
                r for r in caplog.records if r.getMessage().startswith("database writer failing")
            ]

        await until(lambda: len(summaries()) >= 2)  # while it lasts, every report_interval
        (tmp_path / "away.db").rename(path)
        await until(lambda: writer.written == 300)
        assert writer.failing() is None
    finally:
        await writer.close()
    async with store.engine.connect() as conn:
        rows = await conn.execute(text("SELECT sequence FROM decisions ORDER BY id"))
        assert list(rows.scalars()) == list(range(300))
    await store.close()
    messages = [r.getMessage() for r in caplog.records if r.name == "smps.store.writer"]
    assert sum("is gone (deleted or moved): nothing more is written" in m for m in messages) == 1
    assert any("database writes resumed after" in m for m in messages)


async def test_memory_is_bounded_and_drops_are_counted(tmp_path, caplog):
    (tmp_path / "x.db").mkdir()  # never openable
    store = Store(create_engine(f"sqlite:///{tmp_path}/x.db"))
    writer = DecisionWriter(
        store,
        tmp_path / "spool",
        batch_size=10,
        flush_interval=0.01,
        buffer_limit=50,
        spool_max_bytes=4096,
        retry_initial=0.05,
        retry_max=0.05,
        report_interval=0.05,
    )
    await writer.start()
    await put_over_time(writer, 5000, every=10, pause=0)
    await until(lambda: writer.dropped > 0, timeout=60)
    await asyncio.sleep(0.1)
    assert writer.pending <= 2 * 50
    await writer.close(drain_timeout=0.1)
    assert writer.written == 0
    assert writer.dropped + writer.spooled == 5000
    assert any("dropped" in r.getMessage() for r in caplog.records)
    await store.close()


async def test_records_after_close_are_counted_as_dropped(store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool")
    await writer.start()
    await writer.close()
    writer.put(make_decision(1))
    assert writer.dropped == 1


async def test_records_queued_at_close_are_written_or_spooled(store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=30)
    await writer.start()
    for i in range(1234):
        writer.put(make_decision(i))
    await writer.close()
    assert writer.written == 1234
    assert await scalar(store, "SELECT COUNT(*) FROM decisions") == 1234


async def test_retention_deletes_old_rows_in_chunks(store, tmp_path):
    if store.dialect == "mysql":
        pytest.skip("decisions on MySQL go by whole days: test_retention_drops_whole_days")
    now = time.time()
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, retention_days=0)
    await writer.start()
    for i in range(300):
        writer.put(make_decision(i, at=now - 40 * 86400 if i < 250 else now))
    await until(lambda: writer.written == 300, timeout=60)
    await writer.close()
    async with store.engine.connect() as conn:
        for expected in (100, 100, 50, 0):
            assert await conn.run_sync(purge_expired, 30, chunk=100) == expected
    assert await scalar(store, "SELECT COUNT(*) FROM decisions") == 50
    assert await scalar(store, "SELECT MIN(sequence) FROM decisions") == 250


async def write_decisions(store, tmp_path, times: list[float]) -> None:
    """One decision per entry of ``times`` (decided then), in that order, written."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, retention_days=0)
    await writer.start()
    for i, at in enumerate(times):
        writer.put(make_decision(i, at=at))
    await until(lambda: writer.written == len(times), timeout=60)
    await writer.close()


async def test_retention_drops_whole_days(store, tmp_path):
    """MySQL: decisions in daily partitions; retention drops the days wholly past it and
    adds days ahead. (SQLite: no partitions, rows are deleted.)"""
    day = 86400
    now = time.time()
    await write_decisions(store, tmp_path, [now - 40 * day, now, now + 2 * day])
    later_us = round((now + 31 * day) * 1e6)  # a month on: the first two are expired
    async with store.engine.connect() as conn:
        await conn.run_sync(purge_expired, 30, chunk=100, now_us=round(now * 1e6))
        # SQLite deletes the 40-day-old row; on MySQL it shares the partition "before today"
        # with yesterday's decisions, and goes with it.
        expected = 3 if store.dialect == "mysql" else 2
        assert await scalar(store, "SELECT COUNT(*) FROM decisions") == expected
        await conn.run_sync(purge_expired, 30, chunk=100, now_us=later_us)
        if store.dialect == "mysql":
            names = await conn.run_sync(
                lambda sync: (
                    sync.exec_driver_sql(
                        "SELECT PARTITION_NAME FROM information_schema.PARTITIONS "
                        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'decisions' "
                        "ORDER BY PARTITION_ORDINAL_POSITION"
                    )
                    .scalars()
                    .all()
                )
            )
            # Days from tomorrow (today's ended before the cutoff) to two days ahead of later.
            first, last = day_of(round(now * 1e6)).toordinal() + 1, day_of(later_us).toordinal()
            days = [f"p{day_of(0).fromordinal(n):%Y%m%d}" for n in range(first, last + 3)]
            assert names == [*days, "pmax"]
    assert await scalar(store, "SELECT COUNT(*) FROM decisions") == 1
    assert await scalar(store, "SELECT sequence FROM decisions") == 2


async def test_keyset_pages_follow_ids_across_days(store, tmp_path):
    """Newest id first, page by page, though ids and days (partitions on MySQL) disagree."""
    day = 86400
    now = time.time()
    times = [now + (i * 3 % 4 - 1) * day for i in range(9)]  # yesterday, +2 days, +1, today...
    await write_decisions(store, tmp_path, times)
    seen, before = [], None
    while True:
        page = await decision_queries.query_decisions(
            store, decision_queries.DecisionQuery(), limit=4, before_id=before
        )
        seen += [row.sequence for row in page]
        if len(page) < 4:
            break
        before = page[-1].id
    assert seen == list(range(8, -1, -1))
    first = await decision_queries.query_decisions(store, decision_queries.DecisionQuery(), limit=1)
    assert (await decision_queries.get_decision(store, first[0].id)).sequence == 8


def test_record_policy():
    assert should_record("all", "allow", "all_allow", False)
    # non_allow: everything but the NEs' own allow and receipts passed uninspected.
    assert not should_record("non_allow", "allow", "all_allow", False)
    assert not should_record("non_allow", "allow", "receipt", False)
    for reason in ("timeout", "no_ne", "overload"):  # failing open is recorded
        assert should_record("non_allow", "allow", reason, False)
    assert should_record("non_allow", "block", "block", False)
    assert should_record("non_allow", "block", "sticky", False)
    assert should_record("non_allow", "tempfail", "timeout", False)
    assert should_record("non_allow", "tempfail", "overload", False)
    assert not should_record("none", "block", "block", False)
    assert should_record("none", "allow", "all_allow", True)  # traced: always recorded


async def test_sqlite_writer_thread_runs_at_a_lower_cpu_priority(store, tmp_path):
    """The SQLite writer's commits must not hold a core a worker needs (see WRITER_NICE)."""
    if store.dialect != "sqlite":
        pytest.skip("MySQL writes happen in the master's loop, on the server")
    writer = DecisionWriter(store, tmp_path / "spool")
    await writer.start()
    try:

        def nice_here(_conn):
            return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

        writer_nice = await writer._runner.run(nice_here)
    finally:
        await writer.close()
    assert writer_nice == min(19, os.getpriority(os.PRIO_PROCESS, 0) + WRITER_NICE)


async def test_put_many_keeps_what_fits_and_counts_the_rest(store, tmp_path):
    """The master hands a worker's batch over at once: what passes buffer_limit is
    dropped and counted, as one put at a time would."""
    writer = DecisionWriter(store, tmp_path / "spool", buffer_limit=5, flush_interval=30)
    writer.put_many([make_decision(i) for i in range(3)])
    writer.put_many([make_decision(i) for i in range(3, 7)])
    writer.put_many([make_decision(7)])
    assert [d.sequence for d in writer._decisions] == [0, 1, 2, 3, 4]
    assert writer.dropped == 3 and writer.pending == 5
