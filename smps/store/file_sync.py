"""The configuration file's share of the entities: synced into the database at start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
from sqlalchemy import delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError, OperationalError

from smps import config as cfg
from smps import passwords
from smps.store.common import now_us
from smps.store.db import Store
from smps.store.entities import (
    KINDS,
    Kind,
    audit_change,
    entity_row,
    secret_column,
    secret_value,
    split,
)

log = logging.getLogger("smps.store")

FILE_ACTOR = "config-file"


def _file_entities(config: cfg.Config) -> dict[str, list[msgspec.Struct]]:
    entities: dict[str, list[msgspec.Struct]] = {
        "accounts": list(config.ne_accounts),
        "smsc": list(config.smsc),
        "routes": list(config.routes),
        "trace_rules": list({rule.number: rule for rule in config.trace.rules}.values()),
        "screening_rules": list(config.screening.rules),
        "policy": [],
    }
    # A policy section equal to the defaults is taken as "not written in the file".
    if config.policy != cfg.PolicyConfig():
        entities["policy"].append(config.policy)
    return entities


async def sync_file_config(store: Store, config: cfg.Config) -> dict[str, int]:
    """Make the database hold the file's entities, marked file-managed; call once at start.

    Entities in the file are inserted or updated (an API-made one with the same
    key is taken over by the file); file-managed rows no longer in the file are
    deleted. Every change is audited as ``config-file``. A stored NE password
    hash is kept when the file's password still matches it (no rehash per
    start). Returns the number of changes per kind.

    Nodes sharing a database may sync at the same moment: a kind whose
    transaction clashed with another node's (a duplicate key, a deadlock,
    SQLite's stale snapshot) is read again and synced once more.
    """
    changes: dict[str, int] = {}
    for name, values in _file_entities(config).items():
        kind = KINDS[name]
        try:
            changes[name] = await _sync_kind(store, kind, values)
        except (IntegrityError, OperationalError) as exc:
            log.warning("file config sync of %s clashed with another writer (%s); again", name,
                        type(exc.orig).__name__)  # fmt: skip
            changes[name] = await _sync_kind(store, kind, values)
    return changes


async def _sync_kind(store: Store, kind: Kind, values: list[msgspec.Struct]) -> int:
    """One kind of the file's entities into the database, in one transaction."""
    loop = asyncio.get_running_loop()
    table = kind.table
    key_column = kind.key_column
    ordered = "file_position" in table.c  # screening rules: the file's order is kept
    count = 0
    async with store.engine.begin() as conn:
        result = (await conn.execute(select(table))).mappings()
        rows = {row[key_column.name]: dict(row) for row in result}
        wanted = set()
        for position, value in enumerate(values):
            key, secret, settings = split(kind, value)
            wanted.add(key)
            before = rows.get(key)
            stored_secret = None
            if kind.secret is not None:
                column = secret_column(kind)
                stored = before[column] if before else None
                if (
                    kind.hashed
                    and stored
                    and await loop.run_in_executor(None, passwords.verify_password, stored, secret)
                ) or (not kind.hashed and stored == secret):
                    stored_secret = stored
                else:
                    stored_secret = await secret_value(kind, secret)
            if (
                before is not None
                and before["file_managed"]
                and before["settings"] == settings
                and (kind.secret is None or before[secret_column(kind)] == stored_secret)
                and (not ordered or before["file_position"] == position)
            ):
                continue
            values_row: dict[str, Any] = {
                "settings": settings,
                "file_managed": True,
                "updated_us": now_us(),
            }
            if ordered:
                values_row["file_position"] = position
            if kind.secret is not None:
                values_row[secret_column(kind)] = stored_secret
            if before is None:
                await conn.execute(
                    insert(table).values(
                        **{key_column.name: key, "created_us": values_row["updated_us"]},
                        **values_row,
                    )
                )
                action = "create"
            else:
                await conn.execute(sql_update(table).where(key_column == key).values(**values_row))
                action = "update"
            await audit_change(
                conn, FILE_ACTOR, action, kind, key, before, await entity_row(conn, kind, key)
            )
            count += 1
        for key, before in rows.items():
            if before["file_managed"] and key not in wanted:
                await conn.execute(delete(table).where(key_column == key))
                await audit_change(conn, FILE_ACTOR, "delete", kind, key, before, None)
                count += 1
    return count
