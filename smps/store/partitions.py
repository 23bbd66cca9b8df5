"""MySQL/MariaDB: the decisions table in daily partitions, so retention drops whole days.

The table is partitioned ``BY RANGE (decided_us)`` (migration 0004). Partition
``pYYYYMMDD`` holds the decisions made before the end of that UTC day and after
the previous partition's; ``pmax`` takes anything later, and stays empty because
the writer adds days ahead (:data:`DAYS_AHEAD`) at each retention round, by
splitting ``pmax``. Retention then drops the partitions whose every row is older
than ``retention_days`` (a metadata operation, where DELETE would rewrite pages,
undo and redo for every row), so on MySQL decisions are kept for whole days:
between ``retention_days`` and one day more.

MySQL wants the partitioning column in every unique key, so the primary key
there is ``(id, decided_us)``: ``id`` stays unique (AUTO_INCREMENT hands out
each value once), and the API's keyset pagination (``id < cursor ORDER BY id
DESC``) is served by each partition's primary key, merged in order by the server.
SQLite is not partitioned.
"""

from __future__ import annotations

from datetime import date, timedelta

from sqlalchemy.engine import Connection

DAYS_AHEAD = 2
LOCK_WAIT_S = 10  # DDL waits this long for running queries, then gives up until the next round
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)


def day_of(us: int) -> date:
    """The UTC day of an epoch-µs instant."""
    return _EPOCH + timedelta(days=us // _US_PER_DAY)


def end_of_day_us(day: date) -> int:
    """Epoch µs of the midnight (UTC) ending ``day``: the bound of partition ``p<day>``."""
    return ((day - _EPOCH).days + 1) * _US_PER_DAY


def partition_sql(day: date) -> str:
    return f"PARTITION p{day:%Y%m%d} VALUES LESS THAN ({end_of_day_us(day)})"


def daily_partitions(conn: Connection) -> list[tuple[str, int]] | None:
    """The day partitions of ``decisions`` as (name, bound), oldest first; None when the
    table is not partitioned."""
    rows = conn.exec_driver_sql(
        "SELECT PARTITION_NAME, PARTITION_DESCRIPTION FROM information_schema.PARTITIONS "
        "WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = 'decisions' "
        "ORDER BY PARTITION_ORDINAL_POSITION"
    ).all()
    if not rows or rows[0][0] is None:
        return None
    return [(name, int(bound)) for name, bound in rows if bound != "MAXVALUE"]


def maintain(conn: Connection, retention_days: int, now_us: int) -> list[str] | None:
    """Add day partitions up to DAYS_AHEAD days after ``now_us``; drop those wholly older
    than ``retention_days`` (0: keep all). Returns the names of the partitions dropped;
    None when the table is not partitioned (SQLite)."""
    if conn.dialect.name != "mysql":
        return None
    days = daily_partitions(conn)
    if days is None:
        return None
    conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {LOCK_WAIT_S}")
    try:
        last = day_of(days[-1][1] - 1)
        ahead = day_of(now_us) + timedelta(days=DAYS_AHEAD)
        if last < ahead:
            new = [last + timedelta(days=n) for n in range(1, (ahead - last).days + 1)]
            conn.exec_driver_sql(
                "ALTER TABLE decisions REORGANIZE PARTITION pmax INTO ("
                + ", ".join(partition_sql(day) for day in new)
                + ", PARTITION pmax VALUES LESS THAN MAXVALUE)"
            )
        if not retention_days:
            return []
        cutoff = now_us - retention_days * _US_PER_DAY
        # Never the newest day partition: MySQL keeps at least one besides pmax anyway.
        expired = [name for name, bound in days[:-1] if bound <= cutoff]
        if expired:
            conn.exec_driver_sql(f"ALTER TABLE decisions DROP PARTITION {', '.join(expired)}")
        return expired
    finally:
        conn.exec_driver_sql("SET SESSION lock_wait_timeout = DEFAULT")
