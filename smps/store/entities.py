"""Configuration entities (accounts, smsc, routes, trace_rules, screening_rules, policy)
with audit.

Entities are addressed by their :class:`Kind`. Every change goes through
:func:`create`, :func:`update` or :func:`delete_entity`, which validate with the
same msgspec structs as the YAML file, refuse to touch file-managed rows, write an
audit record in the same transaction (secrets masked), and tell the store's
listeners after the commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import msgspec
from msgspec import inspect as mi
from sqlalchemy import Column, Table, delete, insert, select
from sqlalchemy import update as sql_update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from smps import config as cfg
from smps import passwords
from smps.store import schema
from smps.store.audit_log import write_audit
from smps.store.common import MASK, Conflict, Invalid, NotFound, iso, now_us
from smps.store.db import Store

# --------------------------------------------------------------------- entity kinds


class Kind(msgspec.Struct, frozen=True):
    """One kind of configuration entity and how it maps to its table."""

    name: str  # audit entity name (and the API's URL segment, but for screening rules)
    table: Table
    key: str  # the struct field that names an entity; its column too, unless ``column``
    struct: type[msgspec.Struct]
    secret: str | None = None  # struct field kept outside ``settings``
    hashed: bool = False  # secret stored as a password hash (else as given)
    column: str = ""  # the key's column when not named as the field (``id`` is taken)

    def key_of(self, document: Mapping[str, Any]) -> str:
        return str(document[self.key])

    @property
    def key_column(self) -> Column:
        return self.table.c[self.column or self.key]

    @property
    def order(self) -> tuple[Any, ...]:
        """Rows in the order they were made; screening rules in the order the engine
        applies them: the file's as in the file, then the API's as they were made."""
        c = self.table.c
        if "file_position" in c:
            return (c.file_position.is_(None), c.file_position, c.id)
        return (c.id,)


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Kind("accounts", schema.ne_accounts, "system_id", cfg.NeAccount, "password", True),
        Kind("smsc", schema.smsc, "name", cfg.SmscConfig, "password"),
        Kind("routes", schema.routes, "name", cfg.Route),
        Kind("trace_rules", schema.trace_rules, "number", cfg.TraceRule),
        Kind("screening_rules", schema.screening_rules, "id", cfg.ScreeningRule, column="rule_id"),
        Kind("policy", schema.policy, "name", cfg.PolicyConfig),
    )
}
POLICY_KEY = "policy"  # the policy table's one row


def secret_column(kind: Kind) -> str | None:
    if kind.secret is None:
        return None
    return "password_hash" if kind.hashed else kind.secret


def _defaults(kind: Kind) -> dict[str, Any]:
    """The struct's default of each setting (not the key, not the secret), as stored."""
    defaults = {}
    for f in msgspec.structs.fields(kind.struct):
        if f.name in (kind.key, kind.secret):
            continue
        if f.default is not msgspec.NODEFAULT:
            defaults[f.name] = msgspec.to_builtins(f.default)
        elif f.default_factory is not msgspec.NODEFAULT:
            defaults[f.name] = msgspec.to_builtins(f.default_factory())
    return defaults


def present(kind: Kind, row: Mapping[str, Any]) -> dict[str, Any]:
    """An entity as the API shows it: never a secret, not even a hash. A setting added
    to SMPS after the row was stored shows its default, which is what the node applies."""
    document = {} if kind.name == "policy" else {kind.key: row[kind.key_column.name]}
    document.update(_defaults(kind))
    document.update(row["settings"])
    if kind.secret is not None:
        document[f"{kind.secret}_set"] = bool(row[secret_column(kind)])
    document["file_managed"] = bool(row["file_managed"])
    document["updated_at"] = iso(row["updated_us"])
    return document


def audit_view(kind: Kind, row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    document = present(kind, row)
    document.pop("updated_at")
    if kind.secret is not None:
        document.pop(f"{kind.secret}_set")
        document[kind.secret] = MASK if row[secret_column(kind)] else ""
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
        prepared = cfg.prepare(dict(document), mi.type_info(kind.struct), ())
        value = msgspec.convert(prepared, kind.struct, str_keys=True)
    except cfg.InvalidValue as exc:
        raise Invalid(exc.reason, cfg.format_path(exc.path) or None) from None
    except msgspec.ValidationError as exc:
        raise validation_error(exc) from None
    try:
        _check_rules(kind, value)
    except cfg.InvalidValue as exc:
        raise Invalid(exc.reason, cfg.format_path(exc.path) or None) from None
    return value


_CONFIG_SECTIONS = {"accounts": "ne_accounts", "smsc": "smsc", "policy": "policy"}


def _check_rules(kind: Kind, value: msgspec.Struct) -> None:
    """The file's cross-field rules (no zero block status, reconnect max >= initial, a
    screening rule's keys for its type...); InvalidValue's path starts in the entity."""
    if kind.name == "screening_rules":
        cfg.check_screening_rule(value)
        return
    section = _CONFIG_SECTIONS.get(kind.name)
    if section is None:
        return
    single = kind.name == "policy"
    try:
        cfg.check_config(cfg.Config(**{section: value if single else [value]}))
    except cfg.InvalidValue as exc:
        path = exc.path[1:] if single else exc.path[2:]  # drop "policy" / "smsc", 0
        raise cfg.InvalidValue(path, exc.reason) from None


def _check_api_only(kind: Kind, document: Any) -> None:
    """What the file may do and the API may not: name a file of the node's to read
    (its lines would come back in error messages). Checked before anything reads it."""
    named = isinstance(document, Mapping) and document.get("file") is not None
    if kind.name == "screening_rules" and named:
        raise Invalid(
            "a list file is named in the configuration file only; give the entries here",
            "file",
        )


def split(kind: Kind, value: msgspec.Struct) -> tuple[str, str | None, dict[str, Any]]:
    """A validated struct → (key, secret or None, settings document)."""
    settings = msgspec.to_builtins(value)
    key = POLICY_KEY if kind.name == "policy" else settings.pop(kind.key)
    secret = settings.pop(kind.secret) if kind.secret else None
    return key, secret, settings


async def secret_value(kind: Kind, secret: str) -> str:
    if not kind.hashed:
        return secret
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, passwords.hash_password, secret)


async def entity_row(conn: AsyncConnection, kind: Kind, key: str) -> dict[str, Any] | None:
    table = kind.table
    result = await conn.execute(select(table).where(kind.key_column == key))
    row = result.mappings().first()
    return dict(row) if row is not None else None


async def audit_change(
    conn: AsyncConnection,
    actor: str,
    action: str,
    kind: Kind,
    key: str,
    before: Mapping[str, Any] | None,
    after: Mapping[str, Any] | None,
) -> None:
    await write_audit(
        conn, actor, action, kind.name, key, audit_view(kind, before), audit_view(kind, after)
    )


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
        result = await conn.execute(select(kind.table).order_by(*kind.order))
        return [present(kind, row) for row in result.mappings()]


async def get_entity(store: Store, kind: Kind, key: str) -> dict[str, Any]:
    async with store.engine.connect() as conn:
        row = await entity_row(conn, kind, key)
    if row is None:
        raise NotFound(f"no {kind.name} {key!r}")
    return present(kind, row)


async def create(store: Store, kind: Kind, document: Mapping[str, Any], actor: str) -> dict:
    _check_api_only(kind, document)
    value = validate(kind, document)
    key, secret, settings = split(kind, value)
    stamp = now_us()
    values: dict[str, Any] = {
        kind.key_column.name: key,
        "settings": settings,
        "file_managed": False,
        "created_us": stamp,
        "updated_us": stamp,
    }
    if kind.secret is not None:
        values[secret_column(kind)] = await secret_value(kind, secret or "")
    async with store.engine.begin() as conn:
        await _check_references(conn, kind, value)
        if await entity_row(conn, kind, key) is not None:
            raise Conflict(f"{kind.name} {key!r} already exists")
        try:
            await conn.execute(insert(kind.table).values(**values))
        except IntegrityError:
            raise Conflict(f"{kind.name} {key!r} already exists") from None
        row = await entity_row(conn, kind, key)
        await audit_change(conn, actor, "create", kind, key, None, row)
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
        before = await entity_row(conn, kind, key)
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
        _check_api_only(kind, merged)
        value = validate(kind, merged)
        await _check_references(conn, kind, value)
        _, secret, settings = split(kind, value)
        values: dict[str, Any] = {"settings": settings, "updated_us": now_us()}
        if kind.secret is not None and not keep_secret:
            values[secret_column(kind)] = await secret_value(kind, secret or "")
        table = kind.table
        await conn.execute(sql_update(table).where(kind.key_column == key).values(**values))
        after = await entity_row(conn, kind, key)
        await audit_change(conn, actor, "update", kind, key, before, after)
    await store.notify(kind.name, key)
    return present(kind, after)


async def delete_entity(store: Store, kind: Kind, key: str, actor: str) -> None:
    async with store.engine.begin() as conn:
        before = await entity_row(conn, kind, key)
        if before is None:
            raise NotFound(f"no {kind.name} {key!r}")
        _refuse_file_managed(kind, key, before)
        await _check_unreferenced(conn, kind, key)
        await conn.execute(delete(kind.table).where(kind.key_column == key))
        await audit_change(conn, actor, "delete", kind, key, before, None)
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
        exists = await entity_row(conn, kind, POLICY_KEY) is not None
    if exists:
        return await update(store, kind, POLICY_KEY, document, actor, merge=False)
    return await create(store, kind, document, actor)
