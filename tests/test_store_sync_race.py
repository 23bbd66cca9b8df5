# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Two nodes starting on a fresh shared database sync the same file at the same
moment: both succeed, each entity is stored once (SQLite and MariaDB)."""

import asyncio

from sqlalchemy import func, select

from smps.store import bind_accounts, file_sync, schema
from smps.store.db import Store
from tests.store_db import database_url, store  # noqa: F401


async def test_two_concurrent_syncs_of_the_same_file_both_succeed(store, database_url, make_config):
    config = make_config(
        ne_accounts=[{"system_id": f"ne{i}", "password": f"pw{i}"} for i in range(4)],
        smsc=[{"name": "smsc1", "host": "127.0.0.1", "port": 2776, "system_id": "smps"}],
        routes=[{"name": "all", "accounts": ["ne0"]}],
    )
    other = await Store.open(database_url, migrate=False)  # the second node's own engine
    try:
        first, second = await asyncio.gather(
            file_sync.sync_file_config(store, config), file_sync.sync_file_config(other, config)
        )
    finally:
        await other.close()
    # Each entity made once, by one of the two; the other found it in place.
    for kind, made in (("accounts", 4), ("smsc", 1), ("routes", 1)):
        assert first[kind] + second[kind] == made, (kind, first, second)
    async with store.engine.connect() as conn:
        count = await conn.scalar(select(func.count()).select_from(schema.ne_accounts))
    assert count == 4
    accounts = {a.system_id: a for a in await bind_accounts.load_accounts(store)}
    assert all(bind_accounts.verify_ne_password(accounts[f"ne{i}"], f"pw{i}") for i in range(4))
