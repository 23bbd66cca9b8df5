# ruff: noqa: F811  (pytest fixtures imported from tests.store_db and tests.test_ui)
"""The admin UI's Screening page on SQLite and MariaDB: the rules in order with their
hits over the last hour, a rule made, refused beside its field, switched on and off
and between monitor and block, edited and deleted, each change audited under the
user; who may do what; the file's rules read-only; trying a message on the page."""

import re
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from smps.proxy.screening import private_velocity_table
from smps.proxy.screening_trial import ScreeningTrial
from smps.store import admin_users, entities
from smps.store.writer import DecisionWriter
from smps.web.ui import add_ui_routes
from tests.store_db import database_url, make_decision, store  # noqa: F401
from tests.test_screening_api import FILE_RULES, live  # noqa: F401
from tests.test_ui import PASSWORD, ROLES, FakeNode, audit_actions, csrf_of, sign_in

RULE_FORM = {
    "id": "watch",
    "type": "keyword",
    "action": "monitor",
    "enabled": "on",
    "patterns": "free iphone\nyou have won",
}


@pytest.fixture
async def as_role(store, live):
    app = web.Application()
    trial = ScreeningTrial(lambda: live.config, private_velocity_table(4096))
    add_ui_routes(app, store, FakeNode(), screening=trial)
    for role in ROLES:
        await admin_users.add_user(store, role, PASSWORD, role, actor="test")
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    clients = []

    async def make(role):
        clients.append(await sign_in(server, role))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()
    await server.close()


async def post(client, path, form):
    return await client.post(path, data={**form, "csrf": await csrf_of(client, "/screening")})


async def test_a_rule_made_refused_switched_edited_and_deleted_is_audited(as_role, store, live):
    admin = await as_role("admin")
    page = await (await admin.get("/screening")).text()
    assert page.index("deny-senders") < page.index("vip")  # the file's order
    assert "read-only" in page and "Try a message" in page
    form = await (await admin.get("/screening/new")).text()
    assert 'value="monitor" checked' in form  # a new rule watches before it blocks

    response = await post(admin, "/screening", {**RULE_FORM, "patterns": ""})
    assert response.status == 422
    assert 'id="patterns-error">a keyword rule needs at least one pattern' in await response.text()
    response = await post(
        admin, "/screening", {**RULE_FORM, "type": "regex", "patterns": "ok\n(open"}
    )
    assert response.status == 422
    assert re.search(r'id="patterns-error">line 2: .*\(open', await response.text())
    response = await post(admin, "/screening", {**RULE_FORM, "limit": "5"})
    assert 'id="limit-error">does not apply to a keyword rule' in await response.text()

    response = await post(admin, "/screening", RULE_FORM)
    assert "Screening rule watch created; every worker applies it now." in await response.text()
    rule = await entities.get_entity(store, entities.KINDS["screening_rules"], "watch")
    assert rule["patterns"] == ["free iphone", "you have won"] and rule["action"] == "monitor"
    assert [r.id for r in live.config.screening.rules] == ["deny-senders", "vip", "watch"]

    response = await post(admin, "/screening/watch/enabled", {"enabled": "false"})
    assert "Screening rule watch disabled" in await response.text()
    response = await post(admin, "/screening/watch/action", {"action": "block"})
    assert "Screening rule watch set to block" in await response.text()
    assert live.config.screening.rules[2].action == "block"
    assert not live.config.screening.rules[2].enabled
    response = await post(admin, "/screening/watch/action", {"action": "allow"})
    assert "between monitor and block only" in await response.text()

    edit = await (await admin.get("/screening/watch")).text()
    assert "free iphone\nyou have won</textarea>" in edit
    changed = {**RULE_FORM, "type": "velocity", "patterns": "", "key": "source", "limit": "5",
               "window": "10s", "scope_source": "prefix:86"}  # fmt: skip
    response = await post(admin, "/screening/watch", changed)
    assert "Screening rule watch saved" in await response.text()
    rule = await entities.get_entity(store, entities.KINDS["screening_rules"], "watch")
    assert (rule["type"], rule["limit"], rule["window"]) == ("velocity", 5, 10.0)
    assert rule["scope"] == {"source": ["prefix:86"], "destination": []}
    assert 'value="10s"' in await (await admin.get("/screening/watch")).text()

    response = await post(admin, "/screening/watch/delete", {})
    assert "Screening rule watch deleted." in await response.text()
    assert await audit_actions(store) == [
        ("user:admin", "delete", "watch"),
        ("user:admin", "update", "watch"),
        ("user:admin", "update", "watch"),
        ("user:admin", "update", "watch"),
        ("user:admin", "create", "watch"),
        *[("config-file", "create", r["id"]) for r in FILE_RULES[::-1]],
    ]


async def test_the_files_rules_cannot_be_changed_from_the_page(as_role, store):
    admin = await as_role("admin")
    response = await post(admin, "/screening/vip/enabled", {"enabled": "false"})
    assert "managed by the configuration file" in await response.text()
    form = await (await admin.get("/screening/vip")).text()
    assert "defined in the configuration file and is read-only" in form
    assert "<fieldset disabled>" in form


@pytest.mark.parametrize("role", ROLES)
async def test_admins_write_operators_switch_rules_on_and_off_everyone_tries(as_role, store, role):
    rule = {**RULE_FORM, "patterns": ["lottery"], "enabled": True}
    await entities.create(store, entities.KINDS["screening_rules"], rule, "test")
    client = await as_role(role)
    page = await (await client.get("/screening")).text()
    assert ("New rule" in page) == (role == "admin")
    assert ("Disable<" in page) == (role != "viewer")
    assert (">Block<" in page) == (role == "admin")
    response = await post(client, "/screening/watch/enabled", {"enabled": "false"})
    assert response.status == (403 if role == "viewer" else 200)
    response = await post(client, "/screening/watch/action", {"action": "block"})
    assert response.status == (200 if role == "admin" else 403)
    message = {"source": "8613811112222", "destination": "1", "text": "Lottery"}
    response = await post(client, "/screening/try", message)
    assert response.status == 200
    fired = "watch" in re.search(r"<div class=\"card\" role=\"status\".*?</div>",
                                 await response.text(), re.S).group(0)  # fmt: skip
    assert fired == (role == "viewer")  # an operator disabled it, an admin too


async def test_trying_a_message_on_the_page(as_role, store):
    admin = await as_role("admin")
    rule = {"id": "silent", "type": "special", "kinds": ["silent"]}
    await entities.create(store, entities.KINDS["screening_rules"], rule, "test")
    message = {"source": "FakeBank", "destination": "8613911112222", "text": "hi"}
    page = await (await post(admin, "/screening/try", message)).text()
    assert re.search(r'Verdict: <span class="badge off">block</span> by deny-senders', page)
    assert "The SMSC gets 0x00000066 at once; no NE gets a copy" in page
    assert 'value="FakeBank"' in page  # the form keeps what was tried
    message = {"source": "8613811112222", "destination": "8613911112222", "pid": "0x40"}
    page = await (await post(admin, "/screening/try", message)).text()
    assert "by silent" in page
    response = await post(admin, "/screening/try", {**message, "pid": "sixty"})
    assert response.status == 422
    assert 'id="pid-error">enter a number' in await response.text()
    response = await admin.post("/screening/try", data={**message, "csrf": "forged"})
    assert response.status == 403


async def test_hits_over_the_last_hour_come_from_the_decisions(as_role, store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, batch_size=100)
    await writer.start()
    now = time.time()
    for i, (rule, age) in enumerate(
        [("vip", 10), ("vip", 3000), ("vip", 4000), ("deny-senders", 60), (None, 5)]
    ):
        writer.put(make_decision(i, at=now - age, rule_id=rule))
    await writer.close()
    admin = await as_role("admin")
    page = await (await admin.get("/screening")).text()
    hits = dict(re.findall(r'rule=([\w-]+)">(\d+)<', page))
    assert hits == {"deny-senders": "1", "vip": "2"}
