"""Admin UI users: add, change role or password, disable or enable, delete (audited; one
enabled admin stays)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy import delete, func, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smps import passwords
from smps.store import schema
from smps.store.audit_log import write_audit
from smps.store.common import MASK, Conflict, Invalid, NotFound, iso, now_us
from smps.store.db import Store
from smps.store.roles import ROLES


def check_role(role: str) -> None:
    if role not in ROLES:
        raise Invalid(f"role must be one of {', '.join(ROLES)}", "role")


MIN_PASSWORD = 8  # admin users; NE passwords follow SMPP's limits instead
_USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


def _user_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """A user as the audit log and the UI show it: never the hash."""
    return {"role": row["role"], "enabled": bool(row["enabled"]), "password": MASK}


async def _hash(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"at least {MIN_PASSWORD} characters", "password")
    return await asyncio.get_running_loop().run_in_executor(None, passwords.hash_password, password)


async def _user_row(conn: AsyncConnection, name: str) -> dict[str, Any]:
    table = schema.users
    row = (await conn.execute(select(table).where(table.c.name == name))).mappings().first()
    if row is None:
        raise NotFound(f"no user {name!r}")
    return dict(row)


async def _refuse_last_admin(conn: AsyncConnection, name: str) -> None:
    """Someone must stay able to manage users: the last enabled admin stays an admin."""
    table = schema.users
    others = await conn.execute(
        select(func.count()).where(
            table.c.role == "admin", table.c.enabled.is_(True), table.c.name != name
        )
    )
    if not others.scalar_one():
        raise Conflict(f"{name!r} is the last admin; make another user admin first")


async def list_users(store: Store) -> list[dict[str, Any]]:
    table = schema.users
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table).order_by(table.c.name))
        return [
            {
                "name": row["name"],
                "role": row["role"],
                "enabled": bool(row["enabled"]),
                "created_at": iso(row["created_us"]),
            }
            for row in result.mappings()
        ]


async def add_user(store: Store, name: str, password: str, role: str, *, actor: str) -> None:
    """A new enabled admin UI user (audited); Invalid names the field, Conflict a duplicate."""
    if not _USER_NAME.fullmatch(name):
        raise Invalid("1 to 64 letters, digits or _ . @ -", "name")
    check_role(role)
    digest = await _hash(password)
    values = {"name": name, "password_hash": digest, "role": role, "enabled": True}
    try:
        async with store.engine.begin() as conn:
            await conn.execute(insert(schema.users).values(**values, created_us=now_us()))
            await write_audit(conn, actor, "create", "users", name, None, _user_view(values))
    except IntegrityError:
        raise Conflict(f"user {name!r} already exists") from None


async def set_user_role(store: Store, name: str, role: str, *, actor: str) -> None:
    check_role(role)
    table = schema.users
    async with store.engine.begin() as conn:
        before = await _user_row(conn, name)
        if before["role"] == role:
            return
        if before["role"] == "admin":
            await _refuse_last_admin(conn, name)
        await conn.execute(sql_update(table).where(table.c.name == name).values(role=role))
        after = {**before, "role": role}
        await write_audit(
            conn, actor, "update", "users", name, _user_view(before), _user_view(after)
        )


async def set_user_password(store: Store, name: str, password: str, *, actor: str) -> None:
    table = schema.users
    digest = await _hash(password)
    async with store.engine.begin() as conn:
        before = await _user_row(conn, name)
        await conn.execute(
            sql_update(table).where(table.c.name == name).values(password_hash=digest)
        )
        view = _user_view(before)
        await write_audit(
            conn, actor, "update", "users", name, view, {**view, "password": f"{MASK} (new)"}
        )


async def set_user_enabled(store: Store, name: str, enabled: bool, *, actor: str) -> None:
    """Disable (no sign-in any more) or enable a user, audited; the last enabled admin
    stays enabled."""
    table = schema.users
    async with store.engine.begin() as conn:
        before = await _user_row(conn, name)
        if bool(before["enabled"]) == enabled:
            return
        if not enabled and before["role"] == "admin":
            await _refuse_last_admin(conn, name)
        await conn.execute(sql_update(table).where(table.c.name == name).values(enabled=enabled))
        after = {**before, "enabled": enabled}
        await write_audit(
            conn, actor, "update", "users", name, _user_view(before), _user_view(after)
        )


async def delete_user(store: Store, name: str, *, actor: str) -> None:
    table = schema.users
    async with store.engine.begin() as conn:
        before = await _user_row(conn, name)
        if before["role"] == "admin":
            await _refuse_last_admin(conn, name)
        await conn.execute(delete(table).where(table.c.name == name))
        await write_audit(conn, actor, "delete", "users", name, _user_view(before), None)
