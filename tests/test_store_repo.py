# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Config in the database on SQLite and MariaDB: the file's entities synced and
file-managed, audited with secrets masked; account passwords only as hashes."""

from sqlalchemy import select

from smps import passwords
from smps.store import bind_accounts, entities, file_sync, schema, tokens
from tests.store_db import database_url, store  # noqa: F401


async def audit(store):
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(schema.audit_log).order_by(schema.audit_log.c.id))
        return [dict(r) for r in rows.mappings()]


async def test_file_entities_are_upserted_and_marked(store, make_config):
    config = make_config(
        ne_accounts=[{"system_id": "antispam", "password": "pw1", "window": 16}],
        smsc=[
            {
                "name": "smsc1",
                "host": "127.0.0.1",
                "port": 2776,
                "system_id": "smps",
                "password": "s3cret",
            }
        ],
        routes=[{"name": "all", "accounts": ["antispam"]}],
        trace={"rules": [{"number": "8613800138000"}]},
        screening={"rules": [{"id": "silent", "type": "special", "kinds": ["silent"]}]},
    )
    changes = await file_sync.sync_file_config(store, config)
    assert changes == {"accounts": 1, "smsc": 1, "routes": 1, "trace_rules": 1,
                       "screening_rules": 1, "policy": 0}  # fmt: skip
    accounts = await bind_accounts.load_accounts(store)
    assert [(a.system_id, a.window, a.file_managed) for a in accounts] == [("antispam", 16, True)]
    assert accounts[0].password_hash.startswith("$argon2id$")
    assert bind_accounts.verify_ne_password(accounts[0], "pw1")
    assert not bind_accounts.verify_ne_password(accounts[0], "pw2")
    entries = await audit(store)
    assert {(e["actor"], e["action"], e["entity"]) for e in entries} == {
        ("config-file", "create", kind)
        for kind in ("accounts", "smsc", "routes", "trace_rules", "screening_rules")
    }
    assert "s3cret" not in str(entries) and "pw1" not in str(entries)

    # The same file again changes nothing and keeps the stored hash.
    assert sum((await file_sync.sync_file_config(store, config)).values()) == 0
    assert (await bind_accounts.load_accounts(store))[0].password_hash == accounts[0].password_hash


async def test_file_changes_update_take_over_and_delete(store, make_config):
    await entities.create(
        store, entities.KINDS["accounts"], {"system_id": "api", "password": "a"}, "t"
    )
    await file_sync.sync_file_config(
        store,
        make_config(
            ne_accounts=[
                {"system_id": "old", "password": "o"},
                {"system_id": "api", "password": "b"},
            ]
        ),
    )
    taken = {a.system_id: a for a in await bind_accounts.load_accounts(store)}
    assert taken["api"].file_managed and bind_accounts.verify_ne_password(taken["api"], "b")

    await file_sync.sync_file_config(
        store, make_config(ne_accounts=[{"system_id": "api", "password": "c", "tps": 9}])
    )
    accounts = {a.system_id: a for a in await bind_accounts.load_accounts(store)}
    assert set(accounts) == {"api"}  # "old" left the file, so it left the database
    assert accounts["api"].tps == 9 and bind_accounts.verify_ne_password(accounts["api"], "c")
    actions = [(e["action"], e["entity_key"]) for e in await audit(store)]
    assert ("delete", "old") in actions
    update = [e for e in await audit(store) if e["action"] == "update"][-1]
    assert update["before"]["password"] == "***" and update["after"]["tps"] == 9


async def test_api_made_entities_survive_a_sync(store, make_config):
    await entities.create(
        store, entities.KINDS["accounts"], {"system_id": "mine", "password": "m"}, "t"
    )
    await file_sync.sync_file_config(store, make_config())
    assert [a.system_id for a in await bind_accounts.load_accounts(store)] == ["mine"]


async def test_policy_from_the_file_only_when_written(store, make_config):
    await file_sync.sync_file_config(store, make_config())
    assert (await entities.get_policy(store))["file_managed"] is False
    await file_sync.sync_file_config(store, make_config(policy={"timeout": "1s"}))
    policy = await entities.get_policy(store)
    assert policy["file_managed"] is True and policy["timeout"] == 1.0


async def test_listeners_hear_about_changes(store):
    heard = []

    async def listener(entity, key):
        heard.append((entity, key))

    store.listeners.append(listener)
    kind = entities.KINDS["trace_rules"]
    await entities.create(store, kind, {"number": "86138"}, "t")
    await entities.update(store, kind, "86138", {"side": "sender"}, "t", merge=True)
    await entities.delete_entity(store, kind, "86138", "t")
    assert heard == [("trace_rules", "86138")] * 3


async def test_tokens_are_stored_hashed_and_can_expire(store):
    token = await tokens.create_token(store, "ci", "admin")
    assert token.startswith("smps_")
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(schema.api_tokens.c.token_hash))).scalar()
    assert stored == passwords.token_digest(token) and token.encode() not in stored
    identity = await tokens.authenticate(store, token)
    assert (identity.name, identity.role) == ("ci", "admin")
    assert await tokens.authenticate(store, token + "x") is None


def test_password_hashes_are_salted_and_verify():
    first, second = passwords.hash_password("pw"), passwords.hash_password("pw")
    assert first != second
    assert passwords.verify_password(first, "pw") and passwords.verify_password(second, "pw")
    assert not passwords.verify_password(first, "pW")
    assert not passwords.verify_password("garbage", "pw")
