"""API tokens: made once (only a digest is stored), checked on every API request, listed
and revoked (audited; a revoked token is refused from its next request on)."""

from __future__ import annotations

import msgspec
from sqlalchemy import insert, select
from sqlalchemy import update as sql_update

from smps import passwords
from smps.store import schema
from smps.store.admin_users import check_role
from smps.store.audit_log import write_audit
from smps.store.common import NotFound, iso, now_us
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


def _token_view(row) -> dict:
    """A token as lists and the audit log show it: never its digest."""
    return {
        "id": row["id"],
        "name": row["name"],
        "role": row["role"],
        "created_at": iso(row["created_us"]),
        "expires_at": iso(row["expires_us"]),
        "last_used_at": iso(row["last_used_us"]),
        "revoked": bool(row["revoked"]),
    }


async def list_tokens(store: Store) -> list[dict]:
    """Every token, oldest first, revoked and expired ones included."""
    table = schema.api_tokens
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table).order_by(table.c.id))
        return [_token_view(row) for row in result.mappings()]


async def revoke_token(store: Store, token_id: int, *, actor: str) -> dict:
    """Revoke token ``token_id`` (audited); its next request gets 401. Revoking a revoked
    token changes nothing. NotFound when there is no such token."""
    table = schema.api_tokens
    async with store.engine.begin() as conn:
        row = (await conn.execute(select(table).where(table.c.id == token_id))).mappings().first()
        if row is None:
            raise NotFound(f"no token {token_id}")
        before = _token_view(row)
        if before["revoked"]:
            return before
        await conn.execute(sql_update(table).where(table.c.id == token_id).values(revoked=True))
        after = {**before, "revoked": True}
        await write_audit(conn, actor, "update", "tokens", str(token_id), before, after)
    return after
