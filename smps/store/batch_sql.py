"""A batch of rows, as queued and spooled, and the SQL that writes batches in one
transaction: the ledger of batch ids first, then multi-row INSERTs (SQLite: statements of
SQLITE_ROWS rows; MySQL: rendered here up to MYSQL_STATEMENT_BYTES), then the counters."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable

import msgspec
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from smps.store.rows import DECISION_COLUMNS, TRACE_COLUMNS

log = logging.getLogger("smps.store.writer")  # the writer's log, as before the split


MYSQL_STATEMENT_BYTES = 1 << 20  # well under max_allowed_packet (4 MB and up)
_NO_PARAMETERS = {"no_parameters": True}  # no %-formatting by the driver: the SQL is final
# Decision rows per SQLite INSERT: as many as keep their values under SQLite's old 999 limit.
SQLITE_ROWS = 999 // len(DECISION_COLUMNS)


class Batch(msgspec.Struct, array_like=True, frozen=True):
    """Rows written in one transaction; also the unit spooled to disk."""

    batch_id: str
    decisions: list[tuple]
    traces: list[tuple]
    counters: list[tuple]  # (minute, account, verdict, increment)

    @property
    def records(self) -> int:
        return len(self.decisions) + len(self.traces)


encode_batch = msgspec.msgpack.Encoder().encode
decode_batch = msgspec.msgpack.Decoder(Batch).decode


def spooled_batch(payload: bytes) -> Batch:
    """A batch read back from the spool; one spooled before decisions had their last
    columns (epoch: migration 0003, rule_id: 0005, parts: 0007, fingerprint: 0008)
    gets NULL there."""
    batch = decode_batch(payload)
    missing = len(DECISION_COLUMNS) - len(batch.decisions[0]) if batch.decisions else 0
    if missing > 0:
        rows = [(*row, *(None,) * missing) for row in batch.decisions]
        return Batch(batch.batch_id, rows, batch.traces, batch.counters)
    return batch


class _AlreadyWritten(Exception):
    """The batch id is in the ledger: committed earlier."""


class Statements:
    """The writer's SQL in the driver's own parameter style."""

    def __init__(self, dialect: str, paramstyle: str):
        mark = "?" if paramstyle == "qmark" else "%s"

        def insert(table: str, columns: Iterable[str], rows: int = 1) -> str:
            names = list(columns)
            values = f"({', '.join([mark] * len(names))})"
            return f"INSERT INTO {table} ({', '.join(names)}) VALUES {', '.join([values] * rows)}"

        self.ledger = insert("writer_batches", ("batch_id", "committed_us"))
        self.decisions = insert("decisions", DECISION_COLUMNS)
        # sqlite3 steps an executemany's statement once per row: SQLite gets statements of
        # SQLITE_ROWS rows each. MySQL gets its multi-row statements rendered by
        # _mysql_insert (asyncmy's executemany would, at about 1 µs per value).
        self.decisions_multi = (
            insert("decisions", DECISION_COLUMNS, SQLITE_ROWS) if dialect == "sqlite" else None
        )
        self.decisions_head = f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES "
        self.mysql = dialect == "mysql"
        self.traces = insert("traces", TRACE_COLUMNS)
        counters = insert("minute_counters", ("minute", "account", "verdict", "count"))
        if dialect == "mysql":
            self.counters = counters + " ON DUPLICATE KEY UPDATE count = count + VALUES(count)"
        else:
            self.counters = (
                counters + " ON CONFLICT (minute, account, verdict)"
                " DO UPDATE SET count = count + excluded.count"
            )


def write_batches(conn: Connection, sql: Statements, batches: list[Batch]) -> bool:
    """Batches in one transaction; False (nothing written) when an id is already in the ledger."""
    try:
        with conn.begin():
            try:
                now_us = time.time_ns() // 1000
                conn.exec_driver_sql(sql.ledger, [(batch.batch_id, now_us) for batch in batches])
            except IntegrityError:
                raise _AlreadyWritten from None
            decisions = [row for batch in batches for row in batch.decisions]
            if sql.mysql and decisions:
                _mysql_insert(conn, sql.decisions_head, decisions)
                decisions = []
            elif sql.decisions_multi is not None and len(decisions) >= SQLITE_ROWS:
                whole = len(decisions) - len(decisions) % SQLITE_ROWS
                flat = [
                    tuple(itertools.chain.from_iterable(decisions[i : i + SQLITE_ROWS]))
                    for i in range(0, whole, SQLITE_ROWS)
                ]
                conn.exec_driver_sql(sql.decisions_multi, flat)
                decisions = decisions[whole:]
            for rows, statement in (
                (decisions, sql.decisions),
                ([row for batch in batches for row in batch.traces], sql.traces),
                ([row for batch in batches for row in batch.counters], sql.counters),
            ):
                if rows:
                    conn.exec_driver_sql(statement, rows)
    except _AlreadyWritten:
        return False
    return True


def _mysql_insert(conn: Connection, head: str, rows: list[tuple]) -> None:
    """``rows`` as multi-row INSERTs of up to MYSQL_STATEMENT_BYTES, rendered here: the
    rows hold only ints, strings and None, so the driver's own escaping is needed for
    the strings alone (asyncmy's executemany spends ~1 µs per value on ``literal``)."""
    escape = conn.connection.driver_connection.escape_string  # fails on anything but str
    values: list[str] = []
    size = len(head)
    for row in rows:
        rendered = "({})".format(
            ",".join(
                [
                    str(v) if type(v) is int else "NULL" if v is None else f"'{escape(v)}'"
                    for v in row
                ]
            )
        )
        if values and size + len(rendered) > MYSQL_STATEMENT_BYTES:
            conn.exec_driver_sql(head + ",".join(values), execution_options=_NO_PARAMETERS)
            values, size = [], len(head)
        values.append(rendered)
        size += len(rendered) + 1
    conn.exec_driver_sql(head + ",".join(values), execution_options=_NO_PARAMETERS)
