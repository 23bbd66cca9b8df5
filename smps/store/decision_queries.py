"""Decisions and per-minute counters as the API and the UI query them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
from sqlalchemy import Select, and_, func, literal, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smps.store import schema
from smps.store.common import NotFound, iso, time_window
from smps.store.db import Store
from smps.store.rows import StoredDecision, stored_decision

# The exact-match filters, named alike in DecisionQuery and the API's and UI's query strings.
DECISION_FILTERS = ("src", "dst", "verdict", "reason", "account", "rule", "fingerprint")


class DecisionQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of the decisions query; times are epoch µs of the decision, until exclusive."""

    src: str | None = None
    dst: str | None = None
    verdict: str | None = None
    reason: str | None = None
    account: str | None = None  # the deciding NE account
    rule: str | None = None  # the screening rule that decided
    fingerprint: str | None = None  # the message's content fingerprint (its campaign)
    since_us: int | None = None
    until_us: int | None = None


def _decision_conditions(query: DecisionQuery) -> list[Any]:
    c = schema.decisions.c
    conditions = []
    for value, column in (
        (query.src, c.source_addr),
        (query.dst, c.destination_addr),
        (query.verdict, c.verdict),
        (query.reason, c.reason),
        (query.account, c.deciding_account),
        (query.rule, c.rule_id),
        (query.fingerprint, c.fingerprint),
    ):
        if value is not None:
            conditions.append(column == value)
    return [*conditions, *time_window(c.decided_us, query.since_us, query.until_us)]


async def query_decisions(
    store: Store, query: DecisionQuery, *, limit: int, before_id: int | None = None
) -> list[StoredDecision]:
    """Decisions matching ``query``, newest first (by id), older than ``before_id``."""
    table = schema.decisions
    conditions = _decision_conditions(query)
    if before_id is not None:
        conditions.append(table.c.id < before_id)
    async with store.engine.connect() as conn:
        if store.dialect == "sqlite" and (probe := _bucket_probe(query)) is not None:
            buckets = await _bucket_range(conn, query)
            if buckets is None:
                return []
            statement = probe(*buckets)
        else:
            statement = select(table)
        statement = statement.where(and_(True, *conditions)).order_by(table.c.id.desc())
        result = await conn.execute(statement.limit(limit))
        return [stored_decision(row) for row in result.mappings()]


def _bucket_probe(query: DecisionQuery) -> Callable[[int, int], Select] | None:
    """SQLite: a filter on a number or the fingerprint reads its index (keyed by the
    time bucket first: schema.NUMBER_BUCKET_US, migration 0009) once per bucket, from
    a list of the buckets joined in front of the table. None without such a filter."""
    c = schema.decisions.c
    indexed = (
        (query.src, c.source_addr),
        (query.dst, c.destination_addr),
        (query.fingerprint, c.fingerprint),
    )
    value, column = next(((v, col) for v, col in indexed if v is not None), (None, None))
    if column is None:
        return None

    def probe(low: int, high: int) -> Select:
        buckets = select(literal(high).label("k")).cte("buckets", recursive=True)
        buckets = buckets.union_all(select(buckets.c.k - 1).where(buckets.c.k > low))
        # The same expression as the index's, with the constant written out (a bound
        # parameter would not match it), and the buckets first (CROSS JOIN: SQLite
        # keeps that order), each probing the index.
        on = and_(literal_column(f"decisions.{_BUCKET}") == buckets.c.k, column == value)
        return select(schema.decisions).select_from(buckets).join(schema.decisions, on)

    return probe


_BUCKET = f"decided_us / {schema.NUMBER_BUCKET_US}"


async def _bucket_range(conn: AsyncConnection, query: DecisionQuery) -> tuple[int, int] | None:
    """The buckets the query's window covers: from since_us (else the oldest decision)
    to until_us (else the newest), read off the decided_us index; None when empty."""
    c = schema.decisions.c
    low, high = (await conn.execute(select(func.min(c.decided_us), func.max(c.decided_us)))).one()
    if low is None:
        return None
    if query.since_us is not None:
        low = max(low, query.since_us)
    if query.until_us is not None:
        high = min(high, query.until_us - 1)
    if low > high:
        return None
    return low // schema.NUMBER_BUCKET_US, high // schema.NUMBER_BUCKET_US


async def get_decision(store: Store, decision_id: int) -> StoredDecision:
    table = schema.decisions
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table).where(table.c.id == decision_id))
        row = result.mappings().first()
    if row is None:
        raise NotFound(f"no decision {decision_id}")
    return stored_decision(row)


async def rule_hits(store: Store, rule_ids: list[str], since_us: int) -> dict[str, int]:
    """Decisions named by each of ``rule_ids`` (rule_id) decided since ``since_us``.

    Read through the rule_id index from the first row of the window on: the lowest
    id decided since then (an index-only walk of decided_us), so a busy rule's older
    rows are not read. Every row of the window has an id at least that.
    """
    if not rule_ids:
        return {}
    table = schema.decisions
    c = table.c
    async with store.engine.connect() as conn:
        first = (
            await conn.execute(select(func.min(c.id)).where(c.decided_us >= since_us))
        ).scalar()
        if first is None:
            return {}
        rows = await conn.execute(
            select(c.rule_id, func.count())
            .where(c.rule_id.in_(rule_ids), c.id >= first, c.decided_us >= since_us)
            .group_by(c.rule_id)
        )
        return {rule_id: count for rule_id, count in rows}


async def minute_stats(
    store: Store, since_us: int, until_us: int, account: str | None = None
) -> list[dict[str, Any]]:
    """Per-minute counts in [since, until); account "" is the final verdict."""
    table = schema.minute_counters
    conditions = [
        table.c.minute >= since_us // 60_000_000,
        table.c.minute < -(-until_us // 60_000_000),
    ]
    if account is not None:
        conditions.append(table.c.account == account)
    statement = (
        select(table)
        .where(and_(*conditions))
        .order_by(table.c.minute, table.c.account, table.c.verdict)
    )
    async with store.engine.connect() as conn:
        result = await conn.execute(statement)
        return [
            {
                "minute": iso(row["minute"] * 60_000_000),
                "account": row["account"],
                "verdict": row["verdict"],
                "count": row["count"],
            }
            for row in result.mappings()
        ]
