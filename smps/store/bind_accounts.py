"""NE accounts as the SMPP bind path needs them, and their password check."""

from __future__ import annotations

import msgspec
from sqlalchemy import select

from smps import passwords
from smps.store import schema
from smps.store.db import Store


class StoredAccount(msgspec.Struct, frozen=True, kw_only=True):
    """An NE account as the SMPP server needs it; the password only as its hash."""

    system_id: str
    password_hash: str
    allowed_ips: list[str]
    max_binds: int
    window: int
    tps: int
    mode: str
    concat: str = "message"  # as NeAccount.concat; a row stored before it existed: the default
    enabled: bool
    file_managed: bool


async def load_accounts(store: Store) -> list[StoredAccount]:
    """Every NE account in the database (file-managed and API-made)."""
    table = schema.ne_accounts
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table).order_by(table.c.id))
        return [
            msgspec.convert(
                {
                    **row["settings"],
                    "system_id": row["system_id"],
                    "password_hash": row["password_hash"],
                    "file_managed": bool(row["file_managed"]),
                },
                StoredAccount,
            )
            for row in result.mappings()
        ]


def verify_ne_password(account: StoredAccount, password: str) -> bool:
    """Does ``password`` (from a bind PDU) match the account? CPU-bound (~30 ms):
    call it through ``loop.run_in_executor``."""
    return passwords.verify_password(account.password_hash, password)
