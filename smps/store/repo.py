"""Queries: configuration entities (with audit), accounts for the bind path, trace rules
for the tracer, users and API tokens, decisions, per-minute counters and traced messages.

Configuration entities are addressed by their :class:`Kind` (accounts, smsc,
routes, trace_rules, policy). Every change goes through :func:`create`,
:func:`update` or :func:`delete`, which validate with the same msgspec structs
as the YAML file, refuse to touch file-managed rows, write an audit record in
the same transaction (secrets masked), and tell the store's listeners after the
commit. Errors are :class:`NotFound`, :class:`Conflict` and :class:`Invalid`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import msgspec
from msgspec import inspect as mi
from sqlalchemy import Table, and_, delete, func, insert, or_, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection

from smps import config as cfg
from smps import passwords
from smps.errors import SmpsError
from smps.store import schema
from smps.store.db import ConfigListener, Store
from smps.store.roles import ROLES

log = logging.getLogger("smps.store")

MASK = "***"


class NotFound(SmpsError):
    """No such entity."""


class Conflict(SmpsError):
    """The change clashes with the current state (file-managed, duplicate, still referenced)."""


class Invalid(SmpsError):
    """Input refused; ``field`` is the offending key path (``allowed_ips[1]``) or None."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def now_us() -> int:
    return time.time_ns() // 1000


def iso(us: int | None) -> str | None:
    """Epoch microseconds as ISO 8601 UTC, the API's human-readable time."""
    if us is None:
        return None
    return datetime.fromtimestamp(us / 1_000_000, UTC).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------- entity kinds


class Kind(msgspec.Struct, frozen=True):
    """One kind of configuration entity and how it maps to its table."""

    name: str  # URL segment and audit entity name
    table: Table
    key: str  # identity column, also the struct field
    struct: type[msgspec.Struct]
    secret: str | None = None  # struct field kept outside ``settings``
    hashed: bool = False  # secret stored as a password hash (else as given)

    def key_of(self, document: Mapping[str, Any]) -> str:
        return str(document[self.key])


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("accounts", schema.ne_accounts, "system_id", cfg.NeAccount, "password", True),
        Kind("smsc", schema.smsc, "name", cfg.SmscConfig, "password"),
        Kind("routes", schema.routes, "name", cfg.Route),
        Kind("trace_rules", schema.trace_rules, "number", cfg.TraceRule),
        Kind("policy", schema.policy, "name", cfg.PolicyConfig),
    )
}
POLICY_KEY = "policy"  # the policy table's one row


def _secret_column(kind: Kind) -> str | None:
    if kind.secret is None:
        return None
    return "password_hash" if kind.hashed else kind.secret


def present(kind: Kind, row: Mapping[str, Any]) -> dict[str, Any]:
    """An entity as the API shows it: never a secret, not even a hash."""
    document = {} if kind.name == "policy" else {kind.key: row[kind.key]}
    document.update(row["settings"])
    if kind.secret is not None:
        document[f"{kind.secret}_set"] = bool(row[_secret_column(kind)])
    document["file_managed"] = bool(row["file_managed"])
    document["updated_at"] = iso(row["updated_us"])
    return document


def _audit_view(kind: Kind, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    document = present(kind, row)
    document.pop("updated_at")
    if kind.secret is not None:
        document.pop(f"{kind.secret}_set")
        document[kind.secret] = MASK if row[_secret_column(kind)] else ""
    return document


def validation_error(exc: msgspec.ValidationError) -> Invalid:
    """msgspec's "Expected `int`, got `str` - at `$.window`" → Invalid(message, "window")."""
    message, _, path = str(exc).partition(" - at `$")
    field = path.rstrip("`").lstrip(".") or None
    for prefix, words in (
        ("Object contains unknown field `", "unknown field"),
        ("Object missing required field `", "required field missing"),
    ):
        if message.startswith(prefix):
            name = message.split("`")[1]
            return Invalid(words, f"{field}.{name}" if field else name)
    return Invalid(message, field)


def validate(kind: Kind, document: Mapping[str, Any]) -> msgspec.Struct:
    """``document`` as ``kind.struct``, or Invalid naming the field.

    Values are read as in the YAML file (``2s``, ``0x66``, networks normalised),
    through the config module's own parser, so the API and the file agree.
    """
    if not isinstance(document, Mapping):
        raise Invalid("expected a JSON object")
    try:
        prepared = cfg._prepare(dict(document), mi.type_info(kind.struct), ())
        value = msgspec.convert(prepared, kind.struct, str_keys=True)
    except cfg._Invalid as exc:
        raise Invalid(exc.reason, cfg._format_path(exc.path) or None) from None
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    _check_rules(kind, value)
    return value


_CONFIG_SECTIONS = {"accounts": "ne_accounts", "smsc": "smsc", "policy": "policy"}


def _check_rules(kind: Kind, value: msgspec.Struct) -> None:
    """The file's cross-field rules (no zero block status, reconnect max >= initial...)."""
    section = _CONFIG_SECTIONS.get(kind.name)
    if section is None:
        return
    single = kind.name == "policy"
    try:
        cfg._check(cfg.Config(**{section: value if single else [value]}))
    except cfg._Invalid as exc:
        path = exc.path[1:] if single else exc.path[2:]  # drop "policy" / "smsc", 0
        raise Invalid(exc.reason, cfg._format_path(path) or None) from None


def _split(kind: Kind, value: msgspec.Struct) -> tuple[str, str | None, dict[str, Any]]:
    """A validated struct → (key, secret or None, settings document)."""
    settings = msgspec.to_builtins(value)
    key = POLICY_KEY if kind.name == "policy" else settings.pop(kind.key)
    secret = settings.pop(kind.secret) if kind.secret else None
    return key, secret, settings


async def _secret_value(kind: Kind, secret: str) -> str:
    if not kind.hashed:
        return secret
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, passwords.hash_password, secret)


async def _row(conn: AsyncConnection, kind: Kind, key: str) -> dict[str, Any] | None:
    table = kind.table
    result = await conn.execute(select(table).where(table.c[kind.key] == key))
    row = result.mappings().first()
    return dict(row) if row is not None else None


async def _audit(
    conn: AsyncConnection,
    actor: str,
    action: str,
    kind: Kind,
    key: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    await _audit_row(
        conn, actor, action, kind.name, key, _audit_view(kind, before), _audit_view(kind, after)
    )


async def _audit_row(
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
        await _audit_row(conn, actor, action, entity, key, before, after)


def _refuse_file_managed(kind: Kind, key: str, row: Mapping[str, Any]) -> None:
    if row["file_managed"]:
        raise Conflict(
            f"{kind.name} {key!r} is managed by the configuration file and read-only here; "
            "change it in the file and restart, or remove it from the file to manage it here"
        )


async def _check_references(conn: AsyncConnection, kind: Kind, value: msgspec.Struct) -> None:
    """A route may name only existing accounts and SMSCs."""
    if kind.name != "routes":
        return
    for field, target in (("accounts", KINDS["accounts"]), ("smsc", KINDS["smsc"])):
        names = getattr(value, field)
        if not names:
            continue
        column = target.table.c[target.key]
        known = set((await conn.execute(select(column).where(column.in_(names)))).scalars())
        for index, name in enumerate(names):
            if name not in known:
                raise Invalid(f"unknown {target.name} {name!r}", f"{field}[{index}]")


async def _check_unreferenced(conn: AsyncConnection, kind: Kind, key: str) -> None:
    """Refuse to delete an account or SMSC that a route still names."""
    if kind.name not in ("accounts", "smsc"):
        return
    rows = await conn.execute(select(schema.routes.c.name, schema.routes.c.settings))
    for name, settings in rows:
        if key in settings.get(kind.name, []):
            raise Conflict(f"{kind.name} {key!r} is used by route {name!r}; change the route first")


# ------------------------------------------------------------------ entity changes


async def list_entities(store: Store, kind: Kind) -> list[dict[str, Any]]:
    async with store.engine.connect() as conn:
        result = await conn.execute(select(kind.table).order_by(kind.table.c.id))
        return [present(kind, row) for row in result.mappings()]


async def get_entity(store: Store, kind: Kind, key: str) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        row = await _row(conn, kind, key)
    if row is None:
        raise NotFound(f"no {kind.name} {key!r}")
    return present(kind, row)


async def create(store: Store, kind: Kind, document: Mapping[str, Any], actor: str) -> dict:
    value = validate(kind, document)
    key, secret, settings = _split(kind, value)
    stamp = now_us()
    values: dict[str, Any] = {
        kind.key: key,
        "settings": settings,
        "file_managed": False,
        "created_us": stamp,
        "updated_us": stamp,
    }
    if kind.secret is not None:
        values[_secret_column(kind)] = await _secret_value(kind, secret or "")
    async with store.engine.begin() as conn:
        await _check_references(conn, kind, value)
        if await _row(conn, kind, key) is not None:
            raise Conflict(f"{kind.name} {key!r} already exists")
        try:
            await conn.execute(insert(kind.table).values(**values))
        except IntegrityError:
            raise Conflict(f"{kind.name} {key!r} already exists") from None
        row = await _row(conn, kind, key)
        await _audit(conn, actor, "create", kind, key, None, row)
    await store.notify(kind.name, key)
    return present(kind, row)


async def update(
    store: Store, kind: Kind, key: str, document: Mapping[str, Any], actor: str, *, merge: bool
) -> dict[str, Any]:
    """Replace (``merge=False``, PUT) or patch (``merge=True``, PATCH) an entity.

    The key cannot change. Leaving out the secret keeps the stored one.
    """
    if not isinstance(document, Mapping):
        raise Invalid("expected a JSON object")
    async with store.engine.begin() as conn:
        before = await _row(conn, kind, key)
        if before is None:
            raise NotFound(f"no {kind.name} {key!r}")
        _refuse_file_managed(kind, key, before)
        if kind.key in document and str(document[kind.key]) != key and kind.name != "policy":
            raise Invalid(f"{kind.key} cannot change (delete and create instead)", kind.key)
        merged = {**before["settings"], **document} if merge else dict(document)
        if kind.name != "policy":
            merged[kind.key] = key
        keep_secret = kind.secret is not None and kind.secret not in merged
        if keep_secret:
            # Validate with a stand-in; the stored secret is kept as it is.
            merged[kind.secret] = "keep"
        value = validate(kind, merged)
        await _check_references(conn, kind, value)
        _, secret, settings = _split(kind, value)
        values: dict[str, Any] = {"settings": settings, "updated_us": now_us()}
        if kind.secret is not None and not keep_secret:
            values[_secret_column(kind)] = await _secret_value(kind, secret or "")
        table = kind.table
        await conn.execute(sql_update(table).where(table.c[kind.key] == key).values(**values))
        after = await _row(conn, kind, key)
        await _audit(conn, actor, "update", kind, key, before, after)
    await store.notify(kind.name, key)
    return present(kind, after)


async def delete_entity(store: Store, kind: Kind, key: str, actor: str) -> None:
    async with store.engine.begin() as conn:
        before = await _row(conn, kind, key)
        if before is None:
            raise NotFound(f"no {kind.name} {key!r}")
        _refuse_file_managed(kind, key, before)
        await _check_unreferenced(conn, kind, key)
        await conn.execute(delete(kind.table).where(kind.table.c[kind.key] == key))
        await _audit(conn, actor, "delete", kind, key, before, None)
    await store.notify(kind.name, key)


async def created_by(store: Store, kind: Kind) -> dict[str, tuple[str, str | None]]:
    """Who created each entity of ``kind`` and when, from the audit log:
    {key: (actor, ISO time)}; an entity deleted and made again counts from its last creation."""
    table = schema.audit_log
    statement = (
        select(table.c.entity_key, table.c.actor, table.c.ts_us)
        .where(table.c.entity == kind.name, table.c.action == "create")
        .order_by(table.c.id)
    )
    async with store.engine.connect() as conn:
        return {key: (actor, iso(ts)) for key, actor, ts in await conn.execute(statement)}


async def get_policy(store: Store) -> dict[str, Any]:
    """The policy in the database, else the built-in defaults (not file-managed)."""
    kind = KINDS["policy"]
    try:
        return await get_entity(store, kind, POLICY_KEY)
    except NotFound:
        defaults = msgspec.to_builtins(cfg.PolicyConfig())
        return {**defaults, "file_managed": False, "updated_at": None}


async def put_policy(store: Store, document: Mapping[str, Any], actor: str) -> dict[str, Any]:
    kind = KINDS["policy"]
    async with store.engine.connect() as conn:
        exists = await _row(conn, kind, POLICY_KEY) is not None
    if exists:
        return await update(store, kind, POLICY_KEY, document, actor, merge=False)
    return await create(store, kind, document, actor)


# ------------------------------------------------------------------ the file's share

FILE_ACTOR = "config-file"


def _file_entities(config: cfg.Config) -> dict[str, list[msgspec.Struct]]:
    entities: dict[str, list[msgspec.Struct]] = {
        "accounts": list(config.ne_accounts),
        "smsc": list(config.smsc),
        "routes": list(config.routes),
        "trace_rules": list({rule.number: rule for rule in config.trace.rules}.values()),
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
    count = 0
    async with store.engine.begin() as conn:
        rows = {row[kind.key]: dict(row) for row in (await conn.execute(select(table))).mappings()}
        wanted = set()
        for value in values:
            key, secret, settings = _split(kind, value)
            wanted.add(key)
            before = rows.get(key)
            stored_secret = None
            if kind.secret is not None:
                column = _secret_column(kind)
                stored = before[column] if before else None
                if (
                    kind.hashed
                    and stored
                    and await loop.run_in_executor(None, passwords.verify_password, stored, secret)
                ) or (not kind.hashed and stored == secret):
                    stored_secret = stored
                else:
                    stored_secret = await _secret_value(kind, secret)
            if (
                before is not None
                and before["file_managed"]
                and before["settings"] == settings
                and (kind.secret is None or before[_secret_column(kind)] == stored_secret)
            ):
                continue
            values_row: dict[str, Any] = {
                "settings": settings,
                "file_managed": True,
                "updated_us": now_us(),
            }
            if kind.secret is not None:
                values_row[_secret_column(kind)] = stored_secret
            if before is None:
                await conn.execute(
                    insert(table).values(
                        **{kind.key: key, "created_us": values_row["updated_us"]}, **values_row
                    )
                )
                action = "create"
            else:
                await conn.execute(
                    sql_update(table).where(table.c[kind.key] == key).values(**values_row)
                )
                action = "update"
            await _audit(conn, FILE_ACTOR, action, kind, key, before, await _row(conn, kind, key))
            count += 1
        for key, before in rows.items():
            if before["file_managed"] and key not in wanted:
                await conn.execute(delete(table).where(table.c[kind.key] == key))
                await _audit(conn, FILE_ACTOR, "delete", kind, key, before, None)
                count += 1
    return count


# ----------------------------------------------------------- accounts for the bind path


class StoredAccount(msgspec.Struct, frozen=True, kw_only=True):
    """An NE account as the SMPP server needs it; the password only as its hash."""

    system_id: str
    password_hash: str
    allowed_ips: list[str]
    max_binds: int
    window: int
    tps: int
    mode: str
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


# ---------------------------------------------------------- trace rules for the tracer


class RuleTarget(Protocol):
    """What :func:`reload_trace_rules` needs of a tracer (``smps.proxy.tracer.Tracer``)."""

    def set_rules(
        self, rules: Iterable[cfg.TraceRule], decode_content_default: bool, country_code: str
    ) -> None: ...


async def load_trace_rules(store: Store) -> list[cfg.TraceRule]:
    """Every trace rule in the database: the file's (synced at start) and the API's."""
    kind = KINDS["trace_rules"]
    table = kind.table
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table.c.number, table.c.settings).order_by(table.c.id))
        rows = result.all()
    return [validate(kind, {**settings, "number": number}) for number, settings in rows]


async def reload_trace_rules(store: Store, tracer: RuleTarget, config: cfg.Config) -> None:
    """Give ``tracer`` the database's rules, under the file's content policy and country code."""
    rules = await load_trace_rules(store)
    tracer.set_rules(rules, config.trace.decode_content, config.trace.country_code)


def trace_rules_listener(store: Store, tracer: RuleTarget, config: cfg.Config) -> ConfigListener:
    """A store listener that reloads the tracer's rules after each trace rule change."""

    async def on_change(entity: str, _key: str) -> None:
        if entity == "trace_rules":
            await reload_trace_rules(store, tracer, config)

    return on_change


# ------------------------------------------------------------------ users and tokens


class TokenInfo(msgspec.Struct, frozen=True):
    id: int
    name: str
    role: str


def _check_role(role: str) -> None:
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
    _check_role(role)
    digest = await _hash(password)
    values = {"name": name, "password_hash": digest, "role": role, "enabled": True}
    try:
        async with store.engine.begin() as conn:
            await conn.execute(insert(schema.users).values(**values, created_us=now_us()))
            await _audit_row(conn, actor, "create", "users", name, None, _user_view(values))
    except IntegrityError:
        raise Conflict(f"user {name!r} already exists") from None


async def set_user_role(store: Store, name: str, role: str, *, actor: str) -> None:
    _check_role(role)
    table = schema.users
    async with store.engine.begin() as conn:
        before = await _user_row(conn, name)
        if before["role"] == role:
            return
        if before["role"] == "admin":
            await _refuse_last_admin(conn, name)
        await conn.execute(sql_update(table).where(table.c.name == name).values(role=role))
        after = {**before, "role": role}
        await _audit_row(
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
        await _audit_row(
            conn, actor, "update", "users", name, view, {**view, "password": f"{MASK} (new)"}
        )


async def delete_user(store: Store, name: str, *, actor: str) -> None:
    table = schema.users
    async with store.engine.begin() as conn:
        before = await _user_row(conn, name)
        if before["role"] == "admin":
            await _refuse_last_admin(conn, name)
        await conn.execute(delete(table).where(table.c.name == name))
        await _audit_row(conn, actor, "delete", "users", name, _user_view(before), None)


async def create_token(store: Store, name: str, role: str, expires_us: int | None = None) -> str:
    """A new API token; the plain token is returned once and never stored."""
    _check_role(role)
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


# --------------------------------------------------------------- decisions and stats

DECISION_FILTERS = ("src", "dst", "verdict", "reason", "account")


class DecisionQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Filters of the decisions query; times are epoch µs of the decision, until exclusive."""

    src: str | None = None
    dst: str | None = None
    verdict: str | None = None
    reason: str | None = None
    account: str | None = None  # the deciding NE account
    since_us: int | None = None
    until_us: int | None = None


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise Invalid("not a cursor from this API", "cursor") from None


def _plain(row: Mapping[str, Any]) -> dict[str, Any]:
    """A result row as a dict with plain ``str`` keys (SQLAlchemy's are a str subclass)."""
    return {str(key): value for key, value in row.items()}


def _decision_document(row: Mapping[str, Any]) -> dict[str, Any]:
    document = _plain(row)
    document["results"] = msgspec.json.decode(row["results"])
    document["arrived_at"] = iso(row["arrived_us"])
    document["decided_at"] = iso(row["decided_us"])
    return document


def _decision_conditions(query: DecisionQuery) -> list[Any]:
    c = schema.decisions.c
    conditions = []
    for value, column in (
        (query.src, c.source_addr),
        (query.dst, c.destination_addr),
        (query.verdict, c.verdict),
        (query.reason, c.reason),
        (query.account, c.deciding_account),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.since_us is not None:
        conditions.append(c.decided_us >= query.since_us)
    if query.until_us is not None:
        conditions.append(c.decided_us < query.until_us)
    return conditions


async def query_decisions(
    store: Store, query: DecisionQuery, *, limit: int, before_id: int | None = None
) -> list[dict[str, Any]]:
    """Decisions matching ``query``, newest first (by id), older than ``before_id``."""
    table = schema.decisions
    conditions = _decision_conditions(query)
    if before_id is not None:
        conditions.append(table.c.id < before_id)
    statement = select(table).where(and_(True, *conditions)).order_by(table.c.id.desc())
    async with store.engine.connect() as conn:
        result = await conn.execute(statement.limit(limit))
        return [_decision_document(row) for row in result.mappings()]


async def get_decision(store: Store, decision_id: int) -> dict[str, Any]:
    table = schema.decisions
    async with store.engine.connect() as conn:
        result = await conn.execute(select(table).where(table.c.id == decision_id))
        row = result.mappings().first()
    if row is None:
        raise NotFound(f"no decision {decision_id}")
    return _decision_document(row)


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


async def audit_entries(store: Store, *, limit: int, before_id: int | None = None) -> list[dict]:
    table = schema.audit_log
    statement = select(table).order_by(table.c.id.desc()).limit(limit)
    if before_id is not None:
        statement = statement.where(table.c.id < before_id)
    async with store.engine.connect() as conn:
        result = await conn.execute(statement)
        return [{**_plain(row), "ts": iso(row["ts_us"])} for row in result.mappings()]


# ------------------------------------------------------------------ traced messages


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
    conditions = [c.kind == "received"]
    if query.number is not None:
        if query.prefix:
            conditions.append(
                or_(
                    c.source_addr.startswith(query.number, autoescape=True),
                    c.destination_addr.startswith(query.number, autoescape=True),
                )
            )
        else:
            conditions.append(
                or_(c.source_addr == query.number, c.destination_addr == query.number)
            )
    if query.since_us is not None:
        conditions.append(c.ts_us >= query.since_us)
    if query.until_us is not None:
        conditions.append(c.ts_us < query.until_us)
    return conditions


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
