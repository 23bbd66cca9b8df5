"""Traced messages as the API and the UI query them: one summary per message, its events."""

from __future__ import annotations

from typing import Any

import msgspec
from sqlalchemy import and_, func, or_, select

from smps.store import schema
from smps.store.common import NotFound, iso, time_window
from smps.store.db import Store


class TraceQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of the traced-messages query. ``number`` is normalised as the tracer
    stores addresses and matches the source or the destination, exactly or (with
    ``prefix``) as a prefix; times are epoch µs of arrival, ``until`` exclusive."""

    number: str | None = None
    prefix: bool = False
    since_us: int | None = None
    until_us: int | None = None


def _trace_conditions(query: TraceQuery) -> list[Any]:
    c = schema.traces.c
    received = c.kind == "received"
    conditions = [received]
    if query.number is not None:
        if query.prefix:
            source = c.source_addr.startswith(query.number, autoescape=True)
            destination = c.destination_addr.startswith(query.number, autoescape=True)
        else:
            source = c.source_addr == query.number
            destination = c.destination_addr == query.number
        # kind in each branch too: SQLite then reads the partial number indexes (only
        # the received events, migration 0010) for each side of the OR
        conditions.append(or_(and_(received, source), and_(received, destination)))
    return [*conditions, *time_window(c.ts_us, query.since_us, query.until_us)]


async def query_traces(
    store: Store, query: TraceQuery, *, limit: int, before_id: int | None = None
) -> list[dict[str, Any]]:
    """Traced messages matching ``query``, newest first: one summary per message.

    Every traced original has exactly one ``received`` event, its first, so a
    message is paged by that row's id (keyset, as decisions are) and filtered
    by its arrival; the summary then covers all its events, late answers
    included: first and last time, event count, and the final answer when one
    was recorded (``status``, ``verdict``, ``reason`` are None otherwise).
    """
    c = schema.traces.c
    conditions = _trace_conditions(query)
    if before_id is not None:
        conditions.append(c.id < before_id)
    statement = (
        select(c.id, c.message_id, c.event)
        .where(and_(*conditions))
        .order_by(c.id.desc())
        .limit(limit)
    )
    async with store.engine.connect() as conn:
        received = (await conn.execute(statement)).all()
        if not received:
            return []
        ids = [row.message_id for row in received]
        totals = {
            message_id: (first, last, count)
            for message_id, first, last, count in await conn.execute(
                select(c.message_id, func.min(c.ts_us), func.max(c.ts_us), func.count())
                .where(c.message_id.in_(ids))
                .group_by(c.message_id)
            )
        }
        finals = {
            message_id: msgspec.json.decode(event)
            for message_id, event in await conn.execute(
                select(c.message_id, c.event).where(c.message_id.in_(ids), c.kind == "final")
            )
        }
    summaries = []
    for row in received:
        event = msgspec.json.decode(row.event)
        first, last, count = totals[row.message_id]
        final = finals.get(row.message_id, {})
        summaries.append(
            {
                "id": row.id,
                "message_id": row.message_id,
                "first_at": iso(first),
                "last_at": iso(last),
                "first_us": first,
                "last_us": last,
                "smsc": event["smsc"],
                "command": event.get("command", ""),
                "source_addr": event["source_addr"],
                "destination_addr": event["destination_addr"],
                "source_addr_raw": event["source_addr_raw"],
                "destination_addr_raw": event["destination_addr_raw"],
                "rules": event.get("rules", []),
                "content": event.get("content", False),
                "concat_id": event.get("concat", {}).get("id"),
                "events": count,
                "status": final.get("status"),
                "verdict": final.get("verdict"),
                "reason": final.get("reason"),
            }
        )
    return summaries


async def trace_events(store: Store, message_id: str) -> list[str]:
    """The stored events of one traced message as JSON documents, in the order recorded."""
    c = schema.traces.c
    statement = select(c.event).where(c.message_id == message_id).order_by(c.id)
    async with store.engine.connect() as conn:
        events = list((await conn.execute(statement)).scalars())
    if not events:
        raise NotFound(f"no traced message {message_id!r}")
    return events
