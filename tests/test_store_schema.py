# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Migrations from an empty database, on SQLite and MariaDB; refusing a newer schema."""

import pytest
from alembic import command
from sqlalchemy import and_, inspect, select, text
from sqlalchemy.schema import CreateIndex

from smps.store import schema
from smps.store.db import SchemaError, Store, _alembic_config, head_revision, upgrade
from smps.store.decision_queries import DecisionQuery, _bucket_probe
from smps.store.trace_queries import TraceQuery, _trace_conditions
from smps.store.writer import DecisionWriter
from tests.helpers import until
from tests.store_db import database_url, make_decision, scalar, store  # noqa: F401


async def test_upgrade_from_empty_creates_every_table(store):
    async with store.engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
        revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        decision_indexes = set(await conn.run_sync(_decision_indexes))
        decision_columns = await conn.run_sync(
            lambda sync: {c["name"]: c for c in inspect(sync).get_columns("decisions")}
        )
    assert set(schema.metadata.tables) <= tables
    assert revision == head_revision()
    numbers = (
        # SQLite: keyed by the time bucket first (migration 0009)
        {"ix_decisions_source_bucket", "ix_decisions_destination_bucket"}
        | {"ix_decisions_fingerprint_bucket"}
        if store.dialect == "sqlite"
        else {"ix_decisions_source_addr", "ix_decisions_destination_addr"}
        | {"ix_decisions_fingerprint"}
    )
    assert decision_indexes == {"ix_decisions_decided_us", "ix_decisions_rule_id", *numbers}
    assert decision_columns["epoch"]["nullable"]
    assert decision_columns["rule_id"]["nullable"]
    assert decision_columns["parts"]["nullable"]
    assert decision_columns["fingerprint"]["nullable"]


def _decision_indexes(sync) -> dict[str, str | None]:
    """The decisions table's indexes by name: their SQL on SQLite (whose reflection
    skips expression indexes), None on MySQL."""
    if sync.dialect.name == "sqlite":
        rows = sync.exec_driver_sql(
            "SELECT name, sql FROM sqlite_master "
            "WHERE type = 'index' AND tbl_name = 'decisions' AND sql IS NOT NULL"
        )
        return dict(rows.all())
    return {ix["name"]: None for ix in inspect(sync).get_indexes("decisions")}


async def test_sqlite_number_indexes_are_the_schemas(tmp_path):
    """Migration 0009 makes the bucketed indexes as schema.py declares them, and the
    decisions filter on a number reads them, a probe per bucket."""
    store = await Store.open(f"sqlite:///{tmp_path}/ix.db")
    try:
        async with store.engine.connect() as conn:
            made = await conn.run_sync(_decision_indexes)
            declared = {
                ix.name: str(CreateIndex(ix).compile(dialect=conn.dialect))
                for ix in schema.decisions.indexes
                if ix.name.endswith("_bucket")
            }
            assert {name: made[name] for name in declared} == declared
            plan = await conn.exec_driver_sql(
                "EXPLAIN QUERY PLAN SELECT id FROM decisions "
                f"WHERE decided_us / {schema.NUMBER_BUCKET_US} = 5 AND source_addr = '1'"
            )
            assert "ix_decisions_source_bucket" in " ".join(row[3] for row in plan)
    finally:
        await store.close()


async def test_sqlite_trace_number_indexes_hold_the_received_events(tmp_path):
    """Migration 0010 makes them as schema.py declares them, and the traced-messages
    filter on a number (kind = 'received' first) reads them."""
    store = await Store.open(f"sqlite:///{tmp_path}/tr.db")
    try:
        async with store.engine.connect() as conn:
            made = dict(
                (
                    await conn.exec_driver_sql(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name = 'traces' AND sql IS NOT NULL"
                    )
                ).all()
            )
            declared = {
                ix.name: str(CreateIndex(ix).compile(dialect=conn.dialect))
                for ix in schema.traces.indexes
            }
            assert made == declared
            assert "WHERE kind = 'received'" in made["ix_traces_source_addr"]
            conditions = _trace_conditions(TraceQuery(number="8613800138000"))
            statement = select(schema.traces.c.id).where(and_(*conditions)).limit(10)
            sql = statement.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            plan = " ".join(
                row[3] for row in await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}")
            )
            assert "ix_traces_source_addr" in plan and "ix_traces_destination_addr" in plan
    finally:
        await store.close()


async def test_downgrade_restores_the_plain_number_indexes(tmp_path):
    url = f"sqlite:///{tmp_path}/down.db"
    store = await Store.open(url)
    try:
        async with store.engine.begin() as conn:
            await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), "0008"))
            names = set(await conn.run_sync(_decision_indexes))
        assert {"ix_decisions_source_addr", "ix_decisions_fingerprint"} <= names
        assert not {name for name in names if name.endswith("_bucket")}
        assert await upgrade(store.engine) == head_revision()
    finally:
        await store.close()


async def test_upgrade_twice_is_a_no_op(store):
    assert await upgrade(store.engine) == head_revision()


async def test_mysql_tables_are_innodb_utf8mb4(store):
    if store.dialect != "mysql":
        pytest.skip("MySQL only")
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT table_name, engine, table_collation FROM information_schema.tables "
                "WHERE table_schema = DATABASE()"
            )
        )
        found = {name: (engine, collation) for name, engine, collation in rows}
    for name in schema.metadata.tables:
        assert found[name][0] == "InnoDB"
        assert found[name][1].startswith("utf8mb4")


async def test_refuses_a_schema_newer_than_it_knows(database_url):
    store = await Store.open(database_url)
    async with store.engine.begin() as conn:
        await conn.execute(text("UPDATE alembic_version SET version_num = 'f00dfeed'"))
    await store.close()
    with pytest.raises(SchemaError, match="newer than this SMPS knows"):
        await Store.open(database_url)


async def test_sqlite_runs_in_wal_mode(tmp_path):
    store = await Store.open(f"sqlite:///{tmp_path}/wal.db")
    try:
        async with store.engine.connect() as conn:
            mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
            sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
        assert mode == "wal"
        assert sync == 1  # NORMAL
    finally:
        await store.close()


async def test_relative_sqlite_path_is_relative_to_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = await Store.open("sqlite:///./var/smps.db")
    await store.close()
    assert (tmp_path / "var" / "smps.db").exists()


def decision_columns(sync) -> set[str]:
    return {c["name"] for c in inspect(sync).get_columns("decisions")}


async def decision_partitions(store) -> int:
    """MySQL: the decisions table's partitions."""
    return await scalar(
        store,
        "SELECT COUNT(PARTITION_NAME) FROM information_schema.PARTITIONS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'decisions'",
    )


async def test_decisions_migrations_go_down_and_up_again(store):
    """0003 (epoch column), 0004 (MySQL: daily partitions), 0005 (rule_id column),
    0007 (parts column) and 0008 (fingerprint column) undo and redo cleanly."""

    def partitioned(sync) -> bool:
        if sync.dialect.name != "mysql":
            return False
        rows = sync.exec_driver_sql(
            "SELECT PARTITION_NAME FROM information_schema.PARTITIONS "
            "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'decisions'"
        ).scalars()
        return any(name is not None for name in rows)

    async with store.engine.begin() as conn:
        assert await conn.run_sync(partitioned) == (store.dialect == "mysql")
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), "0002"))
        assert not await conn.run_sync(partitioned)
        assert not {"epoch", "rule_id", "parts", "fingerprint"} & await conn.run_sync(
            decision_columns
        )
    assert await upgrade(store.engine) == head_revision()
    async with store.engine.connect() as conn:
        assert await conn.run_sync(partitioned) == (store.dialect == "mysql")
        assert {"epoch", "rule_id", "parts", "fingerprint"} <= await conn.run_sync(decision_columns)


async def test_parts_column_goes_and_comes_back_keeping_the_rows(store, tmp_path):
    """0007 alone, down and up on a table with rows: they stay (SQLite copies the table,
    MySQL keeps its partitions); parts is NULL for them after, as for any old row."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put(make_decision(5, concat_ref=3, concat_total=2, parts=[17, 18]))
    await until(lambda: writer.written == 1, timeout=60)
    await writer.close()

    async with store.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), "0006"))
        assert "parts" not in await conn.run_sync(decision_columns)
    assert await upgrade(store.engine) == head_revision()
    assert await scalar(store, "SELECT sequence FROM decisions") == 5
    assert await scalar(store, "SELECT parts FROM decisions") is None
    if store.dialect == "mysql":
        assert await decision_partitions(store) > 1


async def test_fingerprint_column_goes_and_comes_back_keeping_the_rows(store, tmp_path):
    """0008 alone, down and up on a table with rows, with and without a fingerprint:
    they stay, NULL there after, as for any old row (MySQL keeps its partitions). On
    SQLite both indexes on the decisions that have one keep only those rows, the
    rule_id one through the table's copy too."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put(make_decision(5, fingerprint="5eed000000c0ffee", rule_id="loan-spam"))
    writer.put(make_decision(6))
    await until(lambda: writer.written == 2, timeout=60)
    await writer.close()
    assert await scalar(store, "SELECT fingerprint FROM decisions WHERE sequence = 5") == (
        "5eed000000c0ffee"
    )

    async with store.engine.begin() as conn:
        await conn.run_sync(lambda sync: command.downgrade(_alembic_config(sync), "0007"))
        assert "fingerprint" not in await conn.run_sync(decision_columns)
    assert await scalar(store, "SELECT COUNT(*) FROM decisions WHERE rule_id = 'loan-spam'") == 1
    assert await upgrade(store.engine) == head_revision()
    assert await scalar(store, "SELECT COUNT(*) FROM decisions") == 2
    assert await scalar(store, "SELECT COUNT(fingerprint) FROM decisions") == 0
    if store.dialect == "sqlite":
        partial = await scalar(
            store,
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'index' AND sql LIKE "
            "'%WHERE % IS NOT NULL' "
            "AND name IN ('ix_decisions_rule_id', 'ix_decisions_fingerprint_bucket')",
        )
        assert partial == 2
    if store.dialect == "mysql":
        assert await decision_partitions(store) > 1


async def test_the_fingerprint_filter_reads_its_index(store):
    """The decisions filter's query (an exact fingerprint, newest first, whole rows)
    reads its index: on SQLite the partial, bucketed one (an equality implies NOT
    NULL), once per bucket of the window (migration 0009); MySQL names the plain one
    among the keys it may use."""
    sql = (
        "SELECT * FROM decisions WHERE fingerprint = '5eed000000c0ffee' ORDER BY id DESC LIMIT 101"
    )
    async with store.engine.connect() as conn:
        if store.dialect == "sqlite":
            query = DecisionQuery(fingerprint="5eed000000c0ffee")
            statement = _bucket_probe(query)(100, 200).order_by(schema.decisions.c.id.desc())
            probe = statement.limit(101).compile(
                dialect=conn.dialect, compile_kwargs={"literal_binds": True}
            )
            plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {probe}")).mappings().all()
            assert (
                "SEARCH decisions USING INDEX ix_decisions_fingerprint_bucket "
                "(<expr>=? AND fingerprint=?)"
            ) in [step["detail"] for step in plan]
        else:
            plan = (await conn.execute(text(f"EXPLAIN {sql}"))).mappings().all()
            assert "ix_decisions_fingerprint" in plan[0]["possible_keys"].split(",")
