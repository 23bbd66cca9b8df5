"""The audit log: writing one record, and reading it back newest first."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from smps.store import schema
from smps.store.common import iso, now_us, plain
from smps.store.db import Store


async def write_audit(
    conn: AsyncConnection,
    actor: str,
    action: str,
    entity: str,
    key: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    """One audit record; ``before`` and ``after`` must already have their secrets masked."""
    await conn.execute(
        insert(schema.audit_log).values(
            ts_us=now_us(),
            actor=actor[:128],
            action=action,
            entity=entity,
            entity_key=key[:64],
            before=before,
            after=after,
        )
    )


async def record(
    store: Store,
    actor: str,
    action: str,
    entity: str,
    key: str,
    *,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
) -> None:
    """Audit an operator's action that changes no stored entity (kicking binds)."""
    async with store.engine.begin() as conn:
        await write_audit(conn, actor, action, entity, key, before, after)


async def audit_entries(store: Store, *, limit: int, before_id: int | None = None) -> list[dict]:
    table = schema.audit_log
    statement = select(table).order_by(table.c.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(table.c.id < before_id)
    async with store.engine.connect() as conn:
        result = await conn.execute(statement)
        return [{**plain(row), "ts": iso(row["ts_us"])} for row in result.mappings()]
