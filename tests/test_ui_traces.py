# ruff: noqa: F811  (pytest fixtures imported from tests.store_db and tests.test_ui)
"""Admin UI trace pages on SQLite and MariaDB: every page for every role, rule changes
only by operators and admins with the session's CSRF token and an audit entry each,
form errors beside their field, the message list (filters, paging, live stream), and
the ladder of a message traced through the real proxy."""

import asyncio
import contextlib
import re

import msgspec
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from smps.config import TraceConfig
from smps.proxy.trace_store import MemoryTraceSink
from smps.proxy.tracer import Tracer
from smps.runtime.plane import TraceTee
from smps.store import admin_users, entities, file_sync, trace_queries, tracer_rules
from smps.store.writer import DecisionWriter
from smps.web import auth
from smps.web.pages import trace_rules, traces
from smps.web.ui import TRACE_SETTINGS, add_ui_routes
from tests.store_db import database_url, store  # noqa: F401
from tests.test_proxy import ACCOUNTS, BLOCK, ManualClock, block, hold, proxy, until
from tests.test_trace_api import Clock, run_message, written
from tests.test_ui import PASSWORD, ROLES, FakeNode, anon, as_role, audit_actions  # noqa: F401

SETTINGS = TraceConfig(country_code="86", decode_content=True)
RULE_FORM = {"number": "+8613800138000", "side": "both", "expiry": "1h", "content": "default"}


@pytest.fixture
async def server(store):
    """The admin UI with the node's trace settings (country code 86, content decoded)."""
    app = web.Application()
    add_ui_routes(app, store, FakeNode())
    app[TRACE_SETTINGS] = lambda: SETTINGS
    for role in ROLES:
        await admin_users.add_user(store, role, PASSWORD, role, actor="test")
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    yield test_server
    await test_server.close()


@pytest.fixture
async def writer(store, tmp_path):
    started = DecisionWriter(store, tmp_path / "spool", flush_interval=0.01, batch_size=50)
    await started.start()
    yield started
    await started.close()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def tracer(writer, clock):
    """The real tracer writing through the real writer, tracing 8613* (content off)."""
    rule = entities.validate(entities.KINDS["trace_rules"], {"number": "8613*"})
    return Tracer(TraceTee(MemoryTraceSink(), writer), [rule], country_code="86", clock=clock)


async def csrf_of(client, path="/traces/rules") -> str:
    page = await (await client.get(path)).text()
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def traced(tracer, clock, writer, count=1, source=b"13800138000", **kwargs) -> list[str]:
    """``count`` messages through the tracer, in the database; their ids, oldest first."""
    before = writer.written
    ids = [run_message(tracer, clock, source, b"10086", **kwargs) for _ in range(count)]
    await written(writer, before + 6 * count)
    return ids


def listed(page: str) -> list[str]:
    """The message ids in a trace list page, in order."""
    return re.findall(r'<td class="nowrap"><a href="/traces/([^"]+)">', page)


async def rules(store) -> list[str]:
    return [rule.number for rule in await tracer_rules.load_trace_rules(store)]


# -------------------------------------------------------------------- pages and roles


async def test_trace_pages_ask_to_sign_in_first(anon):
    for method, path, _, _ in trace_rules.ROUTES + traces.ROUTES:
        response = await anon.request(
            method, path.replace("{message_id}", "m-1"), allow_redirects=False
        )
        if method == "GET":
            assert response.status == 303, path
            assert response.headers["Location"].startswith("/login?next=/traces")
        else:
            assert response.status == 401, path


@pytest.mark.parametrize("role", ROLES)
async def test_every_trace_page_renders_for_every_role(as_role, store, tracer, clock, writer, role):
    await entities.create(store, entities.KINDS["trace_rules"], {"number": "8613*"}, "test")
    (message,) = await traced(tracer, clock, writer)
    client = await as_role(role)
    for path in ("/traces", "/traces/rules", f"/traces/{message}"):
        response = await client.get(path)
        assert response.status == 200, (role, path, await response.text())
        assert 'href="/traces" aria-current="page"' in await response.text()
    page = await (await client.get("/traces/rules")).text()
    writes = role in ("admin", "operator")
    assert ("Add a trace rule" in page) == writes
    assert (">Remove<" in page) == writes
    assert (await client.get("/traces/no-such-message")).status == 404


@pytest.mark.parametrize("role", ROLES)
async def test_rule_changes_are_allowed_to_operators_and_admins_and_audited(as_role, store, role):
    client = await as_role(role)
    response = await client.post(
        "/traces/rules", data={**RULE_FORM, "csrf": await csrf_of(client)}, allow_redirects=False
    )
    if role == "viewer":
        assert response.status == 403
        assert "may not do this" in await response.text()
        await entities.create(
            store, entities.KINDS["trace_rules"], {"number": "+8613800138000"}, "test"
        )
    else:
        assert response.status == 303 and response.headers["Location"] == "/traces/rules"
        assert await audit_actions(store) == [(f"user:{role}", "create", "+8613800138000")]
    assert await rules(store) == ["+8613800138000"]
    before = await audit_actions(store)
    response = await client.post(
        "/traces/rules/delete",
        data={"number": "+8613800138000", "csrf": await csrf_of(client)},
        allow_redirects=False,
    )
    if role == "viewer":
        assert response.status == 403
        assert await rules(store) == ["+8613800138000"] and await audit_actions(store) == before
    else:
        assert response.status == 303
        assert await rules(store) == []
        assert (await audit_actions(store))[0] == (f"user:{role}", "delete", "+8613800138000")
    assert auth.allowed(role, "traces.write") == (role != "viewer")


async def test_rule_changes_without_the_sessions_csrf_token_are_refused(as_role, store):
    operator = await as_role("operator")
    foreign = await csrf_of(await as_role("admin"))
    for csrf in (None, "", "forged", foreign):
        data = dict(RULE_FORM) if csrf is None else {**RULE_FORM, "csrf": csrf}
        response = await operator.post("/traces/rules", data=data, allow_redirects=False)
        assert response.status == 403
        assert "did not come from your current session" in await response.text()
    await entities.create(store, entities.KINDS["trace_rules"], {"number": "8613*"}, "test")
    response = await operator.post(
        "/traces/rules/delete", data={"number": "8613*", "csrf": foreign}, allow_redirects=False
    )
    assert response.status == 403
    assert await rules(store) == ["8613*"] and await audit_actions(store) == []


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"number": "call me"}, "number", "matching regex"),
        ({"number": ""}, "number", "matching regex"),
        ({"expiry": "custom", "custom": ""}, "custom", "enter the date and time"),
        ({"expiry": "custom", "custom": "tomorrow"}, "custom", "bad timestamp"),
        ({"side": "upwards"}, "side", "not one of the choices"),
    ],
)
async def test_rule_form_errors_are_shown_beside_their_field(
    as_role, store, change, field, message
):
    admin = await as_role("admin")
    response = await admin.post(
        "/traces/rules", data={**RULE_FORM, **change, "csrf": await csrf_of(admin)}
    )
    assert response.status == 422
    page = await response.text()
    found = re.search(rf'<p class="field-error" id="{field}-error">([^<]+)</p>', page)
    assert found and message in found.group(1), page
    assert f'aria-describedby="{field}-error' in page
    assert await rules(store) == []


async def test_duplicate_rules_are_refused_at_the_number(as_role, store):
    admin = await as_role("admin")
    await entities.create(
        store, entities.KINDS["trace_rules"], {"number": "+8613800138000"}, "test"
    )
    response = await admin.post("/traces/rules", data={**RULE_FORM, "csrf": await csrf_of(admin)})
    assert response.status == 409
    assert re.search(r'id="number-error">[^<]*already exists', await response.text())


async def test_rules_list_normalisation_content_expiry_and_creator(as_role, store, make_config):
    await file_sync.sync_file_config(store, make_config(trace={"rules": [{"number": "10086"}]}))
    admin = await as_role("admin")
    forms = [
        {"number": "013800138000", "side": "sender", "expiry": "never", "content": "hide"},
        {"number": "+4478*", "side": "receiver", "expiry": "24h", "content": "allow"},
        {"number": "8613900139000", "side": "both", "expiry": "custom",
         "custom": "2020-01-01T00:00", "content": "default"},
    ]  # fmt: skip
    for form in forms:
        response = await admin.post("/traces/rules", data={**form, "csrf": await csrf_of(admin)})
        assert response.status == 200
    assert "its end time has passed" in await response.text()  # the 2020 one
    page = await (await admin.get("/traces/rules")).text()
    rows = {
        m.group(1): m.group(0)
        for m in re.finditer(r'<tr[^>]*>\s*<th scope="row">([^<\s]+).*?</tr>', page, re.S)
    }
    hidden, prefix, expired, filed = (
        rows["013800138000"], rows["+4478*"], rows["8613900139000"], rows["10086"]
    )  # fmt: skip
    assert "<code>8613800138000</code>" in hidden and ">hidden<" in hidden
    assert "this rule hides content" in hidden and "never" in hidden
    assert "<code>4478…</code>" in prefix and ">decoded<" in prefix and "in 23 h" in prefix
    assert ">expired<" in expired and "2020-01-01 00:00:00" in expired
    assert "user:admin" in hidden and "config-file" in filed and "read-only" in filed
    assert 'value="10086"' not in page  # no remove form for the file's rule
    assert "country code <strong>86</strong>" in page
    stored = {rule.number: rule for rule in await tracer_rules.load_trace_rules(store)}
    assert stored["013800138000"].decode_content is False and stored["+4478*"].side == "receiver"
    assert stored["8613900139000"].expires.year == 2020 and stored["013800138000"].expires is None


# ---------------------------------------------------------------------- message list


async def test_message_list_pages_filters_and_links_each_ladder(
    as_role, store, tracer, clock, writer
):
    older = await traced(tracer, clock, writer, count=52)
    other = await traced(tracer, clock, writer, source=b"8613900139000")
    viewer = await as_role("viewer")
    page = await (await viewer.get("/traces")).text()
    links = listed(page)
    assert links == [*other, *older[::-1]][:50]  # newest first
    assert "data-live-url=" in page
    after = re.search(r'/traces\?cursor=[^"]+', page).group(0).replace("&amp;", "&")
    second = await (await viewer.get(after)).text()
    assert listed(second) == older[2::-1]  # 53 in all
    assert "data-live-url=" not in second and "Not live" in second

    for written_as in ("8613900139000", "+8613900139000", "013900139000", "86139*"):
        page = await (await viewer.get("/traces", params={"number": written_as})).text()
        assert listed(page) == other, written_as
    assert ">block</span>" in page and "0x66 " in page
    response = await viewer.get("/traces", params={"number": "*"})
    assert response.status == 422
    assert 'id="f-number-error">expected a number' in await response.text()
    page = await (await viewer.get("/traces", params={"number": "8613700000000"})).text()
    assert "No traced messages match these filters" in page


async def test_live_stream_sends_rows_newer_than_the_page(as_role, tracer, clock, writer):
    (first,) = await traced(tracer, clock, writer)
    viewer = await as_role("viewer")
    page = await (await viewer.get("/traces")).text()
    live = re.search(r'data-live-url="([^"]+)"', page).group(1).replace("&amp;", "&")
    response = await viewer.get(live)
    assert response.headers["Content-Type"] == "text/event-stream"
    (second,) = await traced(tracer, clock, writer)
    async with asyncio.timeout(10):
        while not (line := await response.content.readline()).startswith(b"data: "):
            pass
    update = msgspec.json.decode(line[6:])
    assert update["count"] == 1
    assert f'href="/traces/{second}"' in update["html"] and first not in update["html"]
    response.close()


# --------------------------------------------------------------------------- ladder


@contextlib.asynccontextmanager
async def operator_ui(node):
    """The admin UI over a running node's store, signed in as an operator."""
    await admin_users.add_user(node.store, "ops", PASSWORD, "operator", actor="test")
    app = web.Application()
    add_ui_routes(app, node.store, FakeNode())
    app[TRACE_SETTINGS] = lambda: node.config.trace
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        await client.post("/login", data={"name": "ops", "password": PASSWORD})
        yield client


async def test_ladder_of_a_message_through_the_real_proxy(make_config, tmp_path):
    """Three NEs: fraud blocks, antispam answers late, audit never answers."""
    trace = {"decode_content": True, "country_code": "86", "rules": []}
    clock = ManualClock()
    async with proxy(
        make_config, trace=trace, clock=clock, state_dir=tmp_path,
        database={"flush_interval": "20ms"},
    ) as (sim, node, add_ne):  # fmt: skip
        slow = await add_ne("antispam", "pw1", hold)
        fraud = await add_ne("fraud", "pw2", hold)
        silent = await add_ne("audit", "pw3", hold)
        async with operator_ui(node) as client:
            form = {**RULE_FORM, "number": "13800138000", "csrf": await csrf_of(client)}
            assert (await client.post("/traces/rules", data=form)).status == 200
            await until(lambda: node.tracer.rules)  # applied live
            sim.send_deliver(source_addr=b"+8613800138000", short_message=b"Hello Bob")
            await until(lambda: all(len(ne.held) == 1 for ne in (slow, fraud, silent)))
            session, pdu = fraud.held.pop()
            session.respond(pdu, BLOCK)
            await until(lambda: len(sim.answers) == 1)
            session, pdu = slow.held.pop()
            session.respond(pdu, 0)  # after the final answer: late
            await until(lambda: node.dispatcher.stats.late_answers == 1)
            clock.advance(2.0)  # audit's copy times out
            async with asyncio.timeout(10):  # all 8 events in the database
                while [t["events"] for t in await trace_queries.query_traces(
                    node.store, trace_queries.TraceQuery(), limit=2
                )] != [8]:  # fmt: skip
                    await asyncio.sleep(0.02)

            listing = await (await client.get("/traces")).text()
            (message,) = listed(listing)
            page = await (await client.get(f"/traces/{message}")).text()
    head = re.search(r'<div class="ladder-head".*?</div>', page, re.S).group(0)
    lanes = re.findall(r'<span class="lane[^"]*">([^<]+)</span>', head)
    assert lanes == ["SMSC smsc1", "SMPS", "antispam", "fraud", "audit"]
    assert 'class="ladder lanes-5"' in page
    steps = re.findall(r'<li class="step ([^"]+)" data-kind="([^"]+)">(.*?)</li>', page, re.S)
    kinds = [kind for _, kind, _ in steps]
    assert kinds[0] == "received" and sorted(kinds[1:4]) == ["copy_sent"] * 3
    assert kinds.index("final") < kinds.index("timeout")
    by_kind = {}
    for classes, kind, body in steps:
        by_kind.setdefault(kind, []).append((classes, body))
    (final_classes, final), = by_kind["final"]  # fmt: skip
    assert "v-block" in final_classes and "0x66 " in final and "gs-3 ge-5" in final
    assert "SMPS → SMSC smsc1" in final
    answers = {re.search(r"(\w+) → SMPS", body).group(1): body for _, body in by_kind["answered"]}
    assert "0x66 " in answers["fraud"] and "block in " in answers["fraud"]
    assert ">late<" in answers["antispam"] and "allow in " in answers["antispam"]
    (_, timeout), = by_kind["timeout"]  # fmt: skip
    assert "audit → SMPS" in timeout and "dashed" in timeout and "gs-5 ge-11" in timeout
    rows = dict(re.findall(r'<tr data-ne="(\w+)">(.*?)</tr>', page, re.S))
    assert list(rows) == ["antispam", "fraud", "audit"]
    assert ">block</span> 0x66 " in rows["fraud"] and ">late<" in rows["antispam"]
    assert "no answer" in rows["audit"] and "timeout" in rows["audit"]
    assert '<blockquote class="sms-text">Hello Bob</blockquote>' in page  # content allowed


async def test_ladder_shows_the_screening_rule_that_blocked(make_config, tmp_path):
    """A traced message a screening rule blocks: received, screened, final; no copy."""
    trace = {"decode_content": True, "country_code": "86",
             "rules": [{"number": "8613800138000"}]}  # fmt: skip
    screening = {"enabled": True, "rules": [
        {"id": "watch", "type": "keyword", "patterns": ["hello"], "action": "monitor"},
        {"id": "spam", "type": "keyword", "patterns": ["free iphone"]},
    ]}  # fmt: skip
    async with proxy(
        make_config, trace=trace, screening=screening, state_dir=tmp_path,
        database={"flush_interval": "20ms"},
    ) as (sim, node, add_ne):  # fmt: skip
        ne = await add_ne("antispam", "pw1", hold)
        async with operator_ui(node) as client:
            sim.send_deliver(source_addr=b"8613800138000", short_message=b"hello, free iphone")
            await until(lambda: len(sim.answers) == 1)
            async with asyncio.timeout(10):
                while [t["events"] for t in await trace_queries.query_traces(
                    node.store, trace_queries.TraceQuery(), limit=2
                )] != [3]:  # fmt: skip
                    await asyncio.sleep(0.02)
            (message,) = listed(await (await client.get("/traces")).text())
            page = await (await client.get(f"/traces/{message}")).text()
        assert ne.received == []
    steps = re.findall(r'<li class="step ([^"]+)" data-kind="([^"]+)">(.*?)</li>', page, re.S)
    assert [kind for _, kind, _ in steps] == ["received", "screened", "final"]
    screened = steps[1][2]
    assert "screening: block" in screened and "rule spam (also fired: watch)" in screened
    assert "reason rule" in steps[2][2]


async def test_ladder_of_a_long_message_shows_its_parts_the_hold_and_each_answer(
    make_config, tmp_path
):
    """Three parts in reverse order: each received, held as one message, one copy,
    its answer, then every part answered with the verdict and the final."""
    trace = {"decode_content": True, "country_code": "86",
             "rules": [{"number": "8613800138000"}]}  # fmt: skip
    async with proxy(
        make_config, trace=trace, state_dir=tmp_path, database={"flush_interval": "20ms"},
        accounts=ACCOUNTS[:1],
    ) as (sim, node, add_ne):  # fmt: skip
        ne = await add_ne("antispam", "pw1", block)
        async with operator_ui(node) as client:
            for part, chunk in ((3, b"now"), (2, b"phone, click "), (1, b"FREE i")):
                sim.send_deliver(source_addr=b"8613800138000", esm_class=0x40,
                                 short_message=bytes((5, 0, 3, 9, 3, part)) + chunk)  # fmt: skip
            await until(lambda: len(sim.answers) == 3)
            async with asyncio.timeout(10):
                while [t["events"] for t in await trace_queries.query_traces(
                    node.store, trace_queries.TraceQuery(), limit=2
                )] != [10]:  # fmt: skip
                    await asyncio.sleep(0.02)
            (message,) = listed(await (await client.get("/traces")).text())
            page = await (await client.get(f"/traces/{message}")).text()
        assert len(ne.received) == 1
    steps = re.findall(r'<li class="step ([^"]+)" data-kind="([^"]+)">(.*?)</li>', page, re.S)
    kinds = [kind for _, kind, _ in steps]
    assert kinds == ["received"] + ["part_received"] * 2 + ["held", "copy_sent", "answered"] + [
        "part_answered"] * 3 + ["final"]  # fmt: skip
    held = steps[3][2]
    assert "whole message" in held and "3 of 3 parts held" in held
    parts = [body for _, kind, body in steps if kind == "part_answered"]
    assert all("0x66 " in body and "SMPS → SMSC smsc1" in body for body in parts)
    assert sorted(re.search(r"part (\d)", body).group(1) for body in parts) == ["1", "2", "3"]
