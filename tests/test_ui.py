# ruff: noqa: F811  (pytest fixtures imported from tests.store_db)
"""Admin UI routes on SQLite and MariaDB: sign-in and sessions, every page for every
role, role and CSRF enforcement on every change, login throttling, audit per change,
form errors beside their field, decisions search and CSV, the live stream."""

import csv
import io
import re
import ssl
import time

import aiohttp
import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import select

from smps.config import TlsServerConfig
from smps.errors import ConfigError
from smps.proxy.campaigns import CampaignReader, private_campaign_table
from smps.store import (
    admin_users,
    audit_log,
    bind_accounts,
    common,
    entities,
    file_sync,
    schema,
    tokens,
)
from smps.store.roles import ROLES as ALL_ROLES
from smps.store.writer import DecisionWriter
from smps.web import auth
from smps.web.http import HttpServer
from smps.web.node import LiveStatus, SmscLive
from smps.web.pages.chart import verdict_chart
from smps.web.ui import ROUTES, add_ui_routes
from tests.store_db import database_url, make_decision, store  # noqa: F401
from tests.test_tls import certificate  # noqa: F401

PASSWORD = "correct horse"
ROLES = ("admin", "operator", "viewer")


class FakeNode:
    """A NodeView with fixed numbers; tests change ``binds``."""

    def __init__(self):
        self.binds: dict[str, int] = {}
        self.received = 0
        self.kicked: list[str] = []

    def kick(self, system_id: str) -> int:
        self.kicked.append(system_id)
        return self.binds.pop(system_id, 0)

    def live_status(self) -> LiveStatus:
        return LiveStatus(
            node="node-a",
            role="active",
            workers=2,
            uptime_s=3725.0,
            smsc=[SmscLive("smsc1", 1, 2)],
            ne_binds=dict(self.binds),
            received=self.received,
            in_flight=3,
            verdicts={"allow": 90, "block": 10},
            ne_latency_ms={"antispam": 1.5},
        )


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def node():
    return FakeNode()


@pytest.fixture
async def server(store, node, clock, make_config):
    app = web.Application()
    throttle = auth.LoginThrottle(per_user=3, per_address=5, window=600, clock=clock)
    config = make_config()
    campaigns = CampaignReader([private_campaign_table().buffer], lambda: config)
    add_ui_routes(app, store, node, throttle=throttle, campaigns=campaigns)
    for role in ROLES:
        await admin_users.add_user(store, role, PASSWORD, role, actor="test")
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
async def anon(server):
    async with TestClient(server) as client:
        yield client


async def sign_in(server, name, password=PASSWORD) -> TestClient:
    client = TestClient(server)
    await client.start_server()
    response = await client.post(
        "/login", data={"name": name, "password": password}, allow_redirects=False
    )
    assert response.status == 303, await response.text()
    return client


@pytest.fixture
async def as_role(server):
    clients = []

    async def make(role):
        client = await sign_in(server, role)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


async def csrf_of(client, path="/accounts") -> str:
    page = await (await client.get(path)).text()
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


ACCOUNT_FORM = {
    "system_id": "antispam",
    "password": "pw1",
    "allowed_ips": "10.0.0.0/8\n192.168.1.7",
    "max_binds": "4",
    "window": "32",
    "tps": "0",
    "mode": "enforce",
    "enabled": "on",
}


async def audit_actions(store):
    """The audit log, newest first, without the test's own set-up."""
    return [
        (e["actor"], e["action"], e["entity_key"])
        for e in await audit_log.audit_entries(store, limit=100)
        if e["actor"] != "test"
    ]


# ------------------------------------------------------------------ sign-in


async def test_every_page_asks_to_sign_in_first(anon):
    for method, path, _, _ in ROUTES:
        path = path.replace("{key}", "antispam").replace("{message_id}", "m-1")
        response = await anon.request(method, path, allow_redirects=False)
        if method == "GET":
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/login?next=")
        else:
            assert response.status == 401, path
    page = await (await anon.get("/login")).text()
    assert 'name="password"' in page and "smps user add" in page


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(server):
    client = TestClient(server)
    await client.start_server()
    try:
        response = await client.post(
            "/login",
            data={"name": "admin", "password": PASSWORD, "next": "/audit"},
            allow_redirects=False,
        )
        assert response.status == 303 and response.headers["Location"] == "/audit"
        cookie = response.headers["Set-Cookie"]
        assert cookie.startswith(f"{auth.COOKIE}=")
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain HTTP here; Secure under TLS
        assert (await client.get("/", allow_redirects=False)).status == 200
        token = await csrf_of(client, "/")
        response = await client.post("/logout", data={"csrf": token}, allow_redirects=False)
        assert response.status == 303 and response.headers["Location"] == "/login"
        client.session.cookie_jar.update_cookies({auth.COOKIE: cookie.split(";")[0].split("=")[1]})
        assert (await client.get("/", allow_redirects=False)).status == 303  # session is gone
    finally:
        await client.close()


async def test_wrong_passwords_and_unknown_users_are_refused_alike(anon):
    for name, password in (("admin", "wrong"), ("nobody", PASSWORD), ("", "")):
        response = await anon.post("/login", data={"name": name, "password": password})
        assert response.status == 401
        assert "Wrong user name or password." in await response.text()
        assert auth.COOKIE not in response.cookies


async def test_login_is_throttled_per_user_and_address_and_per_address(anon, server, clock):
    for _ in range(3):
        assert (await anon.post("/login", data={"name": "admin", "password": "x"})).status == 401
    # Even the right password is refused now from this address, without computing a hash.
    response = await anon.post("/login", data={"name": "admin", "password": PASSWORD})
    assert response.status == 429
    assert int(response.headers["Retry-After"]) > 0
    assert "Too many failed sign-ins" in await response.text()
    # The admin signs in from another address: wrong guesses elsewhere lock no one out.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as elsewhere:
        response = await elsewhere.post(
            server.make_url("/login"),
            data={"name": "admin", "password": PASSWORD},
            allow_redirects=False,
        )
        assert response.status == 303
    # Another user from the same address still may, until the address limit (5).
    response = await anon.post(
        "/login", data={"name": "viewer", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303
    for _ in range(2):
        await anon.post("/login", data={"name": "operator", "password": "x"})
    response = await anon.post("/login", data={"name": "operator", "password": PASSWORD})
    assert response.status == 429  # the address is over its limit
    clock.now += 601
    response = await anon.post(
        "/login", data={"name": "admin", "password": PASSWORD}, allow_redirects=False
    )
    assert response.status == 303


async def test_after_sign_in_only_local_paths_are_followed(anon):
    for target in ("//evil.example/x", "https://evil.example/", "javascript:alert(1)"):
        response = await anon.post(
            "/login",
            data={"name": "admin", "password": PASSWORD, "next": target},
            allow_redirects=False,
        )
        assert response.headers["Location"] == "/"


async def test_first_admin_comes_from_the_environment_never_a_default(tmp_path):
    from smps.store.db import Store

    store = await Store.open(f"sqlite:///{tmp_path}/first.db")
    try:
        assert not await auth.ensure_first_admin(store, {})
        assert not await auth.ensure_first_admin(store, {auth.ADMIN_PASSWORD_ENV: "short"})
        assert await auth.check_password(store, "admin", "") is None
        assert await auth.ensure_first_admin(store, {auth.ADMIN_PASSWORD_ENV: PASSWORD})
        assert await auth.check_password(store, "admin", PASSWORD) == auth.User("admin", "admin")
        # Only while there are no users at all.
        assert not await auth.ensure_first_admin(store, {auth.ADMIN_PASSWORD_ENV: "other-pass"})
    finally:
        await store.close()


async def test_sessions_expire_when_idle_and_at_their_age_limit():
    clock = Clock()
    sessions = auth.Sessions(idle=60, max_age=300, clock=clock)
    session = sessions.start(auth.User("a", "admin"))
    clock.now += 59
    assert sessions.get(session.id) is session
    clock.now += 61
    assert sessions.get(session.id) is None
    session = sessions.start(auth.User("a", "admin"))
    for _ in range(6):
        clock.now += 55
        sessions.get(session.id)
    assert sessions.get(session.id) is None  # older than max_age although never idle


# ------------------------------------------------------------------ pages and roles


@pytest.mark.parametrize("role", ROLES)
async def test_every_page_renders_for_every_role(server, as_role, store, node, role):
    await make_entities(store)
    node.binds = {"antispam": 2}
    client = await as_role(role)
    for method, path, _, action in ROUTES:
        if method != "GET" or path.endswith("/live") or "{message_id}" in path:
            continue  # event streams do not end; test_ui_traces.py opens a traced message
        prefix = path.split("/")[1]
        response = await client.get(path.replace("{key}", KEYS.get(prefix, "")))
        if auth.allowed(role, action):
            assert response.status == 200, (role, path, await response.text())
        else:
            assert response.status == 403, (role, path)
    nav = await (await client.get("/sessions")).text()
    assert ('href="/users"' in nav) == (role == "admin")
    dashboard = await (await client.get("/")).text()
    assert f'<span class="role">{role}</span>' in dashboard
    assert 'data-live-bind="antispam">2<' in dashboard
    accounts = await (await client.get("/accounts")).text()
    assert ("New NE account" in accounts) == (role == "admin")
    assert ("Disable<" in accounts) == (role in ("admin", "operator"))
    assert ("Delete<" in accounts) == (role == "admin")


KEYS = {
    "accounts": "antispam",
    "smsc": "smsc1",
    "routes": "all",
    "users": "viewer",
    "screening": "watch",
}
SMSC_FORM = {
    "name": "smsc2",
    "host": "127.0.0.1",
    "port": "2776",
    "system_id": "smps",
    "password": "secret",
    "bind": "transceiver",
    "binds": "1",
    "enquire_link": "30s",
    "response_timeout": "10s",
    "reconnect_initial": "1s",
    "reconnect_max": "30s",
    "default_alphabet": "gsm7",
}
ROUTE_FORM = {"name": "cn", "accounts": "antispam", "destination_prefix": "86\n+86"}


async def make_entities(store):
    """An NE account, an SMSC and a route between them, as the test set-up."""
    await entities.create(
        store, entities.KINDS["accounts"], {"system_id": "antispam", "password": "pw1"}, "test"
    )
    smsc = {"name": "smsc1", "host": "127.0.0.1", "port": 2776, "system_id": "smps"}
    await entities.create(store, entities.KINDS["smsc"], smsc, "test")
    route = {"name": "all", "accounts": ["antispam"], "smsc": ["smsc1"]}
    await entities.create(store, entities.KINDS["routes"], route, "test")
    rule = {"id": "watch", "type": "keyword", "patterns": ["lottery"], "action": "monitor"}
    await entities.create(store, entities.KINDS["screening_rules"], rule, "test")


POLICY_FORM = {
    "timeout": "1500ms",
    "on_timeout": "block",
    "on_no_ne": "allow",
    "block_status": "0x66",
    "tempfail_status": "0x64",
    "ne_block_codes": "0x66, 0x65",
    "concat_window": "60s",
    "concat_sticky_block": "on",
    "concat_hold": "",
    "on_incomplete": "judge_parts",
    "concat_max_held": "100000",
}

CHANGES = [
    ("/policy", POLICY_FORM, "policy.write"),
    ("/accounts", ACCOUNT_FORM, "accounts.write"),
    ("/accounts/fraud", {**ACCOUNT_FORM, "system_id": "fraud", "window": "8"}, "accounts.write"),
    ("/accounts/fraud/enabled", {"enabled": "false"}, "accounts.toggle"),
    ("/accounts/fraud/delete", {}, "accounts.write"),
    ("/smsc", SMSC_FORM, "smsc.write"),
    ("/smsc/smsc2", {**SMSC_FORM, "password": "", "port": "2777"}, "smsc.write"),
    ("/smsc/smsc2/delete", {}, "smsc.write"),
    ("/routes", ROUTE_FORM, "routes.write"),
    ("/routes/cn", {**ROUTE_FORM, "source_prefix": "1"}, "routes.write"),
    ("/routes/cn/delete", {}, "routes.write"),
    ("/sessions/antispam/kick", {}, "sessions.kick"),
    ("/users", {"name": "newbie", "password": PASSWORD, "role": "viewer"}, "users.write"),
    ("/users/newbie/role", {"role": "operator"}, "users.write"),
    ("/users/newbie/password", {"password": "another pass"}, "users.write"),
    ("/users/newbie/delete", {}, "users.write"),
]


@pytest.mark.parametrize("role", ROLES)
async def test_changes_are_allowed_only_to_the_roles_that_may(as_role, store, node, role):
    await entities.create(
        store, entities.KINDS["accounts"], {"system_id": "fraud", "password": "pw2"}, "test"
    )
    node.binds = {"antispam": 1}
    client = await as_role(role)
    for path, form, action in CHANGES:
        before = await audit_actions(store)
        response = await client.post(
            path, data={**form, "csrf": await csrf_of(client)}, allow_redirects=False
        )
        if auth.allowed(role, action):
            assert response.status == 303, (role, path, await response.text())
            assert len(await audit_actions(store)) == len(before) + 1
        else:
            assert response.status == 403, (role, path)
            assert "may not do this" in await response.text()
            assert await audit_actions(store) == before
    # The matrix this test relies on is the issue's: admin all, operator toggles.
    operator = [a in ("accounts.toggle", "sessions.kick") for _, _, a in CHANGES]
    assert [auth.allowed(role, a) for _, _, a in CHANGES] == {
        "admin": [True] * len(CHANGES),
        "operator": operator,
        "viewer": [False] * len(CHANGES),
    }[role]
    assert node.kicked == ([] if role == "viewer" else ["antispam"])


@pytest.mark.parametrize("role", ROLES)
async def test_operators_and_admins_may_kick_binds(as_role, store, node, role):
    await entities.create(
        store, entities.KINDS["accounts"], {"system_id": "fraud", "password": "pw2"}, "test"
    )
    node.binds = {"fraud": 2}
    client = await as_role(role)
    page = await (await client.get("/accounts")).text()
    assert ("Kick binds<" in page) == (role != "viewer")
    response = await client.post(
        "/accounts/fraud/kick", data={"csrf": await csrf_of(client)}, allow_redirects=True
    )
    if role == "viewer":
        assert response.status == 403 and node.kicked == []
    else:
        assert response.status == 200 and node.kicked == ["fraud"]
        assert "Unbound 2 binds of fraud." in await response.text()


async def test_policy_is_saved_through_the_repo_and_errors_name_the_field(as_role, store):
    admin = await as_role("admin")
    page = await (await admin.get("/policy")).text()
    assert 'value="2s"' in page and 'value="0x66, 0x65"' in page  # the defaults, as in the file
    form = {**POLICY_FORM, "timeout": "soon", "csrf": await csrf_of(admin, "/policy")}
    response = await admin.post("/policy", data=form)
    assert response.status == 422
    assert re.search(r'id="timeout-error">bad duration', await response.text())
    form = {**POLICY_FORM, "csrf": await csrf_of(admin, "/policy")}
    response = await admin.post("/policy", data=form)
    assert "Policy saved" in await response.text()
    policy = await entities.get_policy(store)
    assert (policy["timeout"], policy["on_timeout"], policy["concat_sticky_block"]) == (
        1.5,
        "block",
        True,
    )
    assert not policy["inspect_receipts"]
    assert await audit_actions(store) == [("user:admin", "create", "policy")]
    assert 'value="1.5s"' in await (await admin.get("/policy")).text()


async def test_policy_sets_how_long_messages_are_held(as_role, store):
    """The hold, what then happens to an incomplete message and the bound on held
    messages are on the form; saving it keeps them (a replaced policy document would
    otherwise fall back to the defaults)."""
    admin = await as_role("admin")
    page = await (await admin.get("/policy")).text()
    assert re.search(r'id="concat_hold" name="concat_hold" value=""', page)  # the default
    assert re.search(r'<option value="judge_parts" selected>', page)
    assert 'value="100000"' in page
    form = {**POLICY_FORM, "concat_hold": "500ms", "on_incomplete": "tempfail",
            "concat_max_held": "50", "csrf": await csrf_of(admin, "/policy")}  # fmt: skip
    assert "Policy saved" in await (await admin.post("/policy", data=form)).text()
    policy = await entities.get_policy(store)
    assert (policy["concat_hold"], policy["on_incomplete"], policy["concat_max_held"]) == (
        0.5,
        "tempfail",
        50,
    )
    page = await (await admin.get("/policy")).text()
    assert 'value="0.5s"' in page and '<option value="tempfail" selected>' in page

    form = {**form, "concat_hold": "2s", "csrf": await csrf_of(admin, "/policy")}
    refused = await admin.post("/policy", data=form)  # longer than the 1.5 s timeout
    assert refused.status == 422
    assert re.search(r'id="concat_hold-error">must be at most policy.timeout', await refused.text())
    form = {**form, "concat_hold": "", "timeout": "soon", "csrf": await csrf_of(admin, "/policy")}
    refused = await (await admin.post("/policy", data=form)).text()  # shown again as typed
    assert re.search(r'id="concat_hold" name="concat_hold" value=""', refused)
    form = {**form, "timeout": "1500ms", "csrf": await csrf_of(admin, "/policy")}
    assert "Policy saved" in await (await admin.post("/policy", data=form)).text()
    assert (await entities.get_policy(store))["concat_hold"] is None


async def test_changes_without_the_sessions_csrf_token_are_refused(as_role, server, store):
    admin = await as_role("admin")
    other = await as_role("operator")
    foreign = await csrf_of(other)
    for csrf in (None, "", "forged", foreign):
        data = dict(ACCOUNT_FORM)
        if csrf is not None:
            data["csrf"] = csrf
        response = await admin.post("/accounts", data=data, allow_redirects=False)
        assert response.status == 403
        assert "did not come from your current session" in await response.text()
    assert await entities.list_entities(store, entities.KINDS["accounts"]) == []
    assert await audit_actions(store) == []
    # The header works as well as the form field (for scripts).
    token = await csrf_of(admin)
    response = await admin.post(
        "/accounts", data=ACCOUNT_FORM, headers={"X-CSRF-Token": token}, allow_redirects=False
    )
    assert response.status == 303


async def test_account_lifecycle_is_audited_under_the_user_and_hides_the_password(as_role, store):
    admin = await as_role("admin")
    response = await admin.post("/accounts", data={**ACCOUNT_FORM, "csrf": await csrf_of(admin)})
    assert response.status == 200  # followed the redirect to the list
    page = await response.text()
    assert "NE account antispam created." in page
    stored = (await bind_accounts.load_accounts(store))[0]
    assert stored.allowed_ips == ["10.0.0.0/8", "192.168.1.7/32"] and stored.window == 32
    assert bind_accounts.verify_ne_password(stored, "pw1")

    edit = await (await admin.get("/accounts/antispam")).text()
    assert "pw1" not in edit and "argon2" not in edit and "(one is set)" in edit
    # Saving with an empty password keeps the old one.
    form = {**ACCOUNT_FORM, "password": "", "tps": "50", "csrf": await csrf_of(admin)}
    assert (await admin.post("/accounts/antispam", data=form)).status == 200
    stored = (await bind_accounts.load_accounts(store))[0]
    assert stored.tps == 50 and bind_accounts.verify_ne_password(stored, "pw1")

    toggle = {"enabled": "false", "csrf": await csrf_of(admin)}
    assert (await admin.post("/accounts/antispam/enabled", data=toggle)).status == 200
    assert not (await bind_accounts.load_accounts(store))[0].enabled
    delete = {"csrf": await csrf_of(admin)}
    assert (await admin.post("/accounts/antispam/delete", data=delete)).status == 200
    assert await entities.list_entities(store, entities.KINDS["accounts"]) == []

    assert await audit_actions(store) == [
        ("user:admin", "delete", "antispam"),
        ("user:admin", "update", "antispam"),
        ("user:admin", "update", "antispam"),
        ("user:admin", "create", "antispam"),
    ]
    audit = await (await admin.get("/audit")).text()
    assert "user:admin" in audit and "pw1" not in audit and "***" in audit


async def test_accounts_say_how_a_long_message_reaches_the_ne(as_role, store):
    """The form offers concat (message by default), the list shows it, an edit keeps it;
    an account stored before the setting existed shows the default it runs with."""
    admin = await as_role("admin")
    selected = re.compile(r'<option value="(\w+)" selected>')
    new = await (await admin.get("/accounts/new")).text()
    assert re.search(r'<select id="concat" name="concat"', new)
    assert selected.findall(new) == ["message"]
    form = {**ACCOUNT_FORM, "concat": "segments", "csrf": await csrf_of(admin)}
    listed = await (await admin.post("/accounts", data=form)).text()
    assert "NE account antispam created." in listed
    assert '<th scope="col">Long messages</th>' in listed
    assert re.search(r"<td>enforce</td>\s*<td>segments</td>", listed)
    assert (await bind_accounts.load_accounts(store))[0].concat == "segments"
    assert selected.findall(await (await admin.get("/accounts/antispam")).text()) == ["segments"]

    form = {**ACCOUNT_FORM, "password": "", "concat": "whole", "csrf": await csrf_of(admin)}
    refused = await admin.post("/accounts/antispam", data=form)
    assert refused.status == 422
    assert re.search(r'id="concat-error">[^<]*whole', await refused.text())
    form = {**ACCOUNT_FORM, "password": "", "concat": "message", "csrf": await csrf_of(admin)}
    assert (await admin.post("/accounts/antispam", data=form)).status == 200
    assert (await bind_accounts.load_accounts(store))[0].concat == "message"

    table = schema.ne_accounts
    async with store.engine.begin() as conn:  # as an SMPS before concat stored it
        settings = (await conn.execute(select(table.c.settings))).scalar()
        del settings["concat"]
        await conn.execute(table.update().values(settings=settings))
    listed = await (await admin.get("/accounts")).text()
    assert re.search(r"<td>enforce</td>\s*<td>message</td>", listed)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"window": "0"}, "window", "must be at least 1"),
        ({"window": "many"}, "window", "enter a whole number"),
        ({"system_id": ""}, "system_id", "required"),
        ({"allowed_ips": "10.0.0.0/8\n10.0.0.1/8"}, "allowed_ips", "line 2: bad IP network"),
        ({"password": "much-too-long"}, "password", "at most 8 characters"),
    ],
)
async def test_form_errors_are_shown_beside_their_field(as_role, store, change, field, message):
    admin = await as_role("admin")
    form = {**ACCOUNT_FORM, **change, "csrf": await csrf_of(admin)}
    response = await admin.post("/accounts", data=form)
    assert response.status == 422
    page = await response.text()
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]+)</p>', page)
    assert found, page
    assert message in found.group(1)
    assert f'aria-describedby="{field}-error' in page
    assert "much-too-long" not in page  # a typed password is never echoed
    assert await entities.list_entities(store, entities.KINDS["accounts"]) == []


async def test_file_managed_accounts_are_read_only(as_role, store, make_config):
    cfg = make_config(ne_accounts=[{"system_id": "filed", "password": "pw"}])
    await file_sync.sync_file_config(store, cfg)
    admin = await as_role("admin")
    page = await (await admin.get("/accounts")).text()
    assert "read-only" in page and 'action="/accounts/filed/delete"' not in page
    response = await admin.post(
        "/accounts/filed/delete", data={"csrf": await csrf_of(admin)}, allow_redirects=True
    )
    assert "managed by the configuration file" in await response.text()
    assert [
        a["system_id"] for a in await entities.list_entities(store, entities.KINDS["accounts"])
    ] == ["filed"]


# ------------------------------------------------------------------ decisions, live


async def fill_decisions(store, tmp_path, count: int) -> None:
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, batch_size=100)
    await writer.start()
    base = time.time() - 600
    for i in range(count):
        verdict = "allow" if i % 3 == 0 else "block"
        rule = "loan-spam" if i % 10 == 1 else None  # the screening rule that decided
        writer.put(make_decision(i, at=base + i, verdict=verdict, rule_id=rule))
    await writer.close()


async def test_decisions_search_pages_and_exports(as_role, store, tmp_path):
    await fill_decisions(store, tmp_path, 120)
    viewer = await as_role("viewer")
    page = await (await viewer.get("/decisions")).text()
    assert page.count('<span class="badge v-') == 50
    older = re.search(r'href="(/decisions\?cursor=[^"]+)" rel="next"', page).group(1)
    second = await (await viewer.get(older.replace("&amp;", "&"))).text()
    assert f"86139{69:08d}" in second and f"86139{70:08d}" not in second

    # Empty fields of the filter form mean "any".
    query = "/decisions?src=&dst=&verdict=allow&reason=&account=&since=&until="
    filtered = await (await viewer.get(query)).text()
    assert filtered.count('<span class="badge v-allow">') == 40
    assert "v-block" not in filtered
    assert 'href="/decisions.csv?verdict=allow"' in filtered

    response = await viewer.get("/decisions.csv?verdict=allow&src=")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/csv")
    lines = (await response.text()).strip().splitlines()
    assert len(lines) == 41 and lines[0].startswith("id,")

    response = await viewer.get("/decisions?since=yesterday")
    assert response.status == 422
    assert re.search(r'id="f-since-error">expected ISO 8601', await response.text())

    empty = await (await viewer.get("/decisions?src=000")).text()
    assert "No decisions match these filters" in empty


async def test_decisions_show_the_screening_rule_that_decided(as_role, store, tmp_path):
    await fill_decisions(store, tmp_path, 30)
    viewer = await as_role("viewer")
    every = await (await viewer.get("/decisions")).text()
    assert every.count('<span class="badge v-') == 30
    assert every.count('<span class="hint">rule loan-spam</span>') == 3  # only where one did
    by_rule = await (await viewer.get("/decisions?rule=loan-spam")).text()
    assert by_rule.count('<span class="badge v-') == 3
    assert 'href="/decisions.csv?rule=loan-spam"' in by_rule


async def test_decisions_explain_a_sticky_block(as_role, store, tmp_path):
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put(make_decision(1, reason="block", deciding_account="antispam"))
    writer.put(make_decision(2, reason="sticky", deciding_account=None))
    await writer.close()
    page = await (await (await as_role("viewer")).get("/decisions")).text()
    assert page.count("another part of this long message was blocked") == 1


async def test_decisions_show_a_whole_message_as_one_row(as_role, store, tmp_path):
    """A long message judged whole is "message of N parts", its parts' SMSC sequence
    numbers in the tooltip; a part judged alone stays "part i/N"."""
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    writer.put(make_decision(1, concat_ref=7, concat_total=3, parts=[41, 42, 43]))
    writer.put(make_decision(2, concat_ref=8, concat_total=3, parts=[51, 0, 53]))
    writer.put(make_decision(3, concat_ref=9, concat_part=2, concat_total=4))
    await writer.close()
    page = await (await (await as_role("viewer")).get("/decisions")).text()
    hints = re.findall(
        r'<span class="hint"(?: title="([^"]*)")?>((?:message|part) [^<]*)</span>', page
    )
    assert hints == [
        ("", "part 2/4"),
        ("SMSC sequence numbers: part 1 51, part 2 never came, part 3 53",
         "message of 3 parts, 1 missing"),
        ("SMSC sequence numbers: part 1 41, part 2 42, part 3 43", "message of 3 parts"),
    ]  # fmt: skip


async def test_decisions_link_each_fingerprint_to_its_decisions(as_role, store, tmp_path):
    """A row with a text fingerprint shows it as a link to the decisions filtered by it
    (none for a message without text); the form filters and exports by it, and refuses
    what is no fingerprint beside its field."""
    wave, other = "5eed000000c0ffee", "00000000deadbeef"
    writer = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01)
    await writer.start()
    for i, fingerprint in enumerate([wave, None, wave, other]):
        writer.put(make_decision(i, fingerprint=fingerprint))
    await writer.close()
    viewer = await as_role("viewer")
    page = await (await viewer.get("/decisions")).text()
    links = re.findall(r'<a class="fingerprint" href="([^"]*)"[^>]*>([^<]*)</a>', page)
    assert links == [
        (f"/decisions?fingerprint={other}", other),
        (f"/decisions?fingerprint={wave}", wave),
        (f"/decisions?fingerprint={wave}", wave),
    ]
    assert page.count('<span class="badge v-') == 4
    by_wave = await (await viewer.get(links[1][0])).text()
    assert by_wave.count('<span class="badge v-') == 2
    assert f'name="fingerprint" type="text" value="{wave}"' in by_wave
    assert f'href="/decisions.csv?fingerprint={wave}"' in by_wave
    exported = await (await viewer.get(f"/decisions.csv?fingerprint={wave}")).text()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [(row["sequence"], row["fingerprint"]) for row in rows] == [("2", wave), ("0", wave)]

    response = await viewer.get("/decisions?fingerprint=c0ffee")
    assert response.status == 422
    assert re.search(
        r'id="f-fingerprint-error">expected a fingerprint: 16 lowercase hex digits',
        await response.text(),
    )
    assert (await viewer.get("/decisions.csv?fingerprint=c0ffee")).status == 422


async def test_live_stream_sends_the_node_status(as_role, node):
    node.binds = {"antispam": 1}
    client = await as_role("viewer")
    response = await client.get("/live")
    assert response.headers["Content-Type"] == "text/event-stream"
    assert await response.content.readuntil(b"\n\n") == b"retry: 5000\n: connected\n\n"
    line = await response.content.readline()
    assert line.startswith(b"data: ")
    live = msgspec.json.decode(line[6:])
    assert live["ne_binds"] == {"antispam": 1}
    assert live["smsc"] == {"smsc1": "1/2"} and live["workers"] == 2
    assert live["mix"] == {"allow": "90.0%", "block": "10.0%", "tempfail": "0.0%"}
    node.binds = {"antispam": 2, "fraud": 1}
    node.received = 50
    await response.content.readline()
    live = msgspec.json.decode((await response.content.readline())[6:])
    assert live["ne_binds"] == {"antispam": 2, "fraud": 1}
    assert live["rate"] != "–"
    response.close()


def test_verdict_chart_stacks_the_last_hour_per_minute():
    now_us = 1_750_000_000 * 1_000_000
    minute = now_us // 60_000_000

    def at(m):
        return common.iso(m * 60_000_000)

    counts = [
        {"minute": at(minute), "account": "", "verdict": "allow", "count": 90},
        {"minute": at(minute), "account": "", "verdict": "block", "count": 30},
        {"minute": at(minute), "account": "antispam", "verdict": "block", "count": 30},
        {"minute": at(minute - 90), "account": "", "verdict": "allow", "count": 5},  # too old
    ]
    chart = verdict_chart(counts, now_us)
    assert chart["totals"] == {"allow": 90, "block": 30, "tempfail": 0}
    allow, block = chart["bars"]
    assert (allow["verdict"], block["verdict"]) == ("allow", "block")
    assert allow["x"] == block["x"] and block["y"] + block["h"] == pytest.approx(allow["y"])
    assert chart["ticks"][-1]["label"] == "200"  # 120 rounds up to a 1-2-5 step
    assert allow["h"] == pytest.approx((chart["base"] - chart["ticks"][-1]["y"]) * 90 / 200)
    assert verdict_chart([], now_us)["empty"]


# ------------------------------------------------------------------ web.tls


async def test_web_tls_serves_https_and_the_session_cookie_is_secure(store, node, certificate):
    cert, key = certificate
    await admin_users.add_user(store, "admin", PASSWORD, "admin", actor="test")
    app = web.Application()
    add_ui_routes(app, store, node)
    http = HttpServer(app, tls=TlsServerConfig(cert=cert, key=key))
    port = await http.start("127.0.0.1", 0)
    trusted = ssl.create_default_context(cafile=cert)
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
            base = f"https://127.0.0.1:{port}"
            response = await session.post(
                f"{base}/login",
                data={"name": "admin", "password": PASSWORD},
                ssl=trusted,
                allow_redirects=False,
            )
            assert response.status == 303
            cookie = response.headers["Set-Cookie"]
            assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
            page = await session.get(f"{base}/", ssl=trusted)
            assert page.status == 200 and "Dashboard" in await page.text()
            assert "max-age=" in page.headers["Strict-Transport-Security"]
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await session.get(f"{base}/login")  # not trusted without the CA
    finally:
        await http.close()


async def test_web_tls_with_an_unreadable_key_is_a_config_error(store, node, certificate, tmp_path):
    cert, _ = certificate
    http = HttpServer(web.Application(), tls=TlsServerConfig(cert=cert, key=str(tmp_path / "no")))
    with pytest.raises(ConfigError, match=r"web\.tls: cannot load the certificate or key"):
        await http.start("127.0.0.1", 0)
    await http.close()


# ------------------------------------------------------------------ SMSC, routes, sessions, users


async def test_smsc_connections_show_live_state_errors_and_never_the_password(as_role, store):
    admin = await as_role("admin")
    page = await (await admin.get("/smsc")).text()
    assert "No SMSC connections yet" in page and 'href="/smsc/new"' in page
    form = {**SMSC_FORM, "port": "many", "csrf": await csrf_of(admin)}
    response = await admin.post("/smsc", data=form)
    assert response.status == 422
    page = await response.text()
    assert re.search(r'id="port-error">enter a whole number|id="port-error">Expected `int`', page)
    assert "secret" not in page  # a typed password is never echoed
    form = {**SMSC_FORM, "name": "smsc1", "reconnect_max": "0.5s", "csrf": await csrf_of(admin)}
    response = await admin.post("/smsc", data=form)
    assert re.search(
        r'id="reconnect_max-error">must be at least reconnect.initial', await response.text()
    )
    form = {
        **SMSC_FORM,
        "name": "smsc1",
        "tls": "on",
        "tls_cert": "c.pem",
        "csrf": await csrf_of(admin),
    }
    response = await admin.post("/smsc", data=form)
    assert 'id="tls_key-error">cert and key go together' in await response.text()

    form = {**SMSC_FORM, "name": "smsc1", "csrf": await csrf_of(admin)}
    response = await admin.post("/smsc", data=form)
    assert "SMSC connection smsc1 created." in await response.text()
    page = await (await admin.get("/smsc")).text()
    assert "1/2 up" in page  # the node's live state for smsc1
    edit = await (await admin.get("/smsc/smsc1")).text()
    assert "secret" not in edit and "(one is set)" in edit and 'value="30s"' in edit
    form = {**SMSC_FORM, "name": "x", "password": "", "port": "2999", "csrf": await csrf_of(admin)}
    assert (await admin.post("/smsc/smsc1", data=form)).status == 200
    stored = await entities.get_entity(store, entities.KINDS["smsc"], "smsc1")
    assert stored["port"] == 2999 and stored["name"] == "smsc1" and stored["password_set"]
    audit = await (await admin.get("/audit")).text()
    assert "secret" not in audit and "***" in audit


async def test_file_managed_smsc_and_routes_are_read_only(as_role, store, make_config):
    cfg = make_config(
        ne_accounts=[{"system_id": "filed", "password": "pw"}],
        smsc=[{"name": "filed", "host": "127.0.0.1", "port": 2776, "system_id": "s"}],
        routes=[{"name": "filed", "accounts": ["filed"]}],
    )
    await file_sync.sync_file_config(store, cfg)
    admin = await as_role("admin")
    for kind in ("smsc", "routes"):
        page = await (await admin.get(f"/{kind}")).text()
        assert "read-only" in page and f'action="/{kind}/filed/delete"' not in page
        form = await (await admin.get(f"/{kind}/filed")).text()
        assert "defined in the configuration file" in form
        response = await admin.post(f"/{kind}/filed/delete", data={"csrf": await csrf_of(admin)})
        assert "managed by the configuration file" in await response.text()


async def test_routes_name_existing_accounts_and_errors_sit_at_the_field(as_role, store):
    admin = await as_role("admin")
    page = await (await admin.get("/routes")).text()
    assert "No routes: every NE account gets a copy of every message" in page
    form = await (await admin.get("/routes/new")).text()
    assert 'href="/accounts/new">create one</a>' in form  # no accounts yet
    await entities.create(
        store, entities.KINDS["accounts"], {"system_id": "antispam", "password": "pw1"}, "test"
    )
    token = await csrf_of(admin)
    response = await admin.post("/routes", data={"name": "cn", "csrf": token})
    assert response.status == 422
    assert 'id="accounts-error">enter at least one' in await response.text()
    response = await admin.post(
        "/routes", data={**ROUTE_FORM, "data_coding": "0\n300", "csrf": token}
    )
    assert 'id="data_coding-error">line 2: must be at most 255' in await response.text()
    response = await admin.post("/routes", data={**ROUTE_FORM, "csrf": token})
    assert "Route cn created" in await response.text()
    route = await entities.get_entity(store, entities.KINDS["routes"], "cn")
    assert route["accounts"] == ["antispam"] and route["destination_prefix"] == ["86", "+86"]
    edit = await (await admin.get("/routes/cn")).text()
    assert 'value="antispam" checked' in edit


@pytest.mark.parametrize("role", ROLES)
async def test_sessions_list_live_binds_and_a_kick_is_audited(as_role, store, node, role):
    await make_entities(store)
    node.binds = {"antispam": 2, "gone": 1}
    client = await as_role(role)
    page = await (await client.get("/sessions")).text()
    assert "2 / 4" in page and "gone" in page and "removed" in page and "1/2" in page
    assert ("Kick<" in page) == (role != "viewer")
    response = await client.post("/sessions/antispam/kick", data={"csrf": await csrf_of(client)})
    if role == "viewer":
        assert response.status == 403 and node.kicked == []
        assert await audit_actions(store) == []
    else:
        assert "Unbound 2 binds of antispam." in await response.text()
        assert await audit_actions(store) == [(f"user:{role}", "kick", "antispam")]
        assert "a-kick" in await (await client.get("/audit")).text()


async def test_sessions_empty_state_says_what_to_do(as_role):
    admin = await as_role("admin")
    page = await (await admin.get("/sessions")).text()
    assert 'No NE accounts and no NE binds. <a href="/accounts/new">' in page


async def test_the_user_forms_offer_every_role(as_role):
    """The forms' role labels live in the UI; a role added to the store must show up."""
    admin = await as_role("admin")
    for path in ("/users/new", "/users/viewer"):
        page = await (await admin.get(path)).text()
        offered = re.findall(r'type="radio" name="role" value="(\w+)"', page)
        assert sorted(offered) == sorted(ALL_ROLES), path


async def test_users_are_argon2_hashed_audited_and_the_last_admin_stays(as_role, store):
    admin = await as_role("admin")
    token = await csrf_of(admin)
    response = await admin.post(
        "/users", data={"name": "bob", "password": "short", "role": "admin", "csrf": token}
    )
    assert response.status == 422
    page = await response.text()
    assert 'id="password-error">at least 8 characters' in page and "short" not in page
    response = await admin.post(
        "/users", data={"name": "bob", "password": PASSWORD, "role": "boss", "csrf": token}
    )
    assert 'id="role-error">role must be one of' in await response.text()
    response = await admin.post(
        "/users", data={"name": "viewer", "password": PASSWORD, "role": "viewer", "csrf": token}
    )
    assert response.status == 409 and "already exists" in await response.text()
    response = await admin.post(
        "/users", data={"name": "bob", "password": PASSWORD, "role": "operator", "csrf": token}
    )
    assert "User bob added as operator." in await response.text()
    async with store.engine.connect() as conn:
        hashed = (
            await conn.execute(
                select(schema.users.c.password_hash).where(schema.users.c.name == "bob")
            )
        ).scalar_one()
    assert hashed.startswith("$argon2id$") and PASSWORD not in hashed

    bob = await as_role("bob")
    # A role change ends bob's sessions; he signs in again with the new role.
    response = await admin.post("/users/bob/role", data={"role": "viewer", "csrf": token})
    assert "bob is now viewer" in await response.text()
    assert (await bob.get("/", allow_redirects=False)).status == 303
    response = await admin.post(
        "/users/bob/password", data={"password": "new secret!", "csrf": token}
    )
    assert "Password of bob reset" in await response.text()
    assert await auth.check_password(store, "bob", "new secret!") == auth.User("bob", "viewer")
    assert await auth.check_password(store, "bob", PASSWORD) is None

    # Not yourself, and never the last admin.
    response = await admin.post("/users/admin/delete", data={"csrf": token})
    assert "You cannot delete yourself" in await response.text()
    response = await admin.post("/users/admin/role", data={"role": "viewer", "csrf": token})
    assert response.status == 409 and "change the role of yourself" in await response.text()
    with pytest.raises(common.Conflict, match="last admin"):
        await admin_users.delete_user(store, "admin", actor="test")
    with pytest.raises(common.Conflict, match="last admin"):
        await admin_users.set_user_role(store, "admin", "operator", actor="test")
    response = await admin.post("/users/bob/delete", data={"csrf": token})
    assert "User bob deleted." in await response.text()
    assert [u["name"] for u in await admin_users.list_users(store)] == [
        "admin",
        "operator",
        "viewer",
    ]
    assert await audit_actions(store) == [
        ("user:admin", "delete", "bob"),
        ("user:admin", "update", "bob"),
        ("user:admin", "update", "bob"),
        ("user:admin", "create", "bob"),
    ]
    audit = await (await admin.get("/audit")).text()
    assert PASSWORD not in audit and "new secret!" not in audit and "argon2" not in audit


async def test_new_pages_refuse_a_change_without_the_csrf_token(as_role, store, node):
    admin = await as_role("admin")
    node.binds = {"antispam": 1}
    for path, form in (
        ("/users", {"name": "eve", "password": PASSWORD, "role": "admin"}),
        ("/smsc", SMSC_FORM),
        ("/sessions/antispam/kick", {}),
    ):
        response = await admin.post(path, data={**form, "csrf": "forged"})
        assert (
            response.status == 403
            and "did not come from your current session" in await response.text()
        )
    assert node.kicked == [] and await audit_actions(store) == []


async def test_users_page_disables_users_and_revokes_tokens_audited(as_role, store):
    admin = await as_role("admin")
    token = await csrf_of(admin)
    viewer = await as_role("viewer")
    bearer = await tokens.create_token(store, "dashboards", "viewer")
    (listed,) = await tokens.list_tokens(store)
    page = await (await admin.get("/users")).text()
    assert "dashboards" in page and f'action="/tokens/{listed["id"]}/revoke"' in page
    assert bearer not in page

    response = await admin.post("/users/viewer/enabled", data={"enabled": "0", "csrf": token})
    assert "User viewer disabled." in await response.text()
    assert (await viewer.get("/", allow_redirects=False)).status == 303  # signed out at once
    assert await auth.check_password(store, "viewer", PASSWORD) is None
    response = await admin.post("/users/admin/enabled", data={"enabled": "0", "csrf": token})
    assert "You cannot disable or enable yourself" in await response.text()
    response = await admin.post("/users/viewer/enabled", data={"enabled": "1", "csrf": token})
    assert "User viewer enabled." in await response.text()

    response = await admin.post(f"/tokens/{listed['id']}/revoke", data={"csrf": token})
    assert "Token dashboards revoked." in await response.text()
    assert await tokens.authenticate(store, bearer) is None
    operator = await as_role("operator")
    forged = {"csrf": await csrf_of(operator)}  # the operator's own session, the wrong role
    assert (await operator.post(f"/tokens/{listed['id']}/revoke", data=forged)).status == 403
    assert await audit_actions(store) == [
        ("user:admin", "update", str(listed["id"])),
        ("user:admin", "update", "viewer"),
        ("user:admin", "update", "viewer"),
    ]
