"""The configuration a running node applies: the file's, plus what the API
changed in the database (accounts, SMSC connections, routes, policy, trace rules,
screening rules).

The node loads it at start and again whenever the store reports a committed
change, then pushes it into the NE server, the dispatcher, the tracer and the SMSC
clients, dropping only the binds of SMSCs that were removed or changed.
"""

from typing import Any

import msgspec
from sqlalchemy import select

from smps.config import Config, NeAccount, ScreeningRule, SmscConfig
from smps.store import bind_accounts, entities, schema
from smps.store.db import Store


def _struct_fields(document: dict[str, Any], struct: type[msgspec.Struct]) -> dict[str, Any]:
    """The document without the store's own keys (file_managed, updated_at...)."""
    return {k: v for k, v in document.items() if k in struct.__struct_fields__}


async def load_smsc(store: Store) -> list[SmscConfig]:
    """Every SMSC connection in the database (the file's, synced at start, and the
    API's), in the order they were made, with its password."""
    kind = entities.KINDS["smsc"]
    table = schema.smsc
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(table).order_by(table.c.id))).mappings().all()
    return [
        entities.validate(
            kind, {**row["settings"], "name": row["name"], "password": row["password"]}
        )
        for row in rows
    ]


async def load_screening_rules(store: Store, config: Config) -> list[ScreeningRule]:
    """Every screening rule in the order the engine applies them (the first block or
    allow that fires decides): the file's as in the file, then the API's in the order
    they were made. A file-managed rule is the file's own entry (its list file was
    read when the file was checked; it is not read again here)."""
    kind = entities.KINDS["screening_rules"]
    in_file = {rule.id: rule for rule in config.screening.rules}
    return [
        in_file[d["id"]]
        if d["file_managed"] and d["id"] in in_file
        else entities.validate(kind, _struct_fields(d, kind.struct))
        for d in await entities.list_entities(store, kind)
    ]


async def load(
    store: Store, config: Config
) -> tuple[Config, list[NeAccount | bind_accounts.StoredAccount]]:
    """(config with the database's SMSCs, routes, policy, trace and screening rules,
    NE accounts).

    File-managed accounts keep the file's entry (its password is compared as
    is); accounts made through the API carry only their password hash, which
    the NE server verifies off the event loop.
    """
    routes = [
        entities.validate(
            entities.KINDS["routes"], _struct_fields(d, entities.KINDS["routes"].struct)
        )
        for d in await entities.list_entities(store, entities.KINDS["routes"])
    ]
    kind = entities.KINDS["policy"]
    policy = entities.validate(kind, _struct_fields(await entities.get_policy(store), kind.struct))
    kind = entities.KINDS["trace_rules"]
    rules = [
        entities.validate(kind, _struct_fields(d, kind.struct))
        for d in await entities.list_entities(store, kind)
    ]
    live = msgspec.structs.replace(
        config,
        smsc=await load_smsc(store),
        routes=routes,
        policy=policy,
        trace=msgspec.structs.replace(config.trace, rules=rules),
        screening=msgspec.structs.replace(
            config.screening, rules=await load_screening_rules(store, config)
        ),
    )
    in_file = {account.system_id: account for account in config.ne_accounts}
    accounts = [
        in_file[stored.system_id] if stored.file_managed and stored.system_id in in_file else stored
        for stored in await bind_accounts.load_accounts(store)
    ]
    return live, accounts
