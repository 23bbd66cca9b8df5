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


# The writer's MySQL session quotes strings by doubling ' alone (NO_BACKSLASH_ESCAPES:
# a backslash is an ordinary character), so that a row is rendered by one %-format.
_NO_BACKSLASH_ESCAPES = "SET SESSION sql_mode = CONCAT(@@SESSION.sql_mode, ',NO_BACKSLASH_ESCAPES')"
_SESSION_SET = "smps_no_backslash_escapes"  # in the DBAPI connection's info once set there
# One row of DECISION_COLUMNS as MySQL VALUES: %d refuses anything but an integer.
_ROW = "(%d,%d,'%s','%s',%d,'%s',%d,%d,'%s',%d,%d,%d,%d,%s,%s,%s,'%s','%s',%d,%s,'%s',%s,%s,%s,%s)"
assert _ROW.count("%") == len(DECISION_COLUMNS)


def _text(value: str | None) -> str:
    """A nullable string as a literal (NO_BACKSLASH_ESCAPES: only ' is doubled)."""
    return "NULL" if value is None else "'" + value.replace("'", "''") + "'"


def mysql_values(row: tuple) -> str:
    """A decision row (DECISION_COLUMNS order) as a MySQL VALUES tuple, for a session
    with NO_BACKSLASH_ESCAPES; a value of the wrong type raises (TypeError,
    AttributeError, ValueError) rather than being written unquoted."""
    (
        arrived_us,
        decided_us,
        smsc,
        command,
        sequence,
        source_addr,
        source_ton,
        source_npi,
        destination_addr,
        dest_ton,
        dest_npi,
        esm_class,
        data_coding,
        concat_ref,
        concat_part,
        concat_total,
        verdict,
        reason,
        status,
        deciding_account,
        results,
        epoch,
        rule_id,
        parts,
        fingerprint,
    ) = row
    return _ROW % (
        arrived_us,
        decided_us,
        smsc.replace("'", "''"),
        command.replace("'", "''"),
        sequence,
        source_addr.replace("'", "''"),
        source_ton,
        source_npi,
        destination_addr.replace("'", "''"),
        dest_ton,
        dest_npi,
        esm_class,
        data_coding,
        # the nullable ones inline: eight calls to a helper cost about 0.5 µs a row
        "NULL" if concat_ref is None else int(concat_ref),
        "NULL" if concat_part is None else int(concat_part),
        "NULL" if concat_total is None else int(concat_total),
        verdict.replace("'", "''"),
        reason.replace("'", "''"),
        status,
        "NULL" if deciding_account is None else "'" + deciding_account.replace("'", "''") + "'",
        results.replace("'", "''"),
        "NULL" if epoch is None else int(epoch),
        "NULL" if rule_id is None else "'" + rule_id.replace("'", "''") + "'",
        "NULL" if parts is None else "'" + parts.replace("'", "''") + "'",
        "NULL" if fingerprint is None else "'" + fingerprint.replace("'", "''") + "'",
    )


def _any_values(row: tuple) -> str:
    """A row mysql_values refused, value by value (integers, strings and NULL), so that
    the server judges it: a NULL in a NOT NULL column makes it refuse the batch."""
    return "({})".format(
        ",".join([str(v) if type(v) is int else _text(v) for v in row])  # _text: str or None
    )


def _mysql_insert(conn: Connection, head: str, rows: list[tuple]) -> None:
    """``rows`` as multi-row INSERTs of up to MYSQL_STATEMENT_BYTES, rendered here
    (:func:`mysql_values`, about 1.5 µs a row, where asyncmy's executemany spends ~1 µs
    per value on ``literal`` and its ``escape_string`` 8 µs a row) on a session with
    NO_BACKSLASH_ESCAPES, set once per connection."""
    info = conn.connection.info
    if not info.get(_SESSION_SET):
        conn.exec_driver_sql(_NO_BACKSLASH_ESCAPES, execution_options=_NO_PARAMETERS)
        info[_SESSION_SET] = True
    values: list[str] = []
    size = len(head)
    for row in rows:
        try:
            rendered = mysql_values(row)
        except (TypeError, AttributeError, ValueError):
            rendered = _any_values(row)  # a NULL where none goes: the server refuses it
        if values and size + len(rendered) > MYSQL_STATEMENT_BYTES:
            conn.exec_driver_sql(head + ",".join(values), execution_options=_NO_PARAMETERS)
            values, size = [], len(head)
        values.append(rendered)
        size += len(rendered) + 1
    conn.exec_driver_sql(head + ",".join(values), execution_options=_NO_PARAMETERS)
