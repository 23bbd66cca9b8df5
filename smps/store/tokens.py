"""API tokens: made once (only a digest is stored), checked on every API request."""

from __future__ import annotations

import msgspec
from sqlalchemy import insert, select
from sqlalchemy import update as sql_update

from smps import passwords
from smps.store import schema
from smps.store.admin_users import check_role
from smps.store.common import now_us
from smps.store.db import Store


class TokenInfo(msgspec.Struct, frozen=True):
    id: int
    name: str
    role: str


async def create_token(store: Store, name: str, role: str, expires_us: int | None = None) -> str:
    """A new API token; the plain token is returned once and never stored."""
    check_role(role)
    token = passwords.new_token()
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(schema.api_tokens).values(
                name=name,
                token_hash=passwords.token_digest(token),
                role=role,
                created_us=now_us(),
                expires_us=expires_us,
                revoked=False,
            )
        )
    return token


_LAST_USED_PRECISION_US = 60_000_000


async def authenticate(store: Store, token: str) -> TokenInfo | None:
    """The token's identity, or None when unknown, revoked or expired."""
    table = schema.api_tokens
    stamp = now_us()
    async with store.engine.connect() as conn:
        result = await conn.execute(
            select(table).where(table.c.token_hash == passwords.token_digest(token))
        )
        row = result.mappings().first()
        if row is None or row["revoked"] or (row["expires_us"] and row["expires_us"] <= stamp):
            return None
        # last_used is informational: written at most once a minute per token.
        if (row["last_used_us"] or 0) < stamp - _LAST_USED_PRECISION_US:
            await conn.execute(
                sql_update(table).where(table.c.id == row["id"]).values(last_used_us=stamp)
            )
            await conn.commit()
    return TokenInfo(row["id"], row["name"], row["role"])
